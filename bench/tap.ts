/**
 * `npm run bench -- tap`: the messages and bytes one `SELECT 1` intent puts through the server,
 * by subject (ids folded), seen by a tap subscribed to everything after two warm-up intents;
 * then the timeline of one intent at one agent: each message as the tap saw it, in ms after the
 * agent's `run()` began, for the run of median latency among 61 (the tap's own delivery adds
 * a little to each time). The gaps between messages are the services' work between two steps.
 * Deliveries to consumers and replies land on `_INBOX.*`.
 */
import { connect } from '@nats-io/transport-node';
import { startStack } from '../test/fixture.ts';

const fold = (subject: string) =>
  subject
    .replace(/\.[A-Za-z0-9_-]{20,}.*$/, '.<id>')
    .replace(/_INBOX\..*/, '_INBOX.*')
    .replace(/^(\$KV\.[^.]+)\..*$/, '$1.<key>')
    .replace(/\$JS\.ACK\.([^.]+)\..*/, '$JS.ACK.$1.*');

const s = await startStack();
const token = await s.token('bench', ['analysts']);
const c = s.client(token);
await c.run({ target: 'db', sql: 'SELECT 1' });
await c.run({ target: 'db', sql: 'SELECT 1' });
await new Promise((r) => setTimeout(r, 300));
const tap = await connect({ servers: s.nats.url });
const by = new Map<string, { n: number; bytes: number }>();
let timeline: Array<[number, string, number]> | undefined;
const sub = tap.subscribe('>');
void (async () => {
  for await (const m of sub) {
    const k = fold(m.subject);
    const bytes = m.data.length + (m.headers ? m.headers.toString().length : 0);
    if (timeline) {
      timeline.push([performance.now(), k, bytes]);
      continue;
    }
    const e = by.get(k) ?? { n: 0, bytes: 0 };
    e.n++;
    e.bytes += bytes;
    by.set(k, e);
  }
})();
await tap.flush();
await c.run({ target: 'db', sql: 'SELECT 1' });
await new Promise((r) => setTimeout(r, 500));
console.log('\n## One intent on the wire, by subject');
console.log('| messages | bytes | subject |');
console.log('|---|---|---|');
for (const [k, v] of [...by].sort((a, b) => b[1].bytes - a[1].bytes)) console.log(`| ${v.n} | ${v.bytes} | \`${k}\` |`);

// Warm, then one intent at a time, each with its messages until the next starts.
for (let i = 0; i < 200; i++) await c.run({ target: 'db', sql: 'SELECT 1' });
const runs: Array<{ ms: number; events: Array<[number, string, number]> }> = [];
for (let i = 0; i < 61; i++) {
  timeline = [];
  const t0 = performance.now();
  await c.run({ target: 'db', sql: 'SELECT 1' });
  const ms = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 30));
  runs.push({ ms, events: timeline.map(([t, k, b]) => [t - t0, k, b]) });
}
timeline = undefined;
runs.sort((a, b) => a.ms - b.ms);
const median = runs[30]!;
console.log(`\n## One intent's timeline at one agent (the median of 61 runs: ${median.ms.toFixed(2)} ms to the agent's answer)`);
console.log('| ms after run() | gap ms | subject | bytes |');
console.log('|---|---|---|---|');
let last = 0;
for (const [t, k, b] of median.events) {
  console.log(`| ${t.toFixed(2)} | ${(t - last).toFixed(2)} | \`${k}\` | ${b} |`);
  last = t;
}
await tap.close();
await s.stop();
