/**
 * Prometheus metrics of one process (prom-client, its own registry: two stacks in one test
 * process do not share series). Per intent only counters and histograms move; what is costly
 * to know (consumer lag) is sampled on a timer, and what another object counts (audit writers,
 * pending approvals, NATS connections) is read when scraped. The metric names and labels are
 * documented in docs/operations.md ("Monitoring"); alert rules depend on them: keep them.
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Logger } from './log.ts';
import type { AuditStats, BrokerOutcome, OrderPath, ServiceMetrics, WorkerOutcome } from './metrics-types.ts';

/** Seconds: from a fraction of a millisecond (a cached decision) to a slow statement. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** The label of a target this process does not know (an agent may publish to any subject). */
const UNKNOWN_TARGET = '_unknown';

/**
 * A masking reason reduced to a bounded label: `column:public.customers.email` → `column`,
 * `derived:…` → `derived`, `detector:email` stays (detector names are a fixed set).
 */
function reasonLabel(reason: string): string {
  const i = reason.indexOf(':');
  const kind = i < 0 ? reason : reason.slice(0, i);
  if (kind === 'detector') {
    const name = reason.slice(i + 1);
    return /^[a-z0-9_]{1,32}$/.test(name) ? `detector:${name}` : 'detector';
  }
  return kind === 'column' || kind === 'derived' ? kind : 'other';
}

export interface ConsumerRef {
  /** Which connection may read it (the broker's and workers' permissions differ). */
  jsm: () => Promise<JetStreamManager>;
  stream: string;
  durable: string;
}

/** What a broker's intake (lib/consume.ts serveConcurrently) reports. */
export interface IntakeStats {
  backlog: number;
  dropped: number;
}

export class WritMetrics implements ServiceMetrics {
  readonly registry = new Registry();
  readonly #targets: ReadonlySet<string>;
  readonly #intents: Counter<'target' | 'outcome'>;
  readonly #decision: Histogram<'outcome'>;
  readonly #executions: Counter<'target' | 'outcome'>;
  readonly #execution: Histogram<'target'>;
  readonly #masked: Counter<'target' | 'reason'>;
  readonly #orders: Counter<'target' | 'path'>;
  readonly #pendingMsgs: Gauge<'stream' | 'consumer'>;
  readonly #ackPending: Gauge<'stream' | 'consumer'>;
  readonly #reconnects: Counter<'connection'>;
  readonly #connected: Gauge<'connection'>;
  readonly #audit = new Map<string, () => AuditStats | undefined>();
  #pendingApprovals: (() => number | undefined) | undefined;
  #intake: (() => IntakeStats | undefined) | undefined;
  #sampler: NodeJS.Timeout | undefined;
  readonly #stops: Array<() => void> = [];

