import { beforeAll, describe, expect, it } from 'vitest';
import { initClassifiers } from '../classify/index.ts';
import type { TargetConfig } from '../schemas/index.ts';
import { createCommandClassifier } from './classify-command.ts';

const db = { name: 'db', kind: 'postgres', tags: [] } as unknown as TargetConfig;
const host = { name: 'h', kind: 'ssh', tags: [] } as unknown as TargetConfig;

beforeAll(async () => {
  await initClassifiers();
});

describe('the broker facts cache', () => {
  it('stays within its byte budget however large the statements', () => {
    const classify = createCommandClassifier({ maxStatementBytes: 64 * 1024, factsCacheBytes: 2 * 1024 * 1024 });
    for (let i = 0; i < 60; i++) {
      const cols = Array.from({ length: 4000 }, (_, j) => `c${j}_${i}`).join(', ');
      const f = classify(db, { kind: 'sql', sql: `SELECT ${cols} FROM t${i}` });
      expect(f.facts.error).toBeUndefined();
    }
    expect(classify.cachedBytes).toBeGreaterThan(0);
    expect(classify.cachedBytes).toBeLessThanOrEqual(2 * 1024 * 1024);
  });

  it('refuses one statement longer than the limit before parsing it, and keeps the others', () => {
    const classify = createCommandClassifier({ maxStatementBytes: 1000, factsCacheBytes: 1024 * 1024 });
    const long = `SELECT ${'1 + '.repeat(400)}1`;
    const f = classify(db, { kind: 'sql', sql: `SELECT 1; ${long}` });
    expect(f.facts.error?.code).toBe('WRIT_SQL_UNKNOWN');
    expect(f.facts.error?.message).toMatch(/statement 2 is longer than the 1000-byte limit/);
    expect(classify(db, { kind: 'sql', sql: 'SELECT 1; SELECT 2' }).facts.error).toBeUndefined();
    const sh = classify(host, { kind: 'shell', command: `echo ${'x'.repeat(1200)}` });
    expect(sh.facts.error?.code).toBe('WRIT_SHELL_UNKNOWN');
  });
});
