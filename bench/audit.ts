/**
 * Audit benchmark: writes a large log through AuditWriter, then measures verify()
 * throughput over the whole stream and the replay time of one session among many.
 *
 *   npx tsx bench/audit.ts [--sessions 100000] [--intents 2] [--threads N] [--url nats://…]
 *
 * The log is shaped like the broker and workers write it: per intent one broker block
 * (intent.received, intent.decided, intent.dispatched) and one worker block (exec.claimed,
 * exec.finished), so 5 events in 2 blocks. Defaults: 100 000 sessions × 2 intents =
 * 1 000 000 events in 400 000 messages. nats-server runs with GOMAXPROCS=1, file storage,
 * no fsync per message (nats-server 2.9's default).
 */
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { names } from '../schemas/index.ts';
import { startNats, uniqueName } from '../test/helpers/index.ts';
import { AuditWriter, Checkpointer, ensureAuditStream, readSession, runAuditCli, verify } from '../audit/index.ts';

export interface BenchAuditOptions {
  /** Sessions in the log. Default 100 000. */
  sessions?: number;
  /** Intents per session (5 events each). Default 2. */
  intents?: number;
  /** Sessions written at once. Default 2000. */
  concurrency?: number;
  /** Worker threads for verify (default: verify's own choice). */
  threads?: number;
  /** Use this server instead of starting one. */
  url?: string;
  log?: (line: string) => void;
}

