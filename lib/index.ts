/** Public entry of lib/: the runtime pieces every service shares (logging, consume loop, NATS connect). */
export * from './log.ts';
export * from './consume.ts';
export * from './nats.ts';
export * from './reply.ts';
export * from './process.ts';
export * from './retry.ts';
export * from './terminal.ts';
export * from './local.ts';
export * from './tracing.ts';
export type * from './metrics-types.ts';
// prom-client is loaded by Observability only when the endpoint is on (lib/metrics.ts is not re-exported here).
export { Observability, type ObservedService, type ObservabilityStartOptions } from './observability.ts';
export { runChecks, natsCheck, streamsCheck, tcpCheck, stateCheck, type ReadinessCheck, type ReadinessReport } from './health.ts';
export * from './records.ts';
export * from './budgets.ts';
export * from './handover.ts';
