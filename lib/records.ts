/**
 * The one intent-record store. Every service reads and writes `writ_intents` through these
 * functions, so the encoding, the schema check and the compare-and-set live in one place: a
 * record that does not parse is refused rather than read in part, and every change names the
 * revision it replaces, so two writers (broker replicas, the sweeper, a worker) never both win.
 */
import type { KV, KvEntry } from '@nats-io/kv';
import { INTENT_STATES, IntentRecordSchema, sha256Hex, type IntentRecord, type IntentState } from '../schemas/index.ts';

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
export function createRecord(kv: KV, rec: IntentRecord): Promise<number> {
  return kv.create(rec.intentId, encodeRecord(rec));
}

/** A principal as one short key: its issuer and subject, hashed (for maps and counts by principal). */
export function principalKey(p: { iss: string; sub: string }): string {
  return sha256Hex(`${p.iss}\n${p.sub}`).slice(0, 32);
}

/**
 * Replaces the record at `revision`; fails when another writer changed it since. `outcome`
 * gives the durable outcome already encoded (outcomeBytes), told how many bytes the record
 * itself takes with it: it is spliced in as the record's `outcome`, so a sealed result is never
 * parsed or encoded a second time, and the record is encoded once.
 */
export function updateRecord(kv: KV, rec: IntentRecord, revision: number, outcome?: (recordBytes: number) => Uint8Array): Promise<number> {
  if (!outcome) return kv.update(rec.intentId, encodeRecord(rec), revision);
  const head = enc.encode(`${encodeJson(rec).slice(0, -1)},"outcome":`);
  const body = outcome(head.length + 1);
  const out = new Uint8Array(head.length + body.length + 1);
  out.set(head, 0);
  out.set(body, head.length);
  out[out.length - 1] = 0x7d; // }
  return kv.update(rec.intentId, out, revision);
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