  /** `targets`: the configured target names; anything else is counted as `_unknown`. */
  constructor(targets: Iterable<string>, o: { defaultMetrics?: boolean } = {}) {
    this.#targets = new Set(targets);
    const registers = [this.registry];
    if (o.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
    this.#intents = new Counter({ name: 'writ_broker_intents_total', help: 'Intents the broker handled, by target and what it did with them', labelNames: ['target', 'outcome'], registers });
    this.#decision = new Histogram({
      name: 'writ_broker_decision_seconds',
      help: "From an intent's receipt by the broker to its ack (decided, evidence stored, order sent)",
      labelNames: ['outcome'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#executions = new Counter({ name: 'writ_worker_executions_total', help: 'Orders a worker ended, by target and outcome', labelNames: ['target', 'outcome'], registers });
    this.#execution = new Histogram({
      name: 'writ_worker_execution_seconds',
      help: 'Time a worker spent running a command on its target, masking included',
      labelNames: ['target'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#orders = new Counter({
      name: 'writ_broker_orders_total',
      help: 'Orders the broker sent, by target and path: direct (a worker took it at once) or queued (the exec stream: no worker free, or none answered)',
      labelNames: ['target', 'path'],
      registers,
    });
    this.#masked = new Counter({ name: 'writ_worker_masked_fields_total', help: 'Result fields and output streams masked, by reason kind', labelNames: ['target', 'reason'], registers });
    this.#pendingMsgs = new Gauge({
      name: 'writ_consumer_pending_messages',
      help: 'Messages not yet delivered to a Writ durable consumer (queue depth), sampled',
      labelNames: ['stream', 'consumer'],
      registers,
    });
    this.#ackPending = new Gauge({
      name: 'writ_consumer_ack_pending_messages',
      help: 'Messages delivered to a Writ durable consumer and not yet acknowledged, sampled',
      labelNames: ['stream', 'consumer'],
      registers,
    });
    this.#reconnects = new Counter({ name: 'writ_nats_reconnects_total', help: 'Times a NATS connection of this process reconnected', labelNames: ['connection'], registers });
    this.#connected = new Gauge({ name: 'writ_nats_connected', help: '1 while a NATS connection of this process is connected', labelNames: ['connection'], registers });
    const audit = this.#audit;
    const auditCounter = (name: string, help: string, key: keyof AuditStats) =>
      new Counter({
        name,
        help,
        labelNames: ['service'],
        registers,
        // Read from the writers when scraped: the writer counts with plain integers.
        collect() {
          this.reset();
          for (const [service, get] of audit) {
            const s = get();
            if (s) this.inc({ service }, s[key]);
          }
        },
      });
    auditCounter('writ_audit_blocks_total', 'Audit blocks stored', 'blocks');
    auditCounter('writ_audit_append_conflicts_total', 'Audit appends refused because another writer moved the session head (re-chained)', 'conflicts');
    auditCounter('writ_audit_append_retries_total', 'Audit append attempts retried (conflicts and transient errors)', 'retries');
    const self = this;
    new Gauge({
      name: 'writ_approvals_pending',
      help: 'Intents waiting for approval, as this broker sees them (every broker sees all: use max())',
      registers,
      collect() {
        const n = self.#pendingApprovals?.();
        if (n !== undefined) this.set(n);
      },
    });
    new Gauge({
      name: 'writ_broker_intake_backlog',
      help: 'Intents this broker took and has not started yet (over limits.concurrency)',
      registers,
      collect() {
        const i = self.#intake?.();
        if (i) this.set(i.backlog);
      },
    });
    new Counter({
      name: 'writ_broker_intake_dropped_total',
      help: 'Intents this broker dropped unanswered because its backlog was full (their agents send them again)',
      registers,
      collect() {
        const i = self.#intake?.();
        if (!i) return;
        this.reset();
        this.inc(i.dropped);
      },
    });
  }

  #target(t: string): string {
    return this.#targets.has(t) ? t : UNKNOWN_TARGET;
  }

  intentHandled(target: string, outcome: BrokerOutcome, seconds: number): void {
    this.#intents.inc({ target: this.#target(target), outcome });
    this.#decision.observe({ outcome }, seconds);
  }

  executionEnded(target: string, outcome: WorkerOutcome, seconds?: number): void {
    const t = this.#target(target);
    this.#executions.inc({ target: t, outcome });
    if (seconds !== undefined) this.#execution.observe({ target: t }, seconds);
  }

  orderSent(target: string, path: OrderPath): void {
    this.#orders.inc({ target: this.#target(target), path });
  }

  fieldMasked(target: string, reason: string): void {
    this.#masked.inc({ target: this.#target(target), reason: reasonLabel(reason) });
  }

  /** An audit writer's counters, read at each scrape. */
  addAuditSource(service: string, stats: () => AuditStats | undefined): void {
    this.#audit.set(service, stats);
  }

  setPendingApprovals(count: () => number | undefined): void {
    this.#pendingApprovals = count;
  }

  /** The broker's intake backlog and drops, read at each scrape. */
  setIntake(stats: () => IntakeStats | undefined): void {
    this.#intake = stats;
  }

  /** Counts the connection's reconnects and tracks whether it is connected, until it closes. */
  watchConnection(name: string, nc: NatsConnection): void {
    this.#connected.set({ connection: name }, nc.isClosed() ? 0 : 1);
    this.#reconnects.inc({ connection: name }, 0);
    let stopped = false;
    this.#stops.push(() => (stopped = true));
    void (async () => {
      for await (const s of nc.status()) {
        if (stopped) break;
        if (s.type === 'disconnect') this.#connected.set({ connection: name }, 0);
        else if (s.type === 'reconnect') {
          this.#reconnects.inc({ connection: name });
          this.#connected.set({ connection: name }, 1);
        }
      }
    })()
      .catch(() => undefined)
      .finally(() => this.#connected.set({ connection: name }, 0));
  }

  /**
   * Samples num_pending and num_ack_pending of the consumers every `intervalMs` (one consumer
   * info request each, on the connection allowed to make it), never per intent. A failed
   * sample keeps the last value and is logged at debug level: /readyz reports NATS trouble.
   */
  sampleConsumers(consumers: ConsumerRef[], intervalMs: number, log: Logger): void {
    const sample = async () => {
      await Promise.all(
        consumers.map(async (c) => {
          try {
            const info = await (await c.jsm()).consumers.info(c.stream, c.durable);
            const labels = { stream: c.stream, consumer: c.durable };
            this.#pendingMsgs.set(labels, info.num_pending);
            this.#ackPending.set(labels, info.num_ack_pending);
          } catch (e) {
            log.debug({ err: e, stream: c.stream, consumer: c.durable }, 'consumer lag not sampled');
          }
        }),
      );
    };
    let running = false;
    const tick = () => {
      if (running) return;
      running = true;
      void sample().finally(() => (running = false));
    };
    tick();
    this.#sampler = setInterval(tick, intervalMs);
    this.#sampler.unref();
  }

  /** The exposition text and its content type. */
  async scrape(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  stop(): void {
    clearInterval(this.#sampler);
    for (const s of this.#stops) s();
  }
}
