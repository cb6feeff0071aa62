/**
 * `npm run bench -- tap`: the messages and bytes one `SELECT 1` intent puts through the server,
 * by subject (ids folded), seen by a tap subscribed to everything after two warm-up intents.
 * Deliveries to consumers and replies land on `_INBOX.*`.
 */
import { connect } from '@nats-io/transport-node';
import { startStack } from '../test/fixture.ts';

const s = await startStack();
const token = await s.token('bench', ['analysts']);
const c = s.client(token);
await c.run({ target: 'db', sql: 'SELECT 1' });
await c.run({ target: 'db', sql: 'SELECT 1' });
await new Promise((r) => setTimeout(r, 300));
const tap = await connect({ servers: s.nats.url });
const by = new Map<string, { n: number; bytes: number }>();
const sub = tap.subscribe('>');
void (async () => {
  for await (const m of sub) {
    const k = m.subject
      .replace(/\.[A-Za-z0-9_-]{20,}.*$/, '.<id>')
      .replace(/_INBOX\..*/, '_INBOX.*')
      .replace(/\$JS\.ACK\..*/, '$JS.ACK.*');
    const e = by.get(k) ?? { n: 0, bytes: 0 };
    e.n++;
    e.bytes += m.data.length + (m.headers ? m.headers.toString().length : 0);
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
await tap.close();
await s.stop();
