/**
 * A broker stopped past its deadline while intents are half done (their records stored, their
 * evidence or order not yet) must not tell their agents "denied": a resend to the next broker
 * finishes them. Each outcome an agent gets must match the target: denied means the row is not
 * there, succeeded means it is there once.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createBroker } from '../broker/index.ts';
import { createLogger } from '../lib/index.ts';
import { startStack, type Stack } from './fixture.ts';

let s: Stack;
beforeAll(async () => {
  s = await startStack({ config: { limits: { concurrency: 8 } } });
}, 60_000);
afterAll(async () => {
  await s?.stop();
});

it('answers every intent in flight through a broker stopped past its deadline with what happened to it', async () => {
  const c = s.client(await s.token('dana', ['dba']));
  const notes = Array.from({ length: 60 }, (_, i) => `midflight-${i}`);
  const runs = notes.map((note) => c.run({ target: 'db', sql: `INSERT INTO events (note) VALUES ('${note}')` }, { timeoutMs: 60_000 }));
  await new Promise((r) => setTimeout(r, 30));
  await s.broker.stop(5);
  s.broker = await createBroker({ nc: s.nc, config: s.config, log: createLogger({ name: 'broker', level: 'silent' }) });
  await s.broker.start();
  const outcomes = await Promise.all(runs);
  const { rows } = await s.admin.query<{ note: string; n: number }>("SELECT note, count(*)::int AS n FROM events WHERE note LIKE 'midflight-%' GROUP BY note");
  const ran = new Map(rows.map((r) => [r.note, r.n]));
  const mismatched = outcomes
    .map((o, i) => ({ note: notes[i]!, status: o.status, code: o.error?.code, rows: ran.get(notes[i]!) ?? 0 }))
    .filter((x) => x.rows > 1 || (x.status === 'succeeded') !== (x.rows === 1));
  expect(mismatched).toEqual([]);
  expect(outcomes.filter((o) => o.status === 'succeeded').length).toBeGreaterThan(0);
}, 120_000);
