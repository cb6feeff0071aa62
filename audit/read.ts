/**
 * Reading the session log: one session, the whole stream, a time range, or live.
 * Everything reads through ordered consumers (ephemeral, in-memory, no acks), which is
 * all the auditor's NATS user may create on the audit stream.
 */
import { DeliverPolicy, jetstream, type Consumer, type JetStreamClient, type JsMsg } from '@nats-io/jetstream';
import { INTENT_STATES, WritError, type AuditEvent, type Names } from '../schemas/index.ts';
import { blockShapeError, eventShapeError } from './chain.ts';
import type { AuditSource, LineSink, SessionFilter, SessionSummary, StoredEvent } from './types.ts';

const decoder = new TextDecoder();

/** The JetStream client of a source. */
export function clientOf(src: AuditSource): JetStreamClient {
  if (src.js) return src.js;
  if (src.nc) return jetstream(src.nc);
  throw new WritError('WRIT_CONFIG_INVALID', 'audit: give js or nc');
}

/** One block message as the scanners hand it over. */
export interface RawBlock {
  seq: number;
  subject: string;
  data: Uint8Array;
  msg: JsMsg;
}

export interface ScanOptions {
  /** Subject filter; default the whole audit stream. */
  filter?: string | undefined;
  startSeq?: number | undefined;
  startTime?: Date | undefined;
  /** Only messages stored from now on; the scan then never ends by itself. */
  onlyNew?: boolean | undefined;
  /** Stop after this stream sequence (a snapshot's end); default: the end when the scan started. */
  endSeq?: number | undefined;
  /** Keep delivering new messages after the end of the stream until aborted. */
  follow?: boolean | undefined;
  signal?: AbortSignal | undefined;
}

/**
 * Delivers the stream's blocks in order to `onBlock` until the end of the stream as it was
 * when the scan started (or forever with `follow`). `onBlock` returns false to stop early.
 * Callback consumption, not an async iterator: this is the verifier's hot loop.
 */
export async function scanBlocks(js: JetStreamClient, n: Names, opts: ScanOptions, onBlock: (b: RawBlock) => boolean | void): Promise<void> {
  const c = await openConsumer(js, n, opts);
  if (!c) return;
  const follow = opts.follow || opts.onlyNew;
  let failure: unknown;
  let stopped = false;
  const msgs = await c.consume({
    max_messages: 1024,
    callback: (m) => {
      if (stopped) return; // already buffered when the scan ended
      let more: boolean | void;
      try {
        more = onBlock(rawBlock(m));
      } catch (e) {
        failure = e;
        more = false;
      }
      if (more === false || (!follow && (m.info.pending === 0 || (opts.endSeq !== undefined && m.seq >= opts.endSeq)))) {
        stopped = true;
        void msgs.stop();
      }
    },
  });
  const onAbort = () => void msgs.stop();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await msgs.closed();
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
  if (failure !== undefined) throw failure;
}

/** The same scan as an async iterator, for consumers that must await (a sink's backpressure). */
async function* iterateBlocks(js: JetStreamClient, n: Names, opts: ScanOptions): AsyncGenerator<RawBlock> {
  const c = await openConsumer(js, n, opts);
  if (!c) return;
  const follow = opts.follow || opts.onlyNew;
  const msgs = await c.consume({ max_messages: 1024 });
  const onAbort = () => void msgs.stop();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const m of msgs) {
      yield rawBlock(m);
      if (!follow && m.info.pending === 0) break;
    }
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    void msgs.stop();
  }
}

/** An ordered consumer positioned as `opts` says; undefined when there is nothing to read and no follow. */
export async function openConsumer(js: JetStreamClient, n: Names, opts: ScanOptions): Promise<Consumer | undefined> {
  if (opts.signal?.aborted) return undefined;
  const c = await js.consumers.get(n.streams.audit, {
    // The stream holds only audit subjects: no filter reads all of it, and costs the server less.
    ...(opts.filter !== undefined ? { filter_subjects: opts.filter } : {}),
    ...(opts.onlyNew
      ? { deliver_policy: DeliverPolicy.New }
      : opts.startTime
        ? { opt_start_time: opts.startTime.toISOString() }
        : opts.startSeq
          ? { opt_start_seq: opts.startSeq }
          : { deliver_policy: DeliverPolicy.All }),
  });
  if (!(opts.follow || opts.onlyNew) && (await c.info(true)).num_pending === 0) {
    await c.delete().catch(() => undefined);
    return undefined;
  }
  return c;
}

