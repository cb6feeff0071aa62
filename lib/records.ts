/**
 * The one intent-record store. Every service reads and writes `writ_intents` through these
 * functions, so the encoding, the schema check and the compare-and-set live in one place: a
 * record that does not parse is refused rather than read in part, and every change names the
 * revision it replaces, so two writers (broker replicas, the sweeper, a worker) never both win.
 */
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import { Bucket, type KV, type KvEntry } from '@nats-io/kv';
import { headers, type MsgHdrs } from '@nats-io/nats-core';
import { INTENT_STATES, IntentRecordSchema, sha256Hex, WritError, type IntentRecord, type IntentState } from '../schemas/index.ts';

const enc = new TextEncoder();

/** A record with the revision a compare-and-set names. */
export interface StoredRecord {
  rec: IntentRecord;
  revision: number;
}

/** The record a bucket entry holds; undefined for a delete or purge marker (or no entry). */
export function recordOf(e: KvEntry | null | undefined): StoredRecord | undefined {
  if (!e || e.operation !== 'PUT') return undefined;
  return { rec: IntentRecordSchema.parse(e.json()), revision: e.revision };
}

/** The intent's record as stored now, or undefined when there is none. */
export async function getRecord(kv: KV, intentId: string): Promise<StoredRecord | undefined> {
  return recordOf(await kv.get(intentId));
}

/** Writes the first record of an intent; fails when one exists (the broker's claim on the id). */
export async function createRecord(kv: KV, rec: IntentRecord): Promise<number> {
  const data = encodeRecord(rec);
  try {
    return await putRecord(kv, rec, data, 0);
  } catch (e) {
    // As the bucket's own create: a key whose last entry is a delete or purge marker is free.
    if (!(e instanceof JetStreamApiError) || (e.code !== JetStreamApiCodes.StreamWrongLastSequence && e.code !== JetStreamApiCodes.StreamWrongLastSequenceUnknown)) throw e;
    const last = await kv.get(rec.intentId);
    if (last && last.operation !== 'PUT') return putRecord(kv, rec, data, last.revision);
    throw e;
  }
}

/** The bucket as nats.js makes it (Kvm.open): records are written, and watched, through its stream. */
export function bucketOf(kv: KV): Bucket {
  if (!(kv instanceof Bucket)) throw new WritError('WRIT_INTERNAL', 'the intents bucket is not a JetStream key-value bucket');
  return kv;
}

/**
 * The header every record write carries: what the sweepers' watch needs to know of the change
 * (RecordNote), so that it follows the bucket with headers only and never receives a record's
 * body, which may hold a megabyte of sealed rows, once per broker replica. A hint of where to
 * look, as the glance is: every action re-reads the record through the schema.
 */
export const RECORD_NOTE_HEADER = 'Writ-Record';

/** What a record write says of itself in its header (RECORD_NOTE_HEADER). */
export interface RecordNote {
  state: IntentState;
  grantExp?: number;
  runDeadline?: number;
  /** A pending record's approval expiry (epoch ms) and whose intent it is (principalKey). */
  expiresAt?: number;
  principal?: string;
}

/** A principal as one short key: its issuer and subject, hashed (any characters fit a header). */
export function principalKey(p: { iss: string; sub: string }): string {
  return sha256Hex(`${p.iss}\n${p.sub}`).slice(0, 32);
}

function noteOf(rec: IntentRecord): RecordNote {
  const n: RecordNote = { state: rec.state };
  if (rec.grantExp !== undefined) n.grantExp = rec.grantExp;
  if (rec.runDeadline !== undefined) n.runDeadline = rec.runDeadline;
  if (rec.state === 'pending' && rec.pending) {
    n.expiresAt = rec.pending.expiresAt;
    n.principal = principalKey(rec.principal);
  }
  return n;
}

const isTime = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v);

/** The note a record change carries in its headers; undefined when it has none that reads right (the watcher then reads the record). */
export function recordNoteOf(h: MsgHdrs | undefined): RecordNote | undefined {
  const raw = h?.get(RECORD_NOTE_HEADER);
  if (!raw || raw.length > 512) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const { state, grantExp, runDeadline, expiresAt, principal } = v as Record<string, unknown>;
  if (typeof state !== 'string' || !STATES.has(state)) return undefined;
  if ((grantExp !== undefined && !isTime(grantExp)) || (runDeadline !== undefined && !isTime(runDeadline)) || (expiresAt !== undefined && !isTime(expiresAt))) return undefined;
  if (principal !== undefined && (typeof principal !== 'string' || !/^[0-9a-f]{32}$/.test(principal))) return undefined;
  const n: RecordNote = { state: state as IntentState };
  if (grantExp !== undefined) n.grantExp = grantExp;
  if (runDeadline !== undefined) n.runDeadline = runDeadline;
  if (expiresAt !== undefined) n.expiresAt = expiresAt;
  if (principal !== undefined) n.principal = principal;
  return n;
}

