// Per-intent child loggers made only when they write: the same lines, the same redaction, no cost when silent.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, lazyChild } from './log.ts';

function capture(level: string) {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({
    name: 't',
    level,
    destination: new Writable({
      write(c: Buffer, _e, cb) {
        lines.push(JSON.parse(c.toString()) as Record<string, unknown>);
        cb();
      },
    }),
  });
  let children = 0;
  const child = log.child.bind(log);
  log.child = ((...a: Parameters<typeof log.child>) => (children++, child(...a))) as typeof log.child;
  return { log, lines, children: () => children };
}

describe('lazyChild', () => {
  it("writes lines with the bindings, redacted like the parent's", async () => {
    const c = capture('info');
    const l = lazyChild(c.log, { intentId: 'i_1234567890', sessionId: 's_1', traceId: 'ab'.repeat(16) });
    l.warn({ token: 'secret-token', code: 'X' }, 'refused');
    await new Promise((r) => setImmediate(r));
    expect(c.lines).toHaveLength(1);
    expect(c.lines[0]).toMatchObject({ intentId: 'i_1234567890', sessionId: 's_1', traceId: 'ab'.repeat(16), token: '[REDACTED]', code: 'X', msg: 'refused' });
    expect(l.isLevelEnabled('info')).toBe(true);
  });

  it('makes no child while nothing is written at an enabled level', () => {
    const c = capture('info');
    const l = lazyChild(c.log, { intentId: 'i_1234567890' });
    l.debug('not written');
    l.trace({ x: 1 }, 'not written');
    expect(c.children()).toBe(0);
    l.info('written');
    l.info('written again');
    expect(c.children()).toBe(1);
  });
});
