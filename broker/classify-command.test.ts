import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { beforeAll, describe, expect, it } from 'vitest';
import { initClassifiers } from '../classify/index.ts';
import type { TargetConfig } from '../schemas/index.ts';
import { createCommandClassifier } from './classify-command.ts';

// A real measurement of the heap, not a model of it: a full collection before each reading.
// The count may err high (an array is assumed grown by push), never much low.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const liveHeap = () => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

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

describe('the facts cache counts what its entries really hold', () => {
  // Distinct names in every entry, so that nothing is shared between entries and the heap's
  // growth is what the entries own. The counts were off by up to 1.9x with the JSON length
  // (shell facts under-counted by a third): the byte budget was not the memory it bounded.
  const shapes: Array<[string, TargetConfig, (i: number) => { kind: 'sql'; sql: string } | { kind: 'shell'; command: string }, number]> = [
    ['one short SELECT', db, (i) => ({ kind: 'sql', sql: `SELECT ${i} AS n` }), 3000],
    ['a join with a WHERE', db, (i) => ({ kind: 'sql', sql: `SELECT c.id, c.email_${i}, o.total FROM customers_${i} c JOIN orders o ON o.customer_id = c.id WHERE o.total > ${i}` }), 1000],
    ['a batch of 100 statements', db, (i) => ({ kind: 'sql', sql: Array.from({ length: 100 }, (_, k) => `SELECT ${i} + ${k}`).join(';') }), 60],
    ['300 columns', db, (i) => ({ kind: 'sql', sql: `SELECT ${Array.from({ length: 300 }, (_, k) => `c${k}_${i}`).join(', ')} FROM t${i}` }), 60],
    ['a short shell line', host, (i) => ({ kind: 'shell', command: `ls -la /tmp/d${i}` }), 3000],
    ['a 60-command pipeline', host, (i) => ({ kind: 'shell', command: Array.from({ length: 60 }, (_, k) => `grep -e x${k}_${i} /var/log/f${k}_${i}`).join(' | ') }), 60],
  ];
  for (const [label, target, make, n] of shapes) {
    it(`${label}: counted within -20 % and +60 % of the heap it takes`, () => {
      // The median of three fills, each in a fresh cache: one reading can be thrown by what else
      // the process collects between the two (seen in CI: the heap shrank under a full cache).
      const ratios = [0, 1, 2].map(() => {
        const classify = createCommandClassifier({ maxStatementBytes: 1024 * 1024, factsCacheBytes: 1024 * 1024 * 1024 });
        classify(target, make(-1));
        const heap0 = liveHeap();
        const counted0 = classify.cachedBytes;
        for (let i = 0; i < n; i++) expect(classify(target, make(i)).facts.error).toBeUndefined();
        const real = liveHeap() - heap0;
        expect(classify.cachedEntries).toBe(n + 1);
        return (classify.cachedBytes - counted0) / real;
      });
      const ratio = ratios.sort((a, b) => a - b)[1]!;
      expect(ratio).toBeGreaterThan(0.8);
      // +60 %: the heap also holds what V8 allocates beside the entries (measured up to 1.50 in CI);
      // the old sizing was off by 1.9x, which this still catches.
      expect(ratio).toBeLessThan(1.6);
    });
  }
});

describe("a principal's classification budget", () => {
  it('charges each principal the time its commands take to classify, and answers WRIT_BUSY while its budget is spent; others are not held', () => {
    // 1 ms a second: a burst of 10 ms, less than one large command takes.
    const classify = createCommandClassifier({ maxStatementBytes: 64 * 1024, factsCacheBytes: 64 * 1024 * 1024, classifyMsPerSec: 1 });
    const big = (i: number) => ({ kind: 'sql' as const, sql: `${'SELECT 1;'.repeat(20_000)} -- ${i}` });
    // The first large command is classified whatever it costs, and spends the burst.
    expect(classify(db, big(0), 'flooder').facts.error).toBeUndefined();
    let busy: unknown;
    try {
      classify(db, big(1), 'flooder');
    } catch (e) {
      busy = e;
    }
    expect(busy).toMatchObject({ code: 'WRIT_BUSY' });
    // Another principal, and the broker's own re-decisions (no principal), are not held.
    expect(classify(db, { kind: 'sql', sql: 'SELECT 2' }, 'someone-else').facts.error).toBeUndefined();
    expect(classify(db, big(2)).facts.error).toBeUndefined();
  });
});
