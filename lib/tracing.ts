/**
 * Tracing: a W3C `traceparent` travels in NATS headers from the agent SDK through the broker
 * and the worker and back on the outcome, and each hop is an OpenTelemetry span.
 *
 * Services and the SDK use only @opentelemetry/api. With no tracer provider registered (no OTLP
 * endpoint configured), its tracer is the no-op one: spans record nothing and cost an object;
 * what is left per intent is one header parsed and one formatted. `initTracing` registers the
 * SDK with an OTLP exporter, and loads the SDK only then.
 *
 * The header comes from agents, so it is hostile input: it is parsed strictly (version, lengths,
 * lower-case hex, non-zero ids) and anything else is ignored, never copied into a log or a
 * header. A message without a valid one starts a new trace.
 */
import { randomBytes } from 'node:crypto';
import { createTraceState, isSpanContextValid, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, TraceFlags, type Attributes, type Span, type SpanContext, type Tracer } from '@opentelemetry/api';
import { headers as natsHeaders, Match, type MsgHdrs } from '@nats-io/transport-node';

export { SpanKind, type Span, type SpanContext };

export const TRACEPARENT = 'traceparent';
export const TRACESTATE = 'tracestate';

/** A proxy: it follows whatever provider is registered later, and is the no-op tracer until then. */
const TRACER: Tracer = trace.getTracer('writ');

const TRACEPARENT_RE = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
/** W3C tracestate: at most 32 list members; printable ASCII, no more than this many characters. */
const TRACESTATE_RE = /^[\x20-\x7e]{1,512}$/;

/**
 * The span context a `traceparent` (and optional `tracestate`) header names, or undefined when
 * the value is not one. Version 00 has exactly four fields; a later version may append more
 * (W3C: parse what is known), version ff is invalid.
 */
export function parseTraceparent(value: string | undefined, state?: string): SpanContext | undefined {
  if (value === undefined || value.length < 55 || value.length > 256) return undefined;
  const m = TRACEPARENT_RE.exec(value);
  if (!m) return undefined;
  const [, version, traceId, spanId, flags, rest] = m as unknown as [string, string, string, string, string, string | undefined];
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  const sc: SpanContext = { traceId, spanId, traceFlags: parseInt(flags, 16) & TraceFlags.SAMPLED, isRemote: true };
  if (!isSpanContextValid(sc)) return undefined;
  if (state !== undefined && TRACESTATE_RE.test(state)) {
    try {
      sc.traceState = createTraceState(state);
    } catch {
      // An unparseable tracestate is dropped; the traceparent alone still joins the trace.
    }
  }
  return sc;
}

export function formatTraceparent(sc: SpanContext): string {
  return `00-${sc.traceId}-${sc.spanId}-0${(sc.traceFlags & TraceFlags.SAMPLED).toString(16)}`;
}

/** The trace context a message carries in its headers (header names matched case-insensitively). */
export function traceContextOf(h: MsgHdrs | undefined): SpanContext | undefined {
  if (!h) return undefined;
  const tp = h.get(TRACEPARENT, Match.IgnoreCase);
  if (!tp) return undefined;
  const ts = h.get(TRACESTATE, Match.IgnoreCase);
  return parseTraceparent(tp, ts || undefined);
}

/** Sets `traceparent` (and `tracestate`) on `h` (new headers when absent) for the span's context. */
export function traceHeaders(span: Span | SpanContext | undefined, h?: MsgHdrs): MsgHdrs | undefined {
  const sc = span === undefined ? undefined : 'spanContext' in span ? span.spanContext() : span;
  if (!sc || !isSpanContextValid(sc)) return h;
  const out = h ?? natsHeaders();
  out.set(TRACEPARENT, formatTraceparent(sc));
  const ts = sc.traceState?.serialize();
  if (ts) out.set(TRACESTATE, ts);
  return out;
}

/** A fresh, valid context: the trace id every log line and hop of an untraced intent shares. */
function randomSpanContext(): SpanContext {
  const b = randomBytes(24).toString('hex');
  return { traceId: b.slice(0, 32), spanId: b.slice(32), traceFlags: TraceFlags.SAMPLED, isRemote: false };
}

export interface StartSpanOptions {
  /** The remote parent (from a message's headers); none starts a new trace. */
  parent?: SpanContext | undefined;
  kind?: SpanKind;
  attributes?: Attributes;
}

/**
 * Starts a span. Its context is always valid: with the no-op tracer the span carries the
 * parent's context (or a random one when there is none), so the trace id still reaches the
 * logs and the next hop although nothing is recorded.
 */
