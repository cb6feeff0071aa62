/**
 * Writ on a 3-node JetStream cluster (nats-server 2.9, R3 streams and buckets, every role on
 * its own login from deploy/nats/accounts.conf): two brokers and two PostgreSQL workers as
 * separate processes, seeded on different members, share the work. While 2,000 intents are in
 * flight, one member is killed with SIGKILL and restarted: first a member that does not lead
 * the intents bucket (each intent's first write), then the one that does. Afterwards (test/faults/helpers/invariants.ts):
 * every accepted intent ended, none ran twice (one row per intent on the target, at most),
 * every executed intent has its evidence in order, `writ audit verify` passes, and the agents
 * learn every end state, including through the runs (SDK run()) they held open across the kill.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { provision, serializesSubjectSequence } from '../../broker/provision.ts';
import { connectNats } from '../../lib/index.ts';
import { names, parseConfig, type Config, type Names } from '../../schemas/index.ts';
import { startNatsCluster, type NatsClusterHandle } from '../helpers/index.ts';
import { checkInvariants } from './helpers/invariants.ts';
import { startFaultStack, type FaultStack } from './helpers/stack.ts';
import { Workload } from './helpers/workload.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** 2,000 as the issue asks; WRIT_CLUSTER_INTENTS narrows a local run. */
const INTENTS = Number(process.env.WRIT_CLUSTER_INTENTS ?? 2_000);
/** Submissions in flight at once: enough that most intents are queued when the node dies. */
const CONCURRENCY = 48;
/** The node dies once this many intents were accepted; it is down for DOWN_MS. */
const KILL_AT = Math.floor(INTENTS * 0.3);
const DOWN_MS = 2_000;
/** Grants outlive the queue: with 2,000 intents submitted at once, an order waits its turn for seconds. */
const GRANT_TTL_SEC = 120;
/**
 * How long an agent's run() held across the kill waits, and how long the checks wait for every
 * accepted intent to end. The system bounds an intent's end by its grant's life (then the
 * sweeper), and the kill can take an intent that far:
 *   - an order delivered to a worker through the killed member is lost in flight and comes back
 *     after the worker consumer's 60 s ack_wait; on a loaded machine it then ends only when its
 *     grant expires (seen: 8 of ~100 runs still dispatched at 90 s, ended failed
 *     WRIT_GRANT_EXPIRED at 127 s);
 *   - a worker whose claim create was stored but whose answer was lost takes the claim for
 *     another's and refuses the order: the intent ends `unknown` when the sweeper finds it past
 *     its deadline (seen: 7 intents, ended at about 125 s).
 * A shorter wait truthfully reports "still dispatched"; this one learns the real outcome.
 */
const RUN_WAIT_MS = (GRANT_TTL_SEC + 30) * 1_000;

let s: FaultStack | undefined;
afterEach(async () => {
  await s?.stop();
  s = undefined;
});

async function until(what: string, f: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(25);
  }
}

/** The member that leads `stream` right now (stream info's `cluster.leader`), by index. */
async function leaderOf(stack: FaultStack, stream: string): Promise<number> {
  const jsm = await jetstreamManager(stack.nc);
  const info = await jsm.streams.info(stream);
  const i = stack.cluster!.indexOf(info.cluster?.leader ?? '');
  if (i < 0) throw new Error(`${stream} reports no leader among ${stack.cluster!.serverNames.join(', ')}: ${JSON.stringify(info.cluster)}`);
  return i;
}

/** Evidence for a failure: each work-queue stream's leader and depth, and its consumers' state. */
async function queues(stack: FaultStack): Promise<unknown[]> {
  const jsm = await jetstreamManager(stack.nc);
  const out: unknown[] = [];
  for (const stream of [`KV_${stack.names.buckets.intents}`, stack.names.streams.exec]) {
    const si = await jsm.streams.info(stream);
    out.push({ stream, leader: si.cluster?.leader, replicas: si.cluster?.replicas?.map((r) => `${r.name} current=${r.current} lag=${r.lag ?? 0}`), msgs: si.state.messages });
    for await (const ci of jsm.consumers.list(stream)) {
      out.push({
        consumer: ci.name,
        leader: ci.cluster?.leader,
        pending: ci.num_pending,
        ackPending: ci.num_ack_pending,
        redelivered: ci.num_redelivered,
        waiting: ci.num_waiting,
        delivered: ci.delivered.stream_seq,
        ackFloor: ci.ack_floor.stream_seq,
      });
    }
  }
  return out;
}

