/**
 * The trace context on NATS headers: parsed strictly (an agent writes it), formatted per W3C,
 * and, with no tracer provider registered, spans still carry a valid context for logs and hops.
 */
import { headers } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { formatTraceparent, parseTraceparent, startSpan, traceContextOf, traceHeaders, traceIdOf } from './tracing.ts';

const TP = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

describe('traceparent', () => {
  it('parses a valid header and formats it back unchanged', () => {
    const sc = parseTraceparent(TP)!;
    expect(sc).toMatchObject({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 1, isRemote: true });
    expect(formatTraceparent(sc)).toBe(TP);
    expect(parseTraceparent(TP.replace(/-01$/, '-00'))!.traceFlags).toBe(0);
    // A later version may append fields; only the known ones are read.
    expect(parseTraceparent(`01${TP.slice(2)}-extra`)!.traceId).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
  });

  it('ignores what is not one: hostile or malformed headers never become a trace id', () => {
    for (const bad of [
      '',
      'garbage',
      TP.toUpperCase(),
      `ff${TP.slice(2)}`,
      `${TP}-extra`,
      '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
      '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01',
      `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\n{"level":60}`,
      `${TP.slice(0, 54)}`,
      `01${TP.slice(2)}-${'x'.repeat(300)}`,
    ])
      expect(parseTraceparent(bad), bad).toBeUndefined();
  });

  it('reads headers case-insensitively and writes traceparent and tracestate', () => {
    const h = headers();
    h.set('Traceparent', TP);
    h.set('TraceState', 'vendor=abc');
    const sc = traceContextOf(h)!;
    expect(sc.traceId).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
    const out = traceHeaders(sc)!;
    expect(out.get('traceparent')).toBe(TP);
    expect(out.get('tracestate')).toBe('vendor=abc');
    expect(traceContextOf(undefined)).toBeUndefined();
  });

  it("with no provider, a span keeps its parent's trace, and a span without one gets a fresh valid trace", () => {
    const parent = parseTraceparent(TP)!;
    const child = startSpan('x', { parent });
    expect(child.isRecording()).toBe(false);
    expect(traceIdOf(child)).toBe(parent.traceId);
    const root = startSpan('y');
    expect(traceIdOf(root)).toMatch(/^[0-9a-f]{32}$/);
    expect(traceIdOf(root)).not.toBe('0'.repeat(32));
    expect(traceIdOf(startSpan('z'))).not.toBe(traceIdOf(root));
    expect(traceHeaders(root)!.get('traceparent')).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  });
});
