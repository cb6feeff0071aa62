/**
 * Turning raw bytes from `writ.intent.<target>` into a validated intent, or a coded
 * refusal. Nothing here throws to the caller: every failure becomes a Refusal that
 * says what can be learned about the sender, so it can be answered and audited.
 */
import { AgentIdSchema, InboxSchema, IntentSchema, WritError, X25519KeySchema, formatIssues, type Intent } from '../schemas/index.ts';

export interface Refusal {
  error: WritError;
  /** Whatever could be read of the message, for the reply and the audit trail. */
  partial: { id?: string; sessionId?: string; replyTo?: string; token?: string; target?: string };
  /** Where the sender asked to be answered, as it wrote it (read in the same parse). */
  reply?: { replyKey?: string; replyTo?: unknown };
}

export type IntakeResult = { ok: true; intent: Intent } | { ok: false; refusal: Refusal };

function replyOf(raw: unknown): Refusal['reply'] {
  if (!raw || typeof raw !== 'object') return {};
  const r = raw as { replyKey?: unknown; replyTo?: unknown };
  return { ...(X25519KeySchema.safeParse(r.replyKey).success ? { replyKey: r.replyKey as string } : {}), ...(r.replyTo !== undefined ? { replyTo: r.replyTo } : {}) };
}

function pick(raw: unknown): Refusal['partial'] {
  if (!raw || typeof raw !== 'object') return {};
  const r = raw as Record<string, unknown>;
  const out: Refusal['partial'] = {};
  if (AgentIdSchema.safeParse(r.id).success) out.id = r.id as string;
  if (AgentIdSchema.safeParse(r.sessionId).success) out.sessionId = r.sessionId as string;
  if (InboxSchema.safeParse(r.replyTo).success) out.replyTo = r.replyTo as string;
  if (typeof r.token === 'string' && r.token.length < 16_384) out.token = r.token;
  if (typeof r.target === 'string') out.target = r.target.slice(0, 64);
  return out;
}

/**
 * Headers an intent may carry, bytes: its trace context (`traceparent`, `tracestate` of at most
 * 512 characters) and the SDK's send count fit many times over. Larger headers are refused before
 * they are decoded (lib/consume.ts headerBytes).
 */
export const MAX_INTENT_HEADER_BYTES = 4_096;

const TOKEN_FIELD = Buffer.from('"token":"');
const QUOTE = 0x22;

/**
 * The token an intent's bytes carry, found without parsing them: the first `"token":"` and the
 * characters up to the next quote (a JWT holds no quote and nothing JSON escapes). For the
 * intake's lanes only, never for identity: an intent that names a known token here but carries
 * another is verified by what it carries, and is refused like any other.
 */
export function tokenIn(data: Uint8Array, maxTokenBytes: number): string | undefined {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const at = buf.indexOf(TOKEN_FIELD);
  if (at < 0) return undefined;
  const from = at + TOKEN_FIELD.length;
  const end = buf.indexOf(QUOTE, from);
  if (end < 0 || end - from > maxTokenBytes) return undefined;
  return buf.toString('latin1', from, end);
}

/** `headerBytes`: the message's header size (undefined when it could not be measured: refused). */
export function intake(data: Uint8Array, subjectTarget: string, maxBytes: number, headerBytes = 0): IntakeResult {
  let raw: unknown;
  const tooLarge = data.length > maxBytes;
  try {
    raw = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
  } catch (e) {
    const error = tooLarge ? new WritError('WRIT_PAYLOAD_TOO_LARGE', `the intent is ${data.length} bytes; the limit is ${maxBytes}`) : new WritError('WRIT_BAD_JSON', undefined, { cause: e });
    return { ok: false, refusal: { error, partial: {}, reply: {} } };
  }
  const partial = pick(raw);
  const reply = replyOf(raw);
  if (headerBytes === undefined || headerBytes > MAX_INTENT_HEADER_BYTES) {
    const size = headerBytes === undefined ? 'of unknown size' : `of ${headerBytes} bytes`;
    return { ok: false, refusal: { error: new WritError('WRIT_BAD_REQUEST', `the intent's headers are ${size}; at most ${MAX_INTENT_HEADER_BYTES} are read`), partial, reply } };
  }
  if (tooLarge) return { ok: false, refusal: { error: new WritError('WRIT_PAYLOAD_TOO_LARGE', `the intent is ${data.length} bytes; the limit is ${maxBytes}`), partial, reply } };
  const r = IntentSchema.safeParse(raw);
  if (!r.success) return { ok: false, refusal: { error: new WritError('WRIT_BAD_REQUEST', `invalid intent:\n${formatIssues(r.error)}`), partial, reply } };
  const intent = r.data;
  if (intent.target !== subjectTarget) {
    return { ok: false, refusal: { error: new WritError('WRIT_BAD_REQUEST', 'the intent names another target than its subject'), partial, reply } };
  }
  // A passed deadline is checked by the broker once it knows whether the id is stored already
  // (a resend after a lost receipt finds its record; only an intent never stored is refused).
  return { ok: true, intent };
}