/**
 * A broker and a worker on each of two members, agents on all three, 2,000 intents; the member
 * `pick` chooses is SIGKILLed mid-burst and restarted on the same port and store.
 */
async function killUnderLoad(pick: (stack: FaultStack, intentsLeader: number) => number): Promise<void> {
  s = await startFaultStack({ cluster: { auth: true }, grantTtlSec: GRANT_TTL_SEC });
  const stack = s;
  // Placement: broker 1 and worker 2 on n1, broker 2 on n2, worker 1 on n3; agents on each.
  // Brokers first: they create the streams and buckets that workers open.
  // One after the other: services of a kind share the stack's data dir, and one reading the audit
  // key another is still writing fails to start (audit/keys.ts).
  const services = [await stack.startBroker(0), await stack.startBroker(1), await stack.startWorker(2), await stack.startWorker(0)];
  const w = new Workload(await Promise.all([0, 1, 2, 0, 1, 2].map((node) => stack.client(undefined, node))));
  // The SDK alone rides out the election (sends again under the same intent id); an agent that
  // submits in bulk gives it longer than the 10 s default, as the leader's loss can take that.
  w.submitTimeoutMs = 30_000;
  await w.burst(12); // the path works on every member before the fault
  // The intents bucket holds each intent's record: the first thing an intent's acknowledgement waits on.
  const leader = await leaderOf(stack, `KV_${stack.names.buckets.intents}`);
  const victim = pick(stack, leader);
  // Every 20th intent is run by its agent (submit and wait in one), across the kill.
  const burst = w.burst(INTENTS, () => 'fast', CONCURRENCY, { waitEvery: 20, waitMs: RUN_WAIT_MS });
  const t0 = Date.now();
  await until('burst under way', () => w.accepted().length >= KILL_AT);
  stack.cluster!.servers[victim]!.kill9();
  const killedAt = Date.now();
  await stack.cluster!.restart(victim, DOWN_MS);
  const restartedAt = Date.now();
  await burst;
  // The agents' runs held open across the kill end before the checks read the end states.
  await w.waits();
  const burstMs = Date.now() - t0;
  const checkedAt = Date.now();
  const rep = await checkInvariants(stack, w, { deadlineMs: RUN_WAIT_MS });
  // From the burst's start until every accepted intent had ended.
  const allEndedMs = checkedAt + rep.counts.endStatesMs! - t0;
  console.log(`cluster kill -9 of ${stack.cluster!.serverNames[victim]} (${victim === leader ? '' : 'not '}the intents bucket's leader; audit stream R${stack.auditReplicas}):`, {
    downMs: restartedAt - killedAt,
    burstMs,
    allEndedMs,
    perSec: Math.round((w.accepted().length / allEndedMs) * 1000),
    newIntentsLeader: stack.cluster!.serverNames[await leaderOf(stack, `KV_${stack.names.buckets.intents}`)],
    ...rep.counts,
  });
  if (rep.violations.length > 0) console.log('queues after the run:', await queues(stack));
  expect.soft(rep.violations).toEqual([]);
  expect.soft(w.accepted().length).toBeGreaterThanOrEqual(INTENTS * 0.9);
  // Every intent ran: a lost node may cost an outcome `unknown`, never a second run (counted above).
  expect.soft(rep.counts.succeeded ?? 0).toBeGreaterThanOrEqual(w.accepted().length * 0.9);
  expect.soft(stack.crashes().map((p) => `${p.kind} ${p.pid}: ${p.tail(2000)}`)).toEqual([]);
  expect.soft(services.map((p) => p.exit)).toEqual([undefined, undefined, undefined, undefined]);
}

/**
 * The agents' runs held across the kill end with the real outcome (the SDK retries and asks; no
 * harness help); nothing is lost or run twice, all evidence is there and `writ audit verify`
 * passes. These ran behind a flag while 2 of 7 leader kills left about 400 orders waiting past
 * their grant; since consumers pull with a 10 s expiry, 5 runs in a row passed (docs/operations.md,
 * "Running on a cluster"). The two tests take 1.5 to 2 minutes together, in the `cluster`
 * vitest project, which `npm test` runs on its own after the others.
 */
describe('on a 3-node cluster', () => {
  it('kill -9 of a member that does not lead the intents bucket, 2,000 intents in flight: nothing lost, nothing twice, all evidence', async () => {
    await killUnderLoad((_, leader) => (leader + 1) % 3);
  }, 300_000);

  it("kill -9 of the intents bucket leader's member, 2,000 intents in flight: nothing lost, nothing twice, all evidence", async () => {
    await killUnderLoad((_, leader) => leader);
  }, 300_000);
});

