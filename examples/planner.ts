/**
 * A small planner against the local stack (`npm start`): it lists what it may use,
 * explains each step before running it, runs it, and when the policy asks for a human's
 * approval, prints the intent id and waits for the decision. Run it with
 * `npm run example:agent`; see docs/agents.md.
 *
 * Environment: PLANNER_GROUPS (default `analysts`; try `dba`, or `writers`, whom the local
 * policy sends to approval), PLANNER_SUB (default `planner-demo`), PLANNER_SESSION (resume a
 * session: its finished steps are not run again), WRIT_CONFIG (default
 * deploy/local/writ.yaml), NATS_URL and WRIT_NATS_* (docs/configuration.md; default: the
 * local stack's server and its agent credentials in the data directory).
 */
import { resolve } from 'node:path';
import { loadDevIssuer, mintDevToken } from '../broker/dev-issuer.ts';
import { natsForRole } from '../cmd/paths.ts';
import { WritClient } from '../client/sdk.ts';
import { Session, WritApprovalRequiredError, WritIntentError, refreshingToken, toQueryResult, type Explanation, type QueryResult } from '../client/sdk-extras.ts';
import { connectNats } from '../lib/index.ts';
import { loadConfigFile } from '../schemas/index.ts';

const TARGET = 'demo';
const READ = 'SELECT id, name, email, plan FROM customers ORDER BY id';
const WRITE = "UPDATE customers SET plan = 'team' WHERE id = 2";

async function main(): Promise<number> {
  const config = loadConfigFile(resolve(process.env.WRIT_CONFIG ?? 'deploy/local/writ.yaml'));
  const sub = process.env.PLANNER_SUB ?? 'planner-demo';
  const groups = (process.env.PLANNER_GROUPS ?? 'analysts')
    .split(',')
    .map((g) => g.trim())
    .filter(Boolean);

  // The agent's identity: short-lived tokens from the development issuer, renewed as they age.
  const dev = await loadDevIssuer(config.identity.devIssuer.dir, false);
  const token = refreshingToken(() => mintDevToken(dev, { sub, groups, audience: config.identity.devIssuer.audience, ttlSec: 600 }));

  // The config's `nats` section and the environment; else the local stack's agent credentials.
  const nats = natsForRole('agent', config.nats);
  const nc = await connectNats(nats, 'writ-example-planner');
  const client = new WritClient({ nc, token, prefix: config.prefix, ...(nats.inboxPrefix ? { inboxPrefix: nats.inboxPrefix } : {}) });
  // Ctrl-C stops every wait of the session; close() then withdraws what still waits for approval.
  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort(new Error('interrupted')));
  // PLANNER_SESSION resumes a run: steps already done return their first outcome, nothing runs twice.
  const session = new Session(client, { signal: stop.signal, ...(process.env.PLANNER_SESSION ? { id: process.env.PLANNER_SESSION } : {}) });
  console.log(`planner ${sub} (groups: ${groups.join(', ')}), session ${session.id}\n`);

  try {
    // 1. What may I use?
    const targets = await client.targets();
    for (const t of targets) console.log(`target ${t.name} (${t.kind}): ${t.access.map((a) => `${a.summary} [${a.rule}]`).join('; ')}`);
    if (!targets.some((t) => t.name === TARGET)) {
      console.log(`\nno access to ${TARGET}: nothing to plan. Try PLANNER_GROUPS=analysts or dba.`);
      return 1;
    }

    // 2. A read, then 3. a write: each explained first, then run, waiting for approval if asked.
    await step(session, 'read the customers', READ, (r) => printRows(r));
    await step(session, "move customer 2 to the 'team' plan", WRITE, (r) => console.log(`   ${r.command ?? 'done'}: ${r.rowCount} row(s) changed`));

    console.log(`\nreplay this run: npm run -s writ -- audit replay --session ${session.id}`);
    return 0;
  } finally {
    const withdrawn = await session.close().catch(() => []);
    if (withdrawn.length) console.log(`withdrew ${withdrawn.join(', ')}`);
    await nc.drain();
  }
}

/** Explain, decide, run: what a planner does with every step it is not sure of. */
async function step(session: Session, what: string, sql: string, show: (r: QueryResult) => void): Promise<void> {
  console.log(`\n── ${what}\n   ${sql}`);
  const x = await session.explain({ target: TARGET, sql });
  const rules = x.decision.rules.length ? ` by ${x.decision.rules.join(', ')}` : '';
  console.log(`   explain: ${x.decision.effect}${rules} (${x.decision.mode}): ${x.decision.reasons.join('; ')}`);
  if (x.decision.effect === 'deny') {
    // A planner adapts instead of retrying: this step is skipped, the plan goes on.
    console.log('   skipped: the policy denies it, and asking again would be denied again.');
    return;
  }
  try {
    show(await run(session, what, sql, x));
  } catch (e) {
    if (!(e instanceof WritIntentError)) throw e;
    // Rejected, expired, failed …: the typed error says which, with its code and reasons.
    console.log(`   ${e.status}: ${e.code}: ${e.message}${e.reasons.length ? ` (${e.reasons.join('; ')})` : ''}`);
  }
}

/** Runs a step; when it needs approval, says whom to ask and waits for the decision. */
async function run(session: Session, what: string, sql: string, x: Explanation): Promise<QueryResult> {
  try {
    // The key makes the step idempotent: re-running it in the same session never runs it twice.
    return await session.query(TARGET, sql, { key: what, justification: `example planner: ${what}`, approval: 'throw' });
  } catch (e) {
    if (!(e instanceof WritApprovalRequiredError)) throw e;
    console.log(`   waiting for approval: intent ${e.intentId}\n   ${e.message}`);
    console.log('   an approver, in another terminal:');
    console.log(`     export WRIT_TOKEN=$(npm run -s writ -- token --sub carol --groups ${x.approval?.groups[0] ?? 'approvers'})`);
    console.log(`     npm run -s writ -- approve ${e.intentId}      # or: writ deny ${e.intentId} --reason "…"`);
    const decided = await session.wait(e.intentId, { timeoutMs: 10 * 60_000 });
    // Still pending after 10 minutes: toQueryResult throws WritApprovalRequiredError again.
    return toQueryResult(decided ?? e.outcome);
  }
}

function printRows(r: QueryResult): void {
  console.log(`   ${r.columns.map((c) => (c.masked ? `${c.name}*` : c.name)).join('\t')}`);
  for (const row of r.rawRows) console.log(`   ${row.map((v) => (v === null ? 'NULL' : String(v))).join('\t')}`);
  console.log(`   (${r.rowCount} rows${r.truncated ? ', truncated' : ''}; * = masked: ${r.masked.join(', ') || 'none'})`);
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`planner: ${(e as { code?: string }).code ?? 'error'}: ${(e as Error).message}`);
    process.exit(1);
  },
);
