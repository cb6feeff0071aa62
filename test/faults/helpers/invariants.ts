/**
 * What must hold after any fault, checked against the real state (KV buckets, the target's
 * rows, the audit chains) with bounded polling:
 *  1. every accepted intent reaches an end state in the intents bucket;
 *  2. nothing ran twice: at most one row per tag on the target; exactly one for a succeeded
 *     intent, none for one that ended failed (or denied, expired, cancelled, rejected);
 *  3. every executed intent (a claim, or a row on the target) has its evidence in its session's
 *     chain, in order: intent.received, intent.dispatched, the claim (exec.claimed, or the
 *     sweeper's exec.lost carrying it), then its end (exec.finished, or exec.lost for unknown);
 *  4. `writ audit verify` (a separate CLI process, checked against state) passes;
 *  5. the agent learns the end state: the SDK's wait() reports what the bucket says, both when
 *     asked afterwards and for the runs (SDK run()) the agent held open during the fault (`waited`).
 * Each violation is one line of evidence; a test expects the list to be empty.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Kvm, type KV } from '@nats-io/kv';
import { readSession } from '../../../audit/index.ts';
import { TERMINAL_STATES, type AuditEvent, type IntentRecord, type IntentState } from '../../../schemas/index.ts';
import { CLI, readLog, REPO, type FaultStack } from './stack.ts';
import type { Submission, Workload } from './workload.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const NO_EFFECT: ReadonlySet<string> = new Set(['failed', 'denied', 'expired', 'cancelled', 'rejected']);

export interface Report {
  violations: string[];
  /** End state of each accepted intent, by intent id. */
  records: Map<string, IntentRecord>;
  rows: Map<string, number>;
  counts: Record<string, number>;
}

async function buckets(s: FaultStack): Promise<{ intents: KV; claims: KV }> {
  const kvm = new Kvm(s.nc);
  return { intents: await kvm.open(s.names.buckets.intents), claims: await kvm.open(s.names.buckets.claims) };
}

async function record(kv: KV, id: string): Promise<IntentRecord | undefined> {
  const e = await kv.get(id);
  return e && e.operation === 'PUT' ? (e.json() as IntentRecord) : undefined;
}

async function keys(kv: KV): Promise<string[]> {
  const out: string[] = [];
  for await (const k of await kv.keys()) out.push(k);
  return out;
}

/** Polls until every accepted intent has an end state, or the deadline; returns what it last saw. */
export async function waitForEndStates(s: FaultStack, subs: Submission[], deadlineMs = 60_000): Promise<Map<string, IntentRecord | undefined>> {
  const { intents } = await buckets(s);
  const seen = new Map<string, IntentRecord | undefined>();
  const end = Date.now() + deadlineMs;
  for (;;) {
    for (const sub of subs) {
      const prev = seen.get(sub.intentId);
      if (prev && TERMINAL_STATES.has(prev.state)) continue;
      seen.set(sub.intentId, await record(intents, sub.intentId).catch(() => prev));
    }
    const open = subs.filter((x) => !TERMINAL_STATES.has(seen.get(x.intentId)?.state ?? 'received'));
    if (open.length === 0 || Date.now() > end) return seen;
    await sleep(500);
  }
}

/** Also waits (bounded) for records of submissions that were not accepted, so verify sees a quiet state. */
async function waitForQuiet(s: FaultStack, deadline: number): Promise<void> {
  const { intents } = await buckets(s);
  while (Date.now() < deadline) {
    let open = 0;
    for (const k of await keys(intents)) {
      const r = await record(intents, k).catch(() => undefined);
      if (r && !TERMINAL_STATES.has(r.state)) open++;
    }
    if (open === 0) return;
    await sleep(500);
  }
}

/** What the services' logs say about an intent: the evidence a violation carries. */
function mentions(s: FaultStack, intentId: string): string {
  const lines = s.procs.flatMap((p) =>
    readLog(p)
      .split('\n')
      .filter((l) => l.includes(intentId))
      .map((l) => `${p.kind}-${p.pid}: ${l.slice(0, 400)}`),
  );
  return lines.length ? `; logs: ${lines.slice(0, 4).join(' | ')}` : '; no service log line names it';
}

async function rowsByTag(s: FaultStack): Promise<Map<string, number>> {
  const r = await s.admin.query<{ tag: string; n: number }>('SELECT tag, count(*)::int AS n FROM runs GROUP BY tag');
  return new Map(r.rows.map((x) => [x.tag, x.n]));
}