export async function benchAudit(opts: BenchAuditOptions = {}): Promise<Record<string, number>> {
  const sessions = opts.sessions ?? 100_000;
  const intents = opts.intents ?? 2;
  const concurrency = Math.min(opts.concurrency ?? 2000, sessions);
  const log = opts.log ?? ((l: string) => console.error(l));
  const server = opts.url ? undefined : await startNats({ gomaxprocs: 1 });
  // Async stack traces cost a few µs per request; a bulk writer does not need them.
  const nc = await connect({ servers: opts.url ?? server!.url, maxPingOut: 20, noAsyncTraces: true });
  try {
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    const n = names(uniqueName('bench'));
    await ensureAuditStream(jsm, n, {});
    const common = { js, jsm, names: n, maxCachedSessions: concurrency * 2, maxChangedHeads: sessions + 10 };
    const broker = new AuditWriter({ ...common, actor: { kind: 'broker', id: 'broker-1' } });
    const worker = new AuditWriter({ ...common, actor: { kind: 'worker', id: 'pg-1' } });
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const cp = new Checkpointer({ js, jsm, names: n, actor: { kind: 'broker', id: 'broker-1' }, privateKey, writers: [broker, worker] });

    // Write: `concurrency` sessions in flight, each intent as its two blocks.
    const sid = (i: number) => `sess_${String(i).padStart(7, '0')}`;
    const writeStart = performance.now();
    let next = 0;
    let written = 0;
    const lane = async () => {
      for (let s = next++; s < sessions; s = next++) {
        const sessionId = sid(s);
        for (let k = 0; k < intents; k++) {
          const intentId = `intent_${s}_${k}`;
          const base = { sessionId, intentId, policyVersion: 'pv-1' };
          await Promise.all([
            broker.append({
              ...base,
              type: 'intent.received',
              payload: {
                principal: { sub: `agent-${s % 97}`, iss: 'https://idp.example', groups: ['analysts'] },
                target: 'db',
                command: { kind: 'sql', sql: `SELECT id, name, email FROM customers WHERE region = 'r${s % 13}' LIMIT 100` },
                tokenSha256: 'e'.repeat(64),
                redelivered: false,
              },
            }),
            broker.append({
              ...base,
              type: 'intent.decided',
              payload: { decision: { effect: 'allow', rules: ['analysts-read'], reasons: [], mode: 'read', policyVersion: 'pv-1' }, facts: { kind: 'select', tables: ['public.customers'] } },
            }),
            broker.append({ ...base, type: 'intent.dispatched', payload: { grantId: intentId, mode: 'read', exp: 1_900_000_000, limits: { rows: 1000 } } }),
          ]);
          await Promise.all([
            worker.append({ ...base, type: 'exec.claimed', payload: { grantId: intentId, mode: 'read' } }),
            worker.append({ ...base, type: 'exec.finished', payload: { status: 'succeeded', ms: 2, resultSha256: 'a'.repeat(64), rowCount: 100, truncated: false, maskedFields: ['email'] } }),
          ]);
          written += 5;
        }
        if (s % 10_000 === 0 && s > 0) log(`  written ${written} events`);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, lane));
    await cp.close();
    const writeMs = performance.now() - writeStart;
    const info = await jsm.streams.info(n.streams.audit);
    log(`wrote ${written} events in ${info.state.messages} messages (${(info.state.bytes / 1e6).toFixed(0)} MB) in ${(writeMs / 1000).toFixed(1)} s`);

    // Verify the whole stream (best of two: the first run also warms the server's file cache).
    const runs: number[] = [];
    let result: Awaited<ReturnType<typeof verify>> | undefined;
    let cpu = { node: 0, server: 0 };
    for (let i = 0; i < 2; i++) {
      const t = performance.now();
      const c0 = process.cpuUsage();
      const s0 = server ? serverCpuMs(server.pid) : 0;
      result = await verify({
        js,
        names: n,
        publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
        requireCheckpoint: true,
        ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
      });
      runs.push(performance.now() - t);
      const c = process.cpuUsage(c0);
      // CPU seconds, not only wall time: on a shared machine the wall clock also measures the neighbours.
      if (runs[i] === Math.min(...runs)) cpu = { node: (c.user + c.system) / 1000, server: server ? serverCpuMs(server.pid) - s0 : 0 };
      log(
        `verify: ${result.ok ? 'ok' : `BROKEN ${JSON.stringify(result.firstBreak)}`}, ${result.events} events, ${result.checkpoints} checkpoints, ${result.coveredHeads} heads in ${(runs[i]! / 1000).toFixed(2)} s (load average ${loadavg()[0]!.toFixed(1)})`,
      );
    }
    if (!result?.ok) throw new Error('the benchmark log did not verify');
    const verifyMs = Math.min(...runs);

    // Replay one session among all: the library call and the CLI's full timeline.
    const target = sid(Math.floor(sessions / 2));
    const replayRuns: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      const events = await readSession({ js, names: n, sessionId: target });
      replayRuns.push(performance.now() - t);
      if (events.length !== intents * 5) throw new Error(`replay read ${events.length} events`);
    }
    const t = performance.now();
    let out = '';
    await runAuditCli(['replay', '--session', target], {
      nc,
      names: n,
      stdout: (s) => {
        out += s;
      },
    });
    const cliReplayMs = performance.now() - t;
    const sessionVerifyStart = performance.now();
    const one = await verify({ js, names: n, sessionId: target });
    const sessionVerifyMs = performance.now() - sessionVerifyStart;
    if (!one.ok || !out.includes(`${intents * 5} events`)) throw new Error('replay of one session failed');

    return {
      events: written,
      sessions,
      messages: info.state.messages,
      writeEventsPerSec: Math.round(written / (writeMs / 1000)),
      verifyMs: Math.round(verifyMs),
      verifyEventsPerSec: Math.round(result.events / (verifyMs / 1000)),
      verifyNodeCpuMs: Math.round(cpu.node),
      verifyServerCpuMs: Math.round(cpu.server),
      loadAverage1m: Math.round(loadavg()[0]! * 10) / 10,
      replayOneSessionMsP50: Math.round(median(replayRuns) * 10) / 10,
      replayCliMs: Math.round(cliReplayMs * 10) / 10,
      verifyOneSessionMs: Math.round(sessionVerifyMs * 10) / 10,
    };
  } finally {
    await nc.close();
    await server?.stop();
  }
}

/** User + system CPU of a process, ms (Linux /proc; 0 elsewhere). */
function serverCpuMs(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return 0;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({ options: { sessions: { type: 'string' }, intents: { type: 'string' }, concurrency: { type: 'string' }, threads: { type: 'string' }, url: { type: 'string' } } });
  const figures = await benchAudit({
    ...(values.sessions ? { sessions: Number(values.sessions) } : {}),
    ...(values.intents ? { intents: Number(values.intents) } : {}),
    ...(values.concurrency ? { concurrency: Number(values.concurrency) } : {}),
    ...(values.threads ? { threads: Number(values.threads) } : {}),
    ...(values.url ? { url: values.url } : {}),
  });
  console.log(figures);
  process.exit(0);
}
