/**
 * One process's observability, wired where the process starts (cmd/): the endpoint on
 * `observability.port` (lib/health.ts), its metrics (lib/metrics.ts, loaded only when the
 * endpoint is on) and tracing (lib/tracing.ts, the SDK only when spans have somewhere to go).
 * `writ up` runs a broker and a worker in one process: both are attached to one endpoint.
 *
 * Order at start: `start()` before the services (so /healthz answers and /readyz says
 * "starting"), pass `metrics` to the services, attach each once it runs, then `ready()`.
 */
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Config, Names } from '../schemas/index.ts';
import { natsCheck, startObservabilityServer, stateCheck, streamsCheck, tcpCheck, type ObservabilityServer, type ReadinessCheck } from './health.ts';
import type { Logger } from './log.ts';
import type { IntakeStats, WritMetrics } from './metrics.ts';
import type { AuditStats, ServiceMetrics } from './metrics-types.ts';
import { initTracing, type TracingHandle } from './tracing.ts';

export interface ObservedService {
  /** `broker` or `worker`: which streams it needs and which consumers are its own. */
  role: 'broker' | 'worker';
  /** The connection this service uses (its role's permissions). */
  nc: NatsConnection;
  /** The service's lifecycle state (`RUNNING` when ready). */
  state: () => string;
  auditStats?: () => AuditStats | undefined;
  /** Brokers: intents waiting for approval. */
  pendingApprovals?: () => number | undefined;
  /** A broker's intake backlog and drops. */
  intake?: () => IntakeStats | undefined;
}

export interface ObservabilityStartOptions {
  config: Config;
  names: Names;
  log: Logger;
  /** `service.name` of spans. */
  serviceName?: string;
  /** A span exporter to use instead of OTLP (tests: the SDK's InMemorySpanExporter). */
  spanExporter?: unknown;
}

/** A JetStreamManager made once per connection, again after a failure. */
function lazyJsm(nc: NatsConnection): () => Promise<JetStreamManager> {
  let p: Promise<JetStreamManager> | undefined;
  return () =>
    (p ??= jetstreamManager(nc).catch((e: unknown) => {
      p = undefined;
      throw e;
    }));
}

export class Observability {
  /** Per-intent hooks for the services; undefined when the endpoint is off (nothing is counted). */
  readonly metrics: (ServiceMetrics & WritMetrics) | undefined;
  readonly #o: ObservabilityStartOptions;
  readonly #server: ObservabilityServer | undefined;
  readonly #tracing: TracingHandle;
  readonly #checks: ReadinessCheck[] = [];
  #started = false;

  private constructor(o: ObservabilityStartOptions, metrics: WritMetrics | undefined, server: ObservabilityServer | undefined, tracing: TracingHandle) {
    this.#o = o;
    this.metrics = metrics;
    this.#server = server;
    this.#tracing = tracing;
  }

  /** The endpoint's port (the chosen one when configured as 0); undefined when off. */
  get port(): number | undefined {
    return this.#server?.port;
  }

  /** Where spans are exported (`none` when tracing is off). */
  get exporting(): string {
    return this.#tracing.exporting;
  }

  static async start(o: ObservabilityStartOptions): Promise<Observability> {
    const c = o.config.observability;
    const tracing = await initTracing({ endpoint: c.otlpEndpoint, exporter: o.spanExporter, ...(o.serviceName ? { serviceName: o.serviceName } : {}) });
    if (tracing.exporting !== 'none') o.log.info({ exporting: tracing.exporting }, 'tracing on');
    if (c.port === undefined) return new Observability(o, undefined, undefined, tracing);
    const { WritMetrics } = await import('./metrics.ts');
    const metrics = new WritMetrics(o.config.targets.map((t) => t.name));
    let obs: Observability | undefined;
    const starting: ReadinessCheck = {
      name: 'process',
      check: async () => {
        if (!obs || !obs.#started) throw new Error('starting');
      },
    };
    const server = await startObservabilityServer({
      host: c.host,
      port: c.port,
      checkTimeoutMs: c.checkTimeoutMs,
      log: o.log,
      checks: () => [starting, ...(obs ? obs.#checks : [])],
      metrics: () => metrics.scrape(),
    });
    obs = new Observability(o, metrics, server, tracing);
    return obs;
  }

  /** Adds a running service's readiness checks and its metrics sources. */
  attach(s: ObservedService): void {
    const { config, names: n, log } = this.#o;
    const t = config.observability.checkTimeoutMs;
    const jsm = lazyJsm(s.nc);
    const kv = (b: string) => `KV_${b}`;
    const streams = s.role === 'broker' ? [...Object.values(n.streams), ...Object.values(n.buckets).map(kv)] : [n.streams.exec, n.streams.audit, kv(n.buckets.claims), kv(n.buckets.intents)];
    this.#checks.push(stateCheck(s.role, s.state), natsCheck(s.role, s.nc, t), streamsCheck(s.role, jsm, streams, t));
    if (s.role === 'worker') {
      // Reachable over TCP: the check holds no credential and takes no pool connection.
      for (const w of [...config.workers.postgres, ...config.workers.ssh, ...config.workers.mysql]) this.#checks.push(tcpCheck(w.target, w.host, w.port, t));
    }
    const m = this.metrics;
    if (!m) return;
    m.watchConnection(s.role, s.nc);
    if (s.auditStats) m.addAuditSource(s.role, s.auditStats);
    if (s.pendingApprovals) m.setPendingApprovals(s.pendingApprovals);
    if (s.intake) m.setIntake(s.intake);
    // A broker consumes no stream (intents and votes are core requests); a worker's orders queue in WRIT_EXEC.
    const consumers =
      s.role === 'broker'
        ? []
        : [
            ...config.workers.postgres.map((w) => ({ kind: 'postgres', target: w.target })),
            ...config.workers.ssh.map((w) => ({ kind: 'ssh', target: w.target })),
            ...config.workers.mysql.map((w) => ({ kind: 'mysql', target: w.target })),
          ].map((w) => ({ jsm, stream: n.streams.exec, durable: n.durables.worker(w.kind, w.target) }));
    m.sampleConsumers(consumers, config.observability.sampleIntervalMs, log);
  }

  /** Every service is attached and started: /readyz now reports their checks. */
  ready(): void {
    this.#started = true;
  }

  async stop(): Promise<void> {
    this.#started = false;
    this.metrics?.stop();
    await this.#server?.close();
    await this.#tracing.shutdown();
  }
}
