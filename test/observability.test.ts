/**
 * Observability of a running stack, on real servers (nats-server, PostgreSQL, sshd): the
 * /metrics counters move by the amounts the intents sent imply, /healthz and /readyz answer,
 * /readyz fails while a target is unreachable and while NATS is down (and recovers), and the
 * W3C trace context the SDK sends reaches the broker and the worker and comes back on the
 * outcome, as spans in the OpenTelemetry SDK's in-memory exporter.
 */
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { connect, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { AuditWriter } from '../audit/index.ts';
import { Observability } from '../lib/index.ts';
import { startNats, startSshd, type NatsServerHandle, type SshdHandle } from './helpers/index.ts';
import { startStack, type Stack } from './fixture.ts';

let s: Stack;
let sshd: SshdHandle;
let obs: Observability;
let restarted: NatsServerHandle | undefined;
const spans = new InMemorySpanExporter();
const contextManager = new AsyncLocalStorageContextManager().enable();

beforeAll(async () => {
  // The agent's process has a context manager, as an agent using the OpenTelemetry Node SDK does.
  context.setGlobalContextManager(contextManager);
  sshd = await startSshd();
  s = await startStack({
    config: {
      targets: [
        { name: 'db', kind: 'postgres', tags: [] },
        { name: 'host', kind: 'ssh', tags: [] },
      ],
      policy: {
        rules: [
          { id: 'analysts-read', effect: 'allow', groups: ['analysts'], targets: ['db'], mode: 'read' },
          { id: 'ask', effect: 'require_approval', groups: ['agents'], targets: ['db'], mode: 'write', approval: { groups: ['approvers'], count: 1, timeoutSec: 600 } },
          { id: 'ops-shell', effect: 'allow', groups: ['ops'], targets: ['host'], mode: 'write', limits: { seconds: 20 } },
          { id: 'no-interns', effect: 'deny', groups: ['interns'], targets: ['*'] },
        ],
        masking: { columns: [{ column: 'public.customers.email' }], detectors: ['email'] },
      },
      observability: { port: 0, sampleIntervalMs: 100, checkTimeoutMs: 500 },
    },
    workersSsh: [
      {
        target: 'host',
        host: sshd.host,
        port: sshd.port,
        hostKeys: { fingerprints: [sshd.hostKeyFingerprint] },
        credentials: { read: { user: { value: sshd.user }, privateKeyFile: sshd.clientKeyPath }, write: { user: { value: sshd.user }, privateKeyFile: sshd.clientKeyPath } },
      },
    ],
    observe: async (config, names, log) => {
      obs = await Observability.start({ config, names, log, serviceName: 'writ-test', spanExporter: spans });
      return obs.metrics;
    },
  });
  obs.attach({ role: 'broker', nc: s.nc, state: () => s.broker.state, auditStats: () => s.broker.auditStats, pendingApprovals: () => s.broker.pendingApprovals, intake: () => s.broker.intake });
  obs.attach({ role: 'worker', nc: s.nc, state: () => s.worker.state, auditStats: () => s.worker.auditStats });
  obs.ready();
}, 120_000);

afterAll(async () => {
  await obs?.stop();
  await restarted?.stop();
  await s?.stop();
  await sshd?.stop();
  context.disable();
});

const url = (path: string) => `http://127.0.0.1:${obs.port}${path}`;

async function readyz(): Promise<{ status: number; body: { ready: boolean; checks: Record<string, string> } }> {
  const r = await fetch(url('/readyz'));
  return { status: r.status, body: (await r.json()) as { ready: boolean; checks: Record<string, string> } };
}

/** Polls /readyz until `until` holds (the test's timeout bounds it): state changes are observed, never timed. */
async function readyzUntil(until: (r: Awaited<ReturnType<typeof readyz>>) => boolean): Promise<Awaited<ReturnType<typeof readyz>>> {
  for (;;) {
    const r = await readyz();
    if (until(r)) return r;
    await new Promise((res) => setTimeout(res, 50));
  }
}

type Sample = { name: string; labels: Record<string, string>; value: number };

async function scrape(): Promise<Sample[]> {
  const r = await fetch(url('/metrics'));
  expect(r.status).toBe(200);
  expect(r.headers.get('content-type')).toContain('text/plain');
  const out: Sample[] = [];
  for (const line of (await r.text()).split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The value of one series (0 when absent: a counter not yet incremented). */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const hit = samples.filter((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  return hit.reduce((a, x) => a + x.value, 0);
}

async function scrapeUntil(until: (m: Sample[]) => boolean): Promise<Sample[]> {
  for (;;) {
    const m = await scrape();
    if (until(m)) return m;
    await new Promise((res) => setTimeout(res, 50));
  }
}

describe('the health endpoints', () => {
  it('/healthz is 200, and /readyz is 200 with every check ok: NATS, streams, targets, services', async () => {
    const h = await fetch(url('/healthz'));
    expect(h.status).toBe(200);
    const r = await readyz();
    expect(r.status).toBe(200);
    expect(r.body.ready).toBe(true);
    expect(r.body.checks).toEqual({
      process: 'ok',
      'service:broker': 'ok',
      'nats:broker': 'ok',
      'streams:broker': 'ok',
      'service:worker': 'ok',
      'nats:worker': 'ok',
      'streams:worker': 'ok',
      'target:db': 'ok',
      'target:host': 'ok',
    });
    expect((await fetch(url('/nope'))).status).toBe(404);
    expect((await fetch(url('/metrics'), { method: 'POST' })).status).toBe(405);
  });
});

describe('tracing', () => {
  it("carries the agent's trace from the SDK through broker and worker and back on the outcome", async () => {
    spans.reset();
    const tap: NatsConnection = await connect({ servers: s.nats.url });
    const replies: Msg[] = [];
    const sub = tap.subscribe('_INBOX.>', { callback: (_e, m) => void replies.push(m) });
    // Intents are core requests: the tap hears them on their own subject.
    const intents = tap.subscribe(s.names.intentAll(), { callback: (_e, m) => void replies.push(m) });
    // So are orders handed to a worker directly (a free worker takes this one).
    const orders = tap.subscribe(s.names.dispatchAll(), { callback: (_e, m) => void replies.push(m) });
    await tap.flush();
    try {
      const agentTracer = trace.getTracer('agent');
      const c = s.client(await s.token('alice', ['analysts']));
      const { outcome, agentSpan } = await agentTracer.startActiveSpan('agent.plan', async (span) => {
        const o = await c.run({ target: 'db', sql: 'SELECT 3' });
        span.end();
        return { outcome: o, agentSpan: span.spanContext() };
      });
      expect(outcome.status).toBe('succeeded');
      const done = spans.getFinishedSpans();
      const byName = (n: string) => done.filter((x) => x.name === n && x.attributes['writ.intent_id'] === outcome.intentId);
      const run = byName('writ.run');
      const broker = byName('writ.broker.intent');
      const exec = byName('writ.worker.execute');
      expect([run.length, broker.length, exec.length]).toEqual([1, 1, 1]);
      // One trace, parented hop by hop: agent → SDK → broker → worker.
      for (const x of [run[0]!, broker[0]!, exec[0]!]) expect(x.spanContext().traceId).toBe(agentSpan.traceId);
      expect(run[0]!.parentSpanContext?.spanId).toBe(agentSpan.spanId);
      expect(broker[0]!.parentSpanContext?.spanId).toBe(run[0]!.spanContext().spanId);
      expect(exec[0]!.parentSpanContext?.spanId).toBe(broker[0]!.spanContext().spanId);
      expect(broker[0]!.attributes['writ.outcome']).toBe('dispatched');
      expect(exec[0]!.attributes['writ.outcome']).toBe('succeeded');
      expect(run[0]!.resource.attributes['service.name']).toBe('writ-test');
      // The outcome the worker sent to the agent's inbox carries the worker's span as traceparent.
      await tap.flush();
      // On the wire (the tap sees pulled JetStream messages too, and the intents): the intent carries the SDK's span,
      // the order the broker's, and the outcome sent to the agent's inbox the worker's.
      await tap.flush();
      const carried = (subject: string) => replies.find((m) => m.subject === subject && m.string().includes(outcome.intentId))?.headers?.get('traceparent');
      const tp = (span: { spanContext(): { spanId: string } }) => `00-${agentSpan.traceId}-${span.spanContext().spanId}-01`;
      expect(carried(s.names.intent('db'))).toBe(tp(run[0]!));
      // The order went to the worker of this process in memory (lib/handover.ts): nothing on the
      // bus, its trace carried by the parent chain above.
      expect(carried(s.names.dispatch('postgres', 'db'))).toBeUndefined();
      const back = replies.find((m) => m.subject.startsWith('_INBOX.') && m.string().includes(`"intentId":"${outcome.intentId}"`) && m.string().includes('"type":"outcome"'));
      expect(back?.headers?.get('traceparent')).toBe(tp(exec[0]!));
      // Every log line about the intent carries its intent, session and trace ids.
      const lines = s.logs.filter((l) => l.intentId === outcome.intentId);
      expect(lines.length).toBeGreaterThan(0);
      for (const l of lines) expect(l).toMatchObject({ sessionId: outcome.sessionId, traceId: agentSpan.traceId });

      // An order that goes through the bus (the handover declines it, as for a broker and a
      // worker apart) carries the broker's span as its traceparent.
      const offer = s.handover!.offer.bind(s.handover!);
      s.handover!.offer = () => undefined;
      try {
        spans.reset();
        const viaBus = await agentTracer.startActiveSpan('agent.plan', async (span) => {
          const o = await c.run({ target: 'db', sql: 'SELECT 4' });
          span.end();
          return o;
        });
        expect(viaBus.status).toBe('succeeded');
        await tap.flush();
        const busBroker = spans.getFinishedSpans().find((x) => x.name === 'writ.broker.intent' && x.attributes['writ.intent_id'] === viaBus.intentId)!;
        const onWire = replies.find((m) => m.subject === s.names.dispatch('postgres', 'db') && m.string().includes(viaBus.intentId));
        expect(onWire?.headers?.get('traceparent')).toBe(`00-${busBroker.spanContext().traceId}-${busBroker.spanContext().spanId}-01`);
      } finally {
        s.handover!.offer = offer;
      }
    } finally {
      intents.unsubscribe();
      orders.unsubscribe();
      sub.unsubscribe();
      await tap.close();
    }
  }, 60_000);
});

describe('the metrics', () => {
  it('count intents by outcome and target, decision and execution latency, masked fields and audit blocks', async () => {
    const before = await scrape();
    const analyst = s.client(await s.token('alice', ['analysts']));
    const ok = await analyst.run({ target: 'db', sql: 'SELECT name, email FROM customers ORDER BY id' });
    expect(ok.status).toBe('succeeded');
    // Another writer appends to the session: the broker's cached head is stale, and its next block conflicts.
    const other = new AuditWriter({ js: jetstream(s.nc), jsm: await jetstreamManager(s.nc), names: s.names, actor: { kind: 'broker', id: 'another-broker' } });
    await other.append({ sessionId: ok.sessionId, type: 'session.note', payload: {} });
    await other.close();
    expect((await analyst.run({ target: 'db', sql: 'SELECT 1' })).status).toBe('succeeded');
    const intern = s.client(await s.token('ivan', ['interns']));
    expect((await intern.run({ target: 'db', sql: 'SELECT 1' })).status).toBe('denied');
    // A target nobody configured is denied, and counted under `_unknown`: an agent cannot mint label values.
    expect((await analyst.run({ target: 'made-up-target-1', sql: 'SELECT 1' })).status).toBe('denied');
    expect((await analyst.run({ target: 'made-up-target-2', sql: 'SELECT 1' })).status).toBe('denied');
    const ops = s.client(await s.token('olga', ['ops']));
    const sh = await ops.run({ target: 'host', command: 'echo mail bob@example.org' }, { timeoutMs: 60_000 });
    expect(sh.status).toBe('succeeded');

    const after = await scrape();
    const d = (name: string, labels: Record<string, string> = {}) => value(after, name, labels) - value(before, name, labels);
    expect(d('writ_broker_intents_total', { target: 'db', outcome: 'dispatched' })).toBe(2);
    expect(d('writ_broker_intents_total', { target: 'db', outcome: 'denied' })).toBe(1);
    expect(d('writ_broker_intents_total', { target: '_unknown', outcome: 'denied' })).toBe(2);
    expect(d('writ_broker_intents_total', { target: 'host', outcome: 'dispatched' })).toBe(1);
    expect(after.some((x) => x.labels.target?.startsWith('made-up'))).toBe(false);
    expect(d('writ_broker_decision_seconds_count')).toBe(6);
    expect(d('writ_broker_decision_seconds_count', { outcome: 'denied' })).toBe(3);
    expect(d('writ_worker_executions_total', { target: 'db', outcome: 'succeeded' })).toBe(2);
    expect(d('writ_worker_executions_total', { target: 'host', outcome: 'succeeded' })).toBe(1);
    expect(d('writ_worker_execution_seconds_count', { target: 'db' })).toBe(2);
    expect(d('writ_worker_execution_seconds_sum', { target: 'db' })).toBeGreaterThan(0);
    expect(d('writ_worker_masked_fields_total', { target: 'db', reason: 'column' })).toBe(1);
    expect(d('writ_worker_masked_fields_total', { target: 'host', reason: 'detector:email' })).toBe(1);
    // The broker writes one block per intent (6), the worker one per run (3).
    expect(d('writ_audit_blocks_total', { service: 'broker' })).toBeGreaterThanOrEqual(6);
    expect(d('writ_audit_blocks_total', { service: 'worker' })).toBeGreaterThanOrEqual(3);
    expect(d('writ_audit_append_conflicts_total', { service: 'broker' })).toBeGreaterThanOrEqual(1);
    expect(value(after, 'writ_audit_append_retries_total', { service: 'broker' })).toBeGreaterThanOrEqual(value(after, 'writ_audit_append_conflicts_total', { service: 'broker' }));
    expect(value(after, 'writ_nats_connected', { connection: 'broker' })).toBe(1);
    expect(value(after, 'process_cpu_seconds_total')).toBeGreaterThan(0);
  }, 90_000);

  it('show pending approvals, and queue depth while no worker consumes', async () => {
    const agent = s.client(await s.token('ann', ['agents']));
    await agent.submit({ target: 'db', sql: "UPDATE events SET note = 'x' WHERE id = 1" });
    // The broker counts the intent once its evidence is stored, the gauge once its sweeper sees the record.
    const m = await scrapeUntil((x) => value(x, 'writ_approvals_pending') >= 1 && value(x, 'writ_broker_intents_total', { outcome: 'pending' }) >= 1);
    expect(value(m, 'writ_broker_intents_total', { target: 'db', outcome: 'pending' })).toBe(1);
    const durable = s.names.durables.worker('postgres', 'db');
    expect(value(m, 'writ_consumer_pending_messages', { consumer: durable })).toBe(0);
    // The broker's intake is core requests: its backlog is a gauge of its own, empty here.
    expect(value(m, 'writ_broker_intake_backlog')).toBe(0);
    expect(value(m, 'writ_broker_intake_dropped_total')).toBe(0);
    // With the worker stopped, an allowed intent's order waits in the stream: the sampled lag shows it.
    await s.worker.stop();
    const r = await readyzUntil((x) => x.status === 503);
    expect(r.body.checks['service:worker']).toBe('stopped');
    await s.client(await s.token('alice', ['analysts'])).submit({ target: 'db', sql: 'SELECT 2' });
    const lag = await scrapeUntil((x) => value(x, 'writ_consumer_pending_messages', { consumer: durable }) === 1);
    expect(value(lag, 'writ_consumer_pending_messages', { stream: s.names.streams.exec, consumer: durable })).toBe(1);
  }, 60_000);
});

describe('readiness failures', () => {
  it('/readyz is 503 naming the target while it is unreachable', async () => {
    await sshd.stop();
    const r = await readyzUntil((x) => x.body.checks['target:host'] !== 'ok');
    expect(r.status).toBe(503);
    expect(r.body.checks['target:host']).toMatch(/ECONNREFUSED|no connection/);
    expect(r.body.checks['target:db']).toBe('ok');
  });

  it('/readyz is 503 while NATS is down, counts the reconnect, and is ready again once it is back', async () => {
    const before = value(await scrape(), 'writ_nats_reconnects_total', { connection: 'broker' });
    s.nats.kill9();
    const down = await readyzUntil((x) => x.body.checks['nats:broker'] !== 'ok');
    expect(down.status).toBe(503);
    expect(down.body.checks['streams:broker']).not.toBe('ok');
    expect((await fetch(url('/healthz'))).status).toBe(200);
    restarted = await startNats({ port: s.nats.port, storeDir: s.nats.storeDir });
    const up = await readyzUntil((x) => x.body.checks['nats:broker'] === 'ok' && x.body.checks['streams:broker'] === 'ok');
    expect(up.body.checks['streams:worker']).toBe('ok');
    const m = await scrapeUntil((x) => value(x, 'writ_nats_reconnects_total', { connection: 'broker' }) > before);
    expect(value(m, 'writ_nats_connected', { connection: 'broker' })).toBe(1);
  }, 60_000);
});
