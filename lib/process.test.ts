import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const LIB = join(import.meta.dirname, 'index.ts');

/** Runs a small program under the guard in its own process; returns its exit code, time and log lines. */
function run(body: string, signalAfterMs?: number) {
  const src = `
    import { guardProcess, createLogger } from ${JSON.stringify(LIB)};
    import pino from 'pino';
    const log = createLogger({ name: 'guard-test', level: 'info', destination: pino.destination({ fd: 2, sync: true }) });
    ${body}
  `;
  const started = Date.now();
  const script = signalAfterMs === undefined ? src : `${src}\nsetTimeout(() => process.kill(process.pid, 'SIGTERM'), ${signalAfterMs});`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
  const lines = `${r.stderr}`
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg: string; level: number });
  return { code: r.status, ms: Date.now() - started, msgs: lines.map((l) => l.msg) };
}

describe('guardProcess', () => {
  it('logs an unhandled rejection, stops, and exits non-zero instead of crashing silently', () => {
    const r = run(`
      let stopped = false;
      guardProcess({ log, stop: async () => { stopped = true; log.info('stopped cleanly'); } }).then((c) => process.exit(c));
      Promise.reject(new Error('boom'));
      setInterval(() => {}, 1000);
    `);
    expect(r.code).toBe(1);
    expect(r.msgs).toContain('unhandled rejection');
    expect(r.msgs).toContain('stopped cleanly');
  });

  it('exits after the deadline when a stop hangs (NATS gone)', () => {
    const r = run(
      `
      guardProcess({ log, deadlineMs: 500, stop: () => new Promise(() => {}) }).then((c) => process.exit(c));
      setInterval(() => {}, 1000);
    `,
      200,
    );
    expect(r.code).toBe(1);
    expect(r.msgs).toContain('stop did not finish before its deadline; exiting anyway');
  });

  it('exits 0 on SIGTERM when the stop finishes in time', () => {
    const r = run(
      `
      guardProcess({ log, stop: async () => {} }).then((c) => process.exit(c));
      setInterval(() => {}, 1000);
    `,
      200,
    );
    expect(r.code).toBe(0);
    expect(r.msgs).toContain('stopping');
  });
});