export function startSpan(name: string, o: StartSpanOptions = {}): Span {
  const ctx = o.parent ? trace.setSpanContext(ROOT_CONTEXT, o.parent) : ROOT_CONTEXT;
  const span = TRACER.startSpan(name, { kind: o.kind ?? SpanKind.INTERNAL, ...(o.attributes ? { attributes: o.attributes } : {}) }, ctx);
  if (isSpanContextValid(span.spanContext())) return span;
  return trace.wrapSpanContext(randomSpanContext());
}

/**
 * Starts a span as a child of the caller's active OpenTelemetry context (the agent's own trace,
 * when it has one and a context manager); a new trace otherwise. For the SDK.
 */
export function startClientSpan(name: string, attributes?: Attributes): Span {
  const span = TRACER.startSpan(name, { kind: SpanKind.PRODUCER, ...(attributes ? { attributes } : {}) });
  if (isSpanContextValid(span.spanContext())) return span;
  return trace.wrapSpanContext(randomSpanContext());
}

/** Ends a span with its outcome; an error code marks it failed. */
export function endSpan(span: Span, outcome: string, errorCode?: string): void {
  if (!span.isRecording()) return;
  span.setAttribute('writ.outcome', outcome);
  if (errorCode) span.setStatus({ code: SpanStatusCode.ERROR, message: errorCode });
  span.end();
}

/** The trace id for log lines. */
export function traceIdOf(span: Span): string {
  return span.spanContext().traceId;
}

export interface TracingOptions {
  /** `service.name` of the spans. Default OTEL_SERVICE_NAME, else `writ`. */
  serviceName?: string;
  /** OTLP/HTTP traces URL (the config's `observability.otlpEndpoint`). */
  endpoint?: string | undefined;
  /**
   * An exporter to use instead of OTLP, e.g. the SDK's InMemorySpanExporter in tests. Spans
   * are handed to it as they end (a simple processor), not batched.
   */
  exporter?: unknown;
  env?: NodeJS.ProcessEnv;
}

export interface TracingHandle {
  /** Where spans go: `otlp <url>`, `otlp (environment)`, `custom`, or `none`. */
  readonly exporting: string;
  /** Flushes what is buffered and unregisters the provider. */
  shutdown(): Promise<void>;
}

/**
 * Registers the OpenTelemetry SDK for this process when there is somewhere to send spans: the
 * given exporter, the config's endpoint, or the standard OTEL_EXPORTER_OTLP_TRACES_ENDPOINT /
 * OTEL_EXPORTER_OTLP_ENDPOINT (which the exporter reads itself). OTEL_SDK_DISABLED=true or
 * OTEL_TRACES_EXPORTER=none turns it off. Otherwise nothing is loaded and the API stays no-op.
 */
export async function initTracing(o: TracingOptions = {}): Promise<TracingHandle> {
  const env = o.env ?? process.env;
  const none: TracingHandle = { exporting: 'none', shutdown: async () => undefined };
  if (!o.exporter && (env.OTEL_SDK_DISABLED === 'true' || env.OTEL_TRACES_EXPORTER === 'none')) return none;
  const fromEnv = !!(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT);
  if (!o.exporter && !o.endpoint && !fromEnv) return none;
  const sdk = await import('@opentelemetry/sdk-trace-base');
  const { resourceFromAttributes } = await import('@opentelemetry/resources');
  let processor: InstanceType<typeof sdk.SimpleSpanProcessor> | InstanceType<typeof sdk.BatchSpanProcessor>;
  let exporting: string;
  if (o.exporter) {
    processor = new sdk.SimpleSpanProcessor(o.exporter as ConstructorParameters<typeof sdk.SimpleSpanProcessor>[0]);
    exporting = 'custom';
  } else {
    const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-http');
    processor = new sdk.BatchSpanProcessor(new OTLPTraceExporter(o.endpoint ? { url: o.endpoint } : {}));
    exporting = o.endpoint ? `otlp ${o.endpoint}` : 'otlp (environment)';
  }
  const provider = new sdk.BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': o.serviceName ?? env.OTEL_SERVICE_NAME ?? 'writ' }),
    spanProcessors: [processor],
  });
  if (!trace.setGlobalTracerProvider(provider)) {
    // Another provider is registered (an embedding application's): its spans carry ours too.
    await provider.shutdown();
    return { exporting: "the application's provider", shutdown: async () => undefined };
  }
  return {
    exporting,
    async shutdown() {
      await provider.forceFlush().catch(() => undefined);
      await provider.shutdown().catch(() => undefined);
      trace.disable();
    },
  };
}