describe('provisioning on a cluster', () => {
  let cluster: NatsClusterHandle | undefined;
  let nc: NatsConnection | undefined;
  beforeAll(async () => {
    cluster = await startNatsCluster(3, { gomaxprocs: 1 });
    nc = await connectNats(cluster.urls.join(','), 'provision-test');
  }, 90_000);
  afterAll(async () => {
    await nc?.close();
    await cluster?.stop();
  });
  const fresh = () => names(`p${Math.random().toString(36).slice(2, 8)}`);
  const configOf = (n: Names, nats: number, audit?: number) =>
    parseConfig({ prefix: n.prefix, nats: { replicas: nats }, ...(audit === undefined ? {} : { audit: { replicas: audit } }), identity: { devIssuer: { dir: 'dev-issuer' } } }) as Config;

  it("scales an R1 deployment's streams and buckets to nats.replicas", async () => {
    const jsm = await jetstreamManager(nc!);
    const n = fresh();
    // The audit stream's replicas follow the server's ability (see the next test).
    const audit = serializesSubjectSequence(nc!.info?.version) ? 3 : 1;
    await provision(nc!, jsm, n, configOf(n, 1, 1));
    await provision(nc!, jsm, n, configOf(n, 3, audit));
    const replicas: Record<string, number> = {};
    for (const name of Object.values(n.streams)) replicas[name] = (await jsm.streams.info(name)).config.num_replicas;
    const kvm = new Kvm(nc!);
    for (const b of Object.values(n.buckets)) replicas[b] = (await (await kvm.open(b)).status()).replicas;
    const want = Object.fromEntries([...Object.values(n.streams), ...Object.values(n.buckets)].map((x) => [x, 3]));
    expect(replicas).toEqual({ ...want, [n.streams.audit]: audit });
  });

  it('refuses a replicated audit stream on a nats-server that does not serialize expected-last-subject-sequence', async () => {
    const jsm = await jetstreamManager(nc!);
    const n = fresh();
    const run = provision(nc!, jsm, n, configOf(n, 3));
    if (serializesSubjectSequence(nc!.info?.version)) await expect(run).resolves.toBeDefined();
    else {
      await expect(run).rejects.toMatchObject({ code: 'WRIT_CONFIG_INVALID', message: expect.stringMatching(/audit\.replicas is 3 \(from nats\.replicas\).*nats-server#4320/) });
      // Nothing was created: an operator fixes the config rather than finding a half-made deployment.
      await expect(jsm.streams.info(n.streams.audit)).rejects.toThrow(/not found/);
    }
  });

  // The server behaviour the guard above rests on, measured on the installed nats-server:
  // six publishes at once, from all three members, each expecting the subject's last sequence.
  it('the installed nats-server serializes expected-last-subject-sequence on R3 streams exactly when serializesSubjectSequence says so', async () => {
    const conns = await Promise.all(cluster!.urls.map((u) => connect({ servers: [u] })));
    try {
      const jss = conns.map((c) => jetstream(c));
      const stream = `ELSS_${Math.random().toString(36).slice(2, 8)}`;
      const jsm = await jetstreamManager(nc!);
      await jsm.streams.add({ name: stream, subjects: [`${stream}.>`], num_replicas: 3 });
      // A new R3 stream answers 503 ("jetstream is not enabled") until its leader is elected,
      // longer while the cluster still settles after the kill tests: wait for the leader.
      for (let t = Date.now(); !(await jsm.streams.info(stream)).cluster?.leader;) {
        if (Date.now() - t > 30_000) throw new Error(`no leader for ${stream} after 30 s`);
        await new Promise((r) => setTimeout(r, 100));
      }
      let accepted = 0;
      const subjects = 100;
      for (let i = 0; i < subjects; i++) {
        const head = await jss[0]!.publish(`${stream}.s${i}`, 'head');
        const rs = await Promise.allSettled([0, 1, 2, 3, 4, 5].map((k) => jss[k % 3]!.publish(`${stream}.s${i}`, `w${k}`, { expect: { lastSubjectSequence: head.seq } })));
        accepted += rs.filter((r) => r.status === 'fulfilled').length;
      }
      console.log(`nats-server ${nc!.info?.version}: ${accepted} of ${subjects * 6} conditional publishes accepted on ${subjects} subjects (serialized: at most ${subjects})`);
      if (serializesSubjectSequence(nc!.info?.version)) expect(accepted).toBeLessThanOrEqual(subjects);
      else expect(accepted).toBeGreaterThan(subjects);
    } finally {
      for (const c of conns) await c.close();
    }
  });
});
