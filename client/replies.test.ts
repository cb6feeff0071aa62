// ReplyMux on a real nats-server: each box gets its own messages only, in order; many boxes
// share one subscription on the server; the subscription ends a while after the last box and
// with the connection, and a waiting box learns of it at once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { freePort, startNats, type NatsServerHandle } from '../test/helpers/index.ts';
import { ReplyMux } from './replies.ts';

let nats: NatsServerHandle;
let monitor: string;
let nc: NatsConnection;

/** Subscriptions the server holds for the connection named `name` (its /connz). */
async function serverSubs(name: string): Promise<string[]> {
  const r = (await (await fetch(`${monitor}/connz?subs=1`)).json()) as { connections: Array<{ name?: string; subscriptions_list?: string[] }> };
  return r.connections.find((c) => c.name === name)?.subscriptions_list ?? [];
}

const text = (r: Awaited<ReturnType<ReturnType<ReplyMux['open']>['next']>>) => ('msg' in r ? r.msg.string() : Object.keys(r)[0]);

beforeAll(async () => {
  const port = await freePort();
  nats = await startNats({ extraConfig: `http: 127.0.0.1:${port}` });
  monitor = `http://127.0.0.1:${port}`;
  nc = await connect({ servers: nats.url, name: 'mux-test' });
});
afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

describe('ReplyMux', () => {
  it('delivers each box its own messages, in order, through one subscription', async () => {
    const mux = new ReplyMux(nc, { lingerMs: 50 });
    const a = mux.open('_INBOX', 'aaaaaaaaaaaaaaaaaaaa');
    const b = mux.open('_INBOX', 'aaaaaaaaaaaaaaaaaaaa');
    expect(a.subject).not.toBe(b.subject);
    expect(a.subject.startsWith('_INBOX.aaaaaaaaaaaaaaaaaaaa.')).toBe(true);
    await nc.flush();
    expect((await serverSubs('mux-test')).filter((s) => s.startsWith('_INBOX.aaaaaaaaaaaaaaaaaaaa.'))).toHaveLength(1);
    nc.publish(a.subject, 'a1');
    nc.publish(b.subject, 'b1');
    nc.publish(a.subject, 'a2');
    // A subject under the client's token that no box holds reaches nobody.
    nc.publish(`${a.subject.slice(0, a.subject.lastIndexOf('.'))}.unknown`, 'x');
    expect(text(await a.next(5_000))).toBe('a1');
    expect(text(await a.next(5_000))).toBe('a2');
    expect(text(await b.next(5_000))).toBe('b1');
    expect(text(await b.next(200))).toBe('timedOut');
    a.close();
    b.close();
    expect(text(await a.next())).toBe('closed');
  });

  it('keeps two clients on one connection and one principal apart', async () => {
    const one = new ReplyMux(nc);
    const two = new ReplyMux(nc);
    const a = one.open('_INBOX', 'bbbbbbbbbbbbbbbbbbbb');
    const b = two.open('_INBOX', 'bbbbbbbbbbbbbbbbbbbb');
    nc.publish(b.subject, 'for two');
    expect(text(await b.next(5_000))).toBe('for two');
    expect(text(await a.next(300))).toBe('timedOut');
    a.close();
    b.close();
  });

  it('ends the subscription a while after the last box closes, and opens it again for the next', async () => {
    const mux = new ReplyMux(nc, { lingerMs: 100 });
    const a = mux.open('_INBOX', 'cccccccccccccccccccc');
    await nc.flush();
    expect((await serverSubs('mux-test')).filter((s) => s.includes('cccccccccccccccccccc'))).toHaveLength(1);
    a.close();
    // Still there within the linger (a busy agent's next run reuses it) ...
    const b = mux.open('_INBOX', 'cccccccccccccccccccc');
    b.close();
    await new Promise((r) => setTimeout(r, 400));
    await nc.flush();
    // ... and gone after it.
    expect((await serverSubs('mux-test')).filter((s) => s.includes('cccccccccccccccccccc'))).toHaveLength(0);
    const c = mux.open('_INBOX', 'cccccccccccccccccccc');
    nc.publish(c.subject, 'again');
    expect(text(await c.next(5_000))).toBe('again');
    c.close();
  });

  it('tells a waiting box when the connection closes', async () => {
    const own = await connect({ servers: nats.url });
    const mux = new ReplyMux(own);
    const a = mux.open('_INBOX', 'dddddddddddddddddddd');
    const waiting = a.next(30_000);
    await own.close();
    // Not at its 30 s timeout: that would be 'timedOut'.
    expect(text(await waiting)).toBe('closed');
  });
});