function evidenceProblems(sub: Submission, rec: IntentRecord, events: AuditEvent[], claimed: boolean, rows: number): string | undefined {
  const executed = claimed || rows > 0 || rec.state === 'succeeded' || rec.state === 'unknown';
  if (!executed) return undefined;
  const mine = events.filter((e) => e.intentId === sub.intentId);
  const idx = (pred: (e: AuditEvent) => boolean) => mine.findIndex(pred);
  const received = idx((e) => e.type === 'intent.received');
  const dispatched = idx((e) => e.type === 'intent.dispatched');
  const claimEv = idx((e) => e.type === 'exec.claimed' || (e.type === 'exec.lost' && typeof (e.payload as { claim?: unknown } | undefined)?.claim === 'object'));
  const finished = idx((e) => e.type === 'exec.finished');
  const lost = idx((e) => e.type === 'exec.lost');
  const missing: string[] = [];
  if (received < 0) missing.push('intent.received');
  if (dispatched < 0) missing.push('intent.dispatched');
  if (claimEv < 0) missing.push('exec.claimed (or exec.lost with the claim)');
  const endEv = rec.state === 'unknown' ? (finished >= 0 ? finished : lost) : finished;
  if (endEv < 0) missing.push(rec.state === 'unknown' ? 'exec.finished or exec.lost' : 'exec.finished');
  const order = [received, dispatched, claimEv, endEv];
  const outOfOrder = missing.length === 0 && order.some((v, i) => i > 0 && v < order[i - 1]!);
  if (missing.length === 0 && !outOfOrder) return undefined;
  return (
    `evidence: intent ${sub.intentId} (${sub.tag}, session ${sub.sessionId}, state ${rec.state}, claimed ${claimed}, rows ${rows})` +
    `${missing.length ? ` lacks ${missing.join(', ')}` : ''}${outOfOrder ? ' has its events out of order' : ''}; chain holds [${mine.map((e) => e.type).join(', ')}]`
  );
}

