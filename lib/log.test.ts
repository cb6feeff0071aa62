import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from './log.ts';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { lines, log: createLogger({ name: 't', level: 'info', destination }) };
}

describe('log redaction', () => {
  it('never writes credentials, tokens, grants or connection strings, at any of the usual depths', async () => {
    const { lines, log } = capture();
    const secrets = ['hunter2-password', 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.sig', 'grant-jws-secret', 'postgresql://u:pw@h/db', 'pem-private-key'];
    log.info({ token: secrets[1], intent: { token: secrets[1] } }, 'intent');
    log.info({ password: secrets[0], target: { credentials: { read: { password: secrets[0] } } } }, 'config');
    log.info({ order: { grant: secrets[2] }, connectionString: secrets[3], db: { connectionString: secrets[3] } }, 'order');
    log.info({ key: { privateKey: secrets[4] }, headers: { authorization: `Bearer ${secrets[1]}` } }, 'keys');
    await new Promise((r) => setTimeout(r, 50));
    const text = JSON.stringify(lines);
    expect(lines.length).toBe(4);
    for (const s of secrets) expect(text).not.toContain(s);
    expect(text).toContain('[REDACTED]');
    // What is not secret still comes through.
    expect(lines.map((l) => l.msg)).toEqual(['intent', 'config', 'order', 'keys']);
  });
});