/**
 * Stores a record's bytes under its intent id if the key's last revision is `previousSeq` (0:
 * none), with its note in the headers: through the bucket's stream, as the bucket's own put
 * does (which takes no headers).
 */
async function putRecord(kv: KV, rec: IntentRecord, data: Uint8Array, previousSeq: number): Promise<number> {
  const b = bucketOf(kv);
  const h = headers();
  h.set(RECORD_NOTE_HEADER, JSON.stringify(noteOf(rec)));
  const pa = await b.js.publish(b.subjectForKey(b.encodeKey(rec.intentId), true), data, { headers: h, expect: { lastSubjectSequence: previousSeq } });
  return pa.seq;
}

/**
 * Replaces the record at `revision`; fails when another writer changed it since. `outcome`
 * gives the durable outcome already encoded (outcomeBytes), told how many bytes the record
 * itself takes with it: it is spliced in as the record's `outcome`, so a sealed result is never
 * parsed or encoded a second time, and the record is encoded once.
 */
export function updateRecord(kv: KV, rec: IntentRecord, revision: number, outcome?: (recordBytes: number) => Uint8Array): Promise<number> {
  if (!outcome) return putRecord(kv, rec, encodeRecord(rec), revision);
  const head = enc.encode(`${encodeJson(rec).slice(0, -1)},"outcome":`);
  const body = outcome(head.length + 1);
  const out = new Uint8Array(head.length + body.length + 1);
  out.set(head, 0);
  out.set(body, head.length);
  out[out.length - 1] = 0x7d; // }
  return putRecord(kv, rec, out, revision);
}

/**
 * A record's bytes. `state`, `sessionId`, then `grantExp` and `runDeadline` (each when present)
 * always come first, so that a watcher learns what it needs of a record change from its first
 * bytes (glanceRecord): never parsing an outcome that may hold a megabyte of sealed rows, nor the
 * whole record of every dispatch.
 */
export function encodeRecord(rec: IntentRecord): Uint8Array {
  return enc.encode(encodeJson(rec));
}

function encodeJson(rec: IntentRecord): string {
  const { state, sessionId, grantExp, runDeadline, outcome, ...rest } = rec;
  return JSON.stringify({
    state,
    sessionId,
    ...(grantExp !== undefined ? { grantExp } : {}),
    ...(runDeadline !== undefined ? { runDeadline } : {}),
    ...rest,
    ...(outcome ? { outcome } : {}),
  });
}

/** What a watcher needs of a record change: its state, and a dispatch's clocks. */
export interface RecordGlance {
  state: IntentState;
  sessionId: string;
  grantExp?: number;
  runDeadline?: number;
}

const GLANCE = /^\{"state":"([a-z_]{1,24})","sessionId":"([A-Za-z0-9_-]{8,128})"(?:,"grantExp":(\d{1,15}))?(?:,"runDeadline":(\d{1,15}))?[,}]/;
const STATES: ReadonlySet<string> = new Set(INTENT_STATES);
/** Keys a glance reads: each must appear once as written (a second one, spaced or not, is JSON's last value). */
const GLANCED_KEYS = ['"state"', '"grantExp"', '"runDeadline"'].map((k) => Buffer.from(k, 'latin1'));
/** A \u escape could spell a key another way (`"\u0073tate"`): bytes holding one are parsed in full. */
const ESCAPE_U = Buffer.from('\\u', 'latin1');

/**
 * The state (and a dispatch's clocks) from the first bytes of a record written by encodeRecord;
 * undefined when they do not read that way, and the caller then parses the whole record. Bytes
 * naming a glanced key twice (JSON.parse keeps a duplicate key's last value) or holding a \u
 * escape (which can spell a key another way) are not glanced: written so, a record would read
 * one way here and another everywhere else. encodeRecord writes neither.
 */
export function glanceRecord(bytes: Uint8Array): RecordGlance | undefined {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const m = GLANCE.exec(buf.toString('latin1', 0, Math.min(buf.length, 300)));
  if (!m || !STATES.has(m[1]!) || buf.includes(ESCAPE_U)) return undefined;
  for (const k of GLANCED_KEYS) {
    const at = buf.indexOf(k);
    if (at !== -1 && buf.indexOf(k, at + 1) !== -1) return undefined;
  }
  const g: RecordGlance = { state: m[1] as IntentState, sessionId: m[2]! };
  if (m[3] !== undefined) g.grantExp = Number(m[3]);
  if (m[4] !== undefined) g.runDeadline = Number(m[4]);
  return g;
}