/** Runs `writ audit verify` against state, as an operator would, in its own process. */
async function auditVerify(s: FaultStack): Promise<{ code: number | null; out: string }> {
  // The services register their keys in the stack's registry (audit.autoRegisterKeys): every block's signature is checked.
  const signatures = ['--keys', join(s.dir, 'audit-keys.json')];
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'audit', 'verify', '--json', '--state-grace', '0', ...signatures], {
    cwd: REPO,
    // The check against state reads the intents and claims buckets: the operator's login (deploy/nats/README.md).
    env: { ...process.env, ...s.natsEnv('operator'), WRIT_PREFIX: s.prefix, WRIT_DATA_DIR: s.dir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  clearTimeout(timer);
  return { code, out };
}

export async function checkInvariants(s: FaultStack, w: Workload, opts: { deadlineMs?: number; agent?: boolean } = {}): Promise<Report> {
  const start = Date.now();
  // A broker killed mid-burst leaves intents with its consumer until ack_wait (30 s) hands them to the next one.
  const deadlineMs = opts.deadlineMs ?? 75_000;
  const violations: string[] = [];
  const accepted = w.accepted();

  // 1. end states
  const t: Record<string, number> = {};
  const lap = (k: string) => (t[k] = Date.now() - start);
  const seen = await waitForEndStates(s, accepted, deadlineMs);
  lap('endStatesMs');
  const records = new Map<string, IntentRecord>();
  for (const sub of accepted) {
    const r = seen.get(sub.intentId);
    if (!r)
      violations.push(
        `end state: accepted intent ${sub.intentId} (${sub.tag}, submitted ${new Date(sub.submittedAt).toISOString()}) has no record in ${s.names.buckets.intents}${mentions(s, sub.intentId)}`,
      );
    else if (!TERMINAL_STATES.has(r.state)) violations.push(`end state: accepted intent ${sub.intentId} (${sub.tag}) still ${r.state} after ${deadlineMs} ms`);
    if (r) records.set(sub.intentId, r);
  }
  await waitForQuiet(s, start + deadlineMs);
  lap('quietMs');

  // 2. at most once, counted on the target
  const rows = await rowsByTag(s);
  for (const [tag, n] of rows) if (n > 1) violations.push(`ran twice: tag ${tag} has ${n} rows`);
  for (const sub of accepted) {
    const r = records.get(sub.intentId);
    const n = rows.get(sub.tag) ?? 0;
    if (r?.state === 'succeeded' && n !== 1) violations.push(`rows: succeeded intent ${sub.intentId} (${sub.tag}) has ${n} rows, not 1`);
    if (r && NO_EFFECT.has(r.state) && n !== 0) {
      violations.push(`rows: intent ${sub.intentId} (${sub.tag}) ended ${r.state} (${r.error?.code ?? 'no code'}: ${r.error?.message ?? ''}) but has ${n} row(s) on the target`);
    }
  }

  // 3. evidence: polled, since a worker's events may still be on their way after a reconnect
  const { intents, claims } = await buckets(s);
  const evidenceEnd = Math.max(Date.now() + 10_000, start + deadlineMs);
  let evidence: string[] = [];
  for (;;) {
    const claimed = new Set(await keys(claims));
    const sessions = new Map<string, AuditEvent[]>();
    for (const sid of new Set(accepted.map((x) => x.sessionId))) sessions.set(sid, await readSession({ nc: s.nc, names: s.names, sessionId: sid }));
    evidence = [];
    for (const sub of accepted) {
      const r = records.get(sub.intentId);
      if (!r) continue;
      const p = evidenceProblems(sub, r, sessions.get(sub.sessionId) ?? [], claimed.has(r.grantId ?? sub.intentId), rows.get(sub.tag) ?? 0);
      if (p) evidence.push(p);
    }
    if (evidence.length === 0 || Date.now() > evidenceEnd) break;
    await sleep(1_000);
  }
  violations.push(...evidence);
  lap('evidenceMs');

  // 4. writ audit verify, against state
  const v = await auditVerify(s);
  if (v.code !== 0) violations.push(`audit verify exited ${v.code}: ${v.out.slice(0, 6000)}`);
  lap('verifyMs');

  // 5. the agent learns the end state through the SDK (the broker's API), promptly
  if (opts.agent ?? true) {
    let i = 0;
    let failures = 0;
    // Bounded: after a few failures the rest are counted, not each waited for.
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (i < accepted.length && failures < 8) {
          const sub = accepted[i++]!;
          const r = records.get(sub.intentId);
          if (!r || !TERMINAL_STATES.has(r.state)) continue;
          try {
            // The submitting agent asks: outcomes are sealed to its own key.
            const o = await w.clients[sub.client]!.wait(sub.intentId, { timeoutMs: 5_000 });
            if (o.status !== r.state) {
              failures++;
              violations.push(`agent: wait(${sub.intentId}) reported ${o.status}, the bucket says ${r.state}`);
            }
          } catch (e) {
            failures++;
            violations.push(`agent: wait(${sub.intentId}) failed: ${(e as Error).message}`);
          }
        }
      }),
    );
    if (i < accepted.length) violations.push(`agent: ${accepted.length - i} more intents not asked after ${failures} failures`);
  }

  // 5b. the runs held open while the fault happened ended with the real outcome
  await w.waits();
  for (const sub of w.subs) {
    if (!sub.waited) continue;
    const r = records.get(sub.intentId);
    const latest = await record(intents, sub.intentId).catch(() => undefined);
    if ('error' in sub.waited) violations.push(`agent: the run held open for ${sub.intentId} (${sub.tag}) failed: ${sub.waited.error}`);
    else if (sub.waited.status !== r?.state && sub.waited.status !== latest?.state) {
      violations.push(`agent: the run held open for ${sub.intentId} (${sub.tag}) ended ${sub.waited.status}, the bucket says ${latest?.state ?? r?.state ?? 'nothing'}`);
    }
  }
  lap('agentMs');
  // records may have moved on since step 1 (e.g. a late exec.finished after unknown): keep the latest
  for (const sub of accepted) {
    const r = await record(intents, sub.intentId).catch(() => undefined);
    if (r) records.set(sub.intentId, r);
  }
  const counts: Record<string, number> = { submitted: w.subs.length, accepted: accepted.length };
  for (const r of records.values()) {
    const k = r.error ? `${r.state}:${r.error.code}` : r.state;
    counts[k] = (counts[k] ?? 0) + 1;
  }
  return { violations, records, rows, counts: { ...counts, ...t } };
}

export function stateOf(rep: Report, sub: Submission): IntentState | undefined {
  return rep.records.get(sub.intentId)?.state;
}

/** How many accepted intents ended in `state` (any error code). */
export function countState(rep: Report, state: IntentState): number {
  return [...rep.records.values()].filter((r) => r.state === state).length;
}
