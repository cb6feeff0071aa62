/**
 * The one intent-record store. Every service reads and writes `writ_intents` through these
 * functions, so the encoding, the schema check and the compare-and-set live in one place: a
 * record that does not parse is refused rather than read in part, and every change names the
 * revision it replaces, so two writers (broker replicas, the sweeper, a worker) never both win.
 */
import type { KV, KvEntry } from '@nats-io/kv';
import { IntentRecordSchema, type IntentRecord } from '../schemas/index.ts';

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
  return kv.create(rec.intentId, enc.encode(JSON.stringify(rec)));
}

/** Replaces the record at `revision`; fails when another writer changed it since. */
export function updateRecord(kv: KV, rec: IntentRecord, revision: number): Promise<number> {
  return kv.update(rec.intentId, enc.encode(JSON.stringify(rec)), revision);
}