function rawBlock(m: JsMsg): RawBlock {
  return { seq: m.seq, subject: m.subject, data: m.data, msg: m };
}

/** Parses a block and checks its shape and session; returns its events or why it is not a block. */
export function decodeBlock(data: Uint8Array, sessionId: string): AuditEvent[] | string {
  let b: unknown;
  try {
    b = JSON.parse(decoder.decode(data));
  } catch {
    return 'block is not JSON';
  }
  const err = blockShapeError(b);
  if (err) return err;
  const events = (b as { events: AuditEvent[] }).events;
  for (const e of events) {
    const why = eventShapeError(e);
    if (why) return why;
    if (e.sessionId !== sessionId) return `event ${e.id} names session ${e.sessionId}`;
  }
  return events;
}

/** The session id of an audit subject (`<prefix>.audit.<sessionId>`). */
export function sessionOf(n: Names, subject: string): string {
  return subject.slice(n.audit('x').length - 1);
}

/** A session's events in chain order. Throws on a block that is not readable (run verify for the details). */
export async function readSession(src: AuditSource & { sessionId: string }): Promise<AuditEvent[]> {
  return (await readSessionStored(src)).map((s) => s.event);
}

/** A session's events with the stream sequence of their block. */
export async function readSessionStored(src: AuditSource & { sessionId: string }): Promise<StoredEvent[]> {
  const { names: n, sessionId } = src;
  const out: StoredEvent[] = [];
  await scanBlocks(clientOf(src), n, { filter: n.audit(sessionId) }, (b) => {
    const events = decodeBlock(b.data, sessionId);
    if (typeof events === 'string') throw new WritError('WRIT_INTERNAL', `audit block ${b.seq} of session ${sessionId} is malformed: ${events}`);
    for (const event of events) out.push({ seq: b.seq, event });
  });
  return out;
}

/**
 * The state an event puts its intent in, for `--outcome` (undefined when it changes none).
 * Follows the payloads the broker and workers write: `intent.decided` carries
 * `decision.effect`, `exec.finished` carries `status`.
 */
function outcomeOf(ev: Pick<AuditEvent, 'type' | 'payload'>): string | undefined {
  const p = ev.payload ?? {};
  // A worker's report says what happened to its run (exec.finished's status), never which state
  // the intent is in: a `state` in it (a refusal's, say) is not the broker's word.
  const workerReport = ev.type.startsWith('exec.') && ev.type !== 'exec.lost' && ev.type !== 'exec.expired';
  if (!workerReport && typeof p['state'] === 'string' && (INTENT_STATES as readonly string[]).includes(p['state'])) return p['state'];
  switch (ev.type) {
    case 'intent.received':
      return 'received';
    case 'intent.rejected_input':
      return 'denied';
    case 'intent.decided': {
      const effect = (p['decision'] as { effect?: unknown } | undefined)?.effect ?? p['effect'];
      return effect === 'deny' ? 'denied' : effect === 'require_approval' ? 'pending' : undefined;
    }
    case 'intent.dispatched':
      return 'dispatched';
    case 'exec.claimed':
      return 'running';
    case 'exec.finished':
      return typeof p['status'] === 'string' ? p['status'] : 'finished';
    case 'exec.lost':
      return 'unknown';
    case 'api.cancel':
      return 'cancelled';
    default: {
      const m = /^(?:intent|approval)\.([a-z_]+)$/.exec(ev.type);
      return m && (INTENT_STATES as readonly string[]).includes(m[1]!) ? m[1] : undefined;
    }
  }
}

interface Acc extends SessionSummary {
  intentSet: Set<string>;
  lastStateType?: string;
}

