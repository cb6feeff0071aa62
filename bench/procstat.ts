/**
 * What one benchmark step costs beyond its latency: CPU per process (from /proc/<pid>/stat),
 * and the server's own counters (nats-server's /varz and /jsz monitoring endpoints). Taken
 * before and after a load step; the difference divided by the intents it served is the cost
 * per intent. Linux only, like the rest of the benchmark.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc's utime and stime; 100 on every Linux this runs on. */
const HZ = 100;

/** CPU time (user + system) of one process, in ms; NaN when it is gone. */
function cpuMsOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may hold spaces: count fields after the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / HZ;
  } catch {
    return NaN;
  }
}

/** CPU ms of each process named `postgres` (the server and its backends) on this machine, by pid. */
function postgresCpuMs(): Map<number, number> {
  const out = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/comm`, 'utf8').trim() !== 'postgres') continue;
    } catch {
      continue;
    }
    const ms = cpuMsOf(Number(d));
    if (Number.isFinite(ms)) out.set(Number(d), ms);
  }
  return out;
}

interface ServerCounters {
  /** Messages and bytes into and out of the server (every client, every subject). */
  inMsgs: number;
  outMsgs: number;
  inBytes: number;
  outBytes: number;
  /** JetStream API requests handled. */
  jsApi: number;
  /** Messages ever stored, over every stream (KV buckets are streams): the sum of last sequences. */
  stored: number;
}

interface Varz {
  in_msgs: number;
  out_msgs: number;
  in_bytes: number;
  out_bytes: number;
}
interface Jsz {
  api?: { total?: number };
  account_details?: Array<{ stream_detail?: Array<{ state?: { last_seq?: number } }> }>;
}

/** The server's counters from its monitoring port. */
async function serverCounters(monitorUrl: string): Promise<ServerCounters> {
  const [v, j] = await Promise.all([fetch(`${monitorUrl}/varz`).then((r) => r.json() as Promise<Varz>), fetch(`${monitorUrl}/jsz?streams=true`).then((r) => r.json() as Promise<Jsz>)]);
  let stored = 0;
  for (const a of j.account_details ?? []) for (const s of a.stream_detail ?? []) stored += s.state?.last_seq ?? 0;
  return { inMsgs: v.in_msgs, outMsgs: v.out_msgs, inBytes: v.in_bytes, outBytes: v.out_bytes, jsApi: j.api?.total ?? 0, stored };
}

/** The CPU of named processes plus this one (the load generator) and the server counters, at one moment. */
export interface CostSnapshot {
  cpu: Record<string, number>;
  /** PostgreSQL processes by pid: backends come and go, so only those alive at both ends are compared. */
  pg: Map<number, number>;
  server: ServerCounters;
}

export async function snapshot(pids: Record<string, number>, monitorUrl: string): Promise<CostSnapshot> {
  const cpu: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids)) cpu[name] = cpuMsOf(pid);
  const self = process.cpuUsage();
  cpu['load generator'] = (self.user + self.system) / 1000;
  return { cpu, pg: postgresCpuMs(), server: await serverCounters(monitorUrl) };
}

/** Per-intent cost between two snapshots. */
export interface PerIntentCost {
  cpuMs: Record<string, number>;
  jsApi: number;
  stored: number;
  /** Messages through the server, in plus out. */
  msgs: number;
  /** Bytes through the server, in plus out. */
  bytes: number;
}

export function perIntent(a: CostSnapshot, b: CostSnapshot, intents: number): PerIntentCost {
  const n = Math.max(1, intents);
  const cpuMs: Record<string, number> = {};
  for (const k of Object.keys(b.cpu)) cpuMs[k] = (b.cpu[k]! - a.cpu[k]!) / n;
  let pg = 0;
  for (const [pid, ms] of b.pg) pg += ms - (a.pg.get(pid) ?? 0);
  cpuMs['postgres (all)'] = pg / n;
  return {
    cpuMs,
    jsApi: (b.server.jsApi - a.server.jsApi) / n,
    stored: (b.server.stored - a.server.stored) / n,
    msgs: (b.server.inMsgs - a.server.inMsgs + b.server.outMsgs - a.server.outMsgs) / n,
    bytes: (b.server.inBytes - a.server.inBytes + b.server.outBytes - a.server.outBytes) / n,
  };
}