/** Summaries of the sessions matching `filter`, oldest first. Reads the whole stream once. */
export async function listSessions(src: AuditSource & SessionFilter): Promise<SessionSummary[]> {
  const { names: n, ...filter } = src;
  const acc = new Map<string, Acc>();
  await scanBlocks(clientOf(src), n, {}, (b) => {
    const sid = sessionOf(n, b.subject);
    const events = decodeBlock(b.data, sid);
    if (typeof events === 'string') return;
    let s = acc.get(sid);
    if (!s) {
      s = { sessionId: sid, firstAt: events[0]!.at, lastAt: events[0]!.at, events: 0, intents: 0, principals: [], targets: [], lastType: '', intentSet: new Set() };
      acc.set(sid, s);
    }
    for (const ev of events) {
      s.events++;
      if (ev.at < s.firstAt) s.firstAt = ev.at;
      if (ev.at > s.lastAt) s.lastAt = ev.at;
      s.lastType = ev.type;
      if (ev.intentId) s.intentSet.add(ev.intentId);
      if (ev.type === 'intent.received' && ev.payload) {
        const sub = (ev.payload['principal'] as { sub?: unknown } | undefined)?.sub;
        if (typeof sub === 'string' && !s.principals.includes(sub)) s.principals.push(sub);
        const target = ev.payload['target'];
        if (typeof target === 'string' && !s.targets.includes(target)) s.targets.push(target);
      }
      const o = outcomeOf(ev);
      if (o !== undefined) {
        s.outcome = o;
        s.lastStateType = ev.type;
      }
    }
  });
  const out: SessionSummary[] = [];
  for (const s of acc.values()) {
    if (filter.principal !== undefined && !s.principals.includes(filter.principal)) continue;
    if (filter.target !== undefined && !s.targets.includes(filter.target)) continue;
    if (filter.since !== undefined && s.lastAt < filter.since) continue;
    if (filter.until !== undefined && s.firstAt >= filter.until) continue;
    if (filter.outcome !== undefined && s.outcome !== filter.outcome && s.lastStateType !== filter.outcome) continue;
    const { intentSet, lastStateType: _, ...summary } = s;
    out.push({ ...summary, intents: intentSet.size });
  }
  return out.sort((a, b) => a.firstAt - b.firstAt || (a.sessionId < b.sessionId ? -1 : 1));
}

/**
 * Writes every event with `since <= at < until` as one JSON line (an AuditEvent) to `sink`,
 * in stream order. Returns the number of events written. Selection is by the events' own
 * `at`, so the whole stream is read: stream time only approximates `at` (writers' clocks,
 * backfills), and an export is evidence.
 */
export async function exportJsonl(src: AuditSource & { since?: number | undefined; until?: number | undefined; sessionId?: string | undefined }, sink: LineSink): Promise<number> {
  const { names: n, ...range } = src;
  const js = clientOf(src);
  const since = range.since ?? 0;
  const until = range.until ?? Number.MAX_SAFE_INTEGER;
  let count = 0;
  let lines: string[] = [];
  const pushOut = async () => {
    if (lines.length === 0) return;
    const ok = sink.write(lines.join(''));
    lines = [];
    if (ok === false && sink.once) await new Promise<void>((r) => sink.once!('drain', r));
  };
  for await (const b of iterateBlocks(js, n, { filter: range.sessionId ? n.audit(range.sessionId) : undefined })) {
    const events = decodeBlock(b.data, sessionOf(n, b.subject));
    if (typeof events === 'string') throw new WritError('WRIT_INTERNAL', `audit block ${b.seq} is malformed: ${events}`);
    for (const ev of events) {
      if (ev.at < since || ev.at >= until) continue;
      lines.push(`${JSON.stringify(ev)}\n`);
      count++;
      if (lines.length >= 1000) await pushOut();
    }
  }
  await pushOut();
  return count;
}

/**
 * Calls `onEvent` for each event appended from now on (or from `fromSeq`), until `signal`
 * aborts. Resolves when it does.
 */
export async function tail(src: AuditSource & { sessionId?: string | undefined; fromSeq?: number | undefined }, onEvent: (e: StoredEvent) => void, signal: AbortSignal): Promise<void> {
  const { names: n, ...opts } = src;
  await scanBlocks(
    clientOf(src),
    n,
    {
      filter: opts.sessionId ? n.audit(opts.sessionId) : undefined,
      ...(opts.fromSeq ? { startSeq: opts.fromSeq, follow: true } : { onlyNew: true }),
      signal,
    },
    (b) => {
      const events = decodeBlock(b.data, sessionOf(n, b.subject));
      if (typeof events === 'string') return;
      for (const event of events) onEvent({ seq: b.seq, event });
    },
  );
}
