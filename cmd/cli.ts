#!/usr/bin/env node
/**
 * The `writ` command-line tool. Command names and `--json` shapes are interfaces other
 * tools depend on: keep them.
 */
import { existsSync, readFileSync } from 'node:fs';
import module from 'node:module';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
// Each command imports what it needs when it runs: a CLI call should not load the broker, and
// `writ --help` loads nothing beyond these (cmd/cli-deps.ts is loaded in main()).
import { escapeForTerminal } from '../lib/terminal.ts';
import { WritError } from '../schemas/errors.ts';
import type { Outcome, WindowScope } from '../schemas/index.ts';
import { exitQuietlyOnClosedPipe, exitWhenFlushed } from './exit.ts';
import type { NatsRole } from './paths.ts';

// Node 22.1+ keeps the compiled code of the modules a command loads for the next run
// (NODE_DISABLE_COMPILE_CACHE=1 turns it off); Node 20 has no such cache.
(module as { enableCompileCache?: () => unknown }).enableCompileCache?.();

type Deps = typeof import('./cli-deps.ts');
let parseDuration: Deps['parseDuration'];
let connectNats: Deps['connectNats'], loadConfigFile: Deps['loadConfigFile'], names: Deps['names'], WindowScopeSchema: Deps['WindowScopeSchema'];
let WritClient: Deps['WritClient'], DATA_DIR: Deps['DATA_DIR'], natsForRole: Deps['natsForRole'];
let DEFAULT_CONFIG: string;
async function loadDeps(): Promise<void> {
  const d = await import('./cli-deps.ts');
  ({ parseDuration, connectNats, loadConfigFile, names, WindowScopeSchema, WritClient, DATA_DIR, natsForRole } = d);
  DEFAULT_CONFIG = d.defaultConfigFile();
}

// Everything the CLI prints passes through one function that makes control characters, C1
// and bidi overrides visible: result values, column names, errors, requesters and session ids
// come from others (lib/terminal.ts). JSON stays valid (only \uXXXX escapes are added).
const out = (s: string) => process.stdout.write(escapeForTerminal(s));
const err = (s: string) => process.stderr.write(escapeForTerminal(s));

/** Client commands take the `nats` section of WRIT_CONFIG when it is set; else the environment and the local stack (cmd/paths.ts natsForRole). */
const cliNats = () => (process.env.WRIT_CONFIG ? loadConfigFile(DEFAULT_CONFIG).nats : undefined);

const USAGE = `writ — privileged-access broker for automation agents

  writ up [--config FILE]                       run the local stack in the foreground
  writ broker|worker --config FILE              run one service (NATS_URL names the server)
  writ token --sub NAME --groups a,b [--ttl 10m] [--act-for HUMAN]
                                                mint a token from the local development issuer
  writ exec --target T (--sql "…" | --command "…") [--session S] [--json] [--token T] [--justification "…"]
  writ status ID | writ wait ID [--timeout 30s]
  writ mcp [--http PORT] [--token T | --token-file F | --dev-sub NAME --dev-groups a,b]
                                                the agent tools over MCP (stdio, or Streamable HTTP on 127.0.0.1)
  writ policy check FILE | test FILE… | eval --policy FILE [--config FILE] | publish FILE
  writ audit sessions|replay|tail|verify|export …
  writ pending | writ approve ID [--reason "…"] [--window 1h [--yes]] | writ deny ID --reason "…"
  writ grants | writ revoke WINDOW_ID            approvers, with their own token (WRIT_TOKEN)

Environment: WRIT_TOKEN (the agent's token), WRIT_CONFIG, NATS_URL and WRIT_NATS_* (docs/configuration.md).`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd !== undefined && !['help', '--help', '-h'].includes(cmd)) await loadDeps();
  switch (cmd) {
    case 'up':
      return up(rest);
    case 'broker':
    case 'worker':
      return service(cmd, rest);
    case 'login': return (await import('./login.ts')).loginCommand(rest);
    case 'token':
      return token(rest);
    case 'exec':
      return exec(rest);
    case 'status':
    case 'wait':
      return statusOrWait(cmd, rest);
    case 'audit':
      return audit(rest);
    case 'mcp':
      return (await import('./mcp/index.ts')).mcpCommand(rest);
    case 'policy': {
      const { runPolicyCli } = await import('../broker/rules/index.ts');
      return runPolicyCli(rest, { stdin: process.stdin, stdout: (x) => out(x), stderr: (x) => err(x) });
    }
    case 'pending':
    case 'approve':
    case 'deny':
    case 'grants':
    case 'revoke':
      return approver(cmd, rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      out(`${USAGE}\n`);
      return cmd === undefined ? 2 : 0;
    default:
      err(`writ: unknown command ${JSON.stringify(cmd)}\n\n${USAGE}\n`);
      return 2;
  }
}

async function up(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string' } } });
  const { startLocalStack } = await import('./stack.ts');
  const stack = await startLocalStack(resolve(values.config ?? DEFAULT_CONFIG));
  out(`
Writ is up. NATS: ${stack.url}

Send a first intent from another terminal:
  export WRIT_TOKEN=$(npm run -s writ -- token --sub alice --groups analysts)
  npm run -s writ -- exec --target demo --sql "SELECT name, email AS e FROM customers" --session first-run
  npm run -s writ -- audit replay --session first-run

Ctrl-C stops it.
`);
  // SIGTERM/SIGINT, or a failure nothing caught: stop everything started, within a deadline.
  const { guardProcess, createLogger } = await import('../lib/index.ts');
  return guardProcess({ log: createLogger({ name: 'writ-up' }), stop: () => stack.stop(), deadlineMs: 30_000 });
}

/** One service in the foreground, drained on SIGTERM/SIGINT: how deployments run replicas. */
async function service(kind: 'broker' | 'worker', args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string' } } });
  const config = loadConfigFile(resolve(values.config ?? DEFAULT_CONFIG));
  const { createLogger } = await import('../lib/index.ts');
  const log = createLogger({ name: `writ-${kind}`, level: process.env.WRIT_LOG_LEVEL ?? config.log.level });
  const nc = await connectNats(natsForRole(kind, config.nats), `writ-${kind}`);
  // Started with the process's observability endpoint (observability.port) and tracing.
  const svc = await (await import('./stack.ts')).startService(kind, config, log, nc);
  out(`${kind} ${svc.id} running\n`);
  const { guardProcess, withDeadline } = await import('../lib/index.ts');
  return guardProcess({
    log,
    stop: async () => {
      await svc.stop();
      if (!(await withDeadline(nc.drain(), 3_000))) await nc.close();
    },
    deadlineMs: 25_000,
  });
}

async function token(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { sub: { type: 'string' }, groups: { type: 'string', default: '' }, ttl: { type: 'string', default: '10m' }, 'act-for': { type: 'string' }, approver: { type: 'boolean', default: false }, config: { type: 'string' } } });
  if (!values.sub) throw new WritError('WRIT_BAD_REQUEST', '--sub is required');
  const config = loadConfigFile(resolve(values.config ?? DEFAULT_CONFIG));
  const { loadDevIssuer, mintDevToken } = await import('../broker/dev-issuer.ts');
  const dev = await loadDevIssuer(config.identity.devIssuer.dir, false);
  const t = await mintDevToken(dev, {
    // --approver: a token for voting (its own audience); an agent's token cannot approve.
    sub: values.sub, groups: values.groups.split(',').map((g) => g.trim()).filter(Boolean),
    audience: values.approver ? config.identity.devIssuer.approverAudience : config.identity.devIssuer.audience,
    ttlSec: parseDuration(values.ttl), ...(values['act-for'] ? { actFor: values['act-for'] } : {}),
  });
  out(`${t}\n`);
  return 0;
}

async function client(tokenFlag: string | undefined, session?: string, role: NatsRole = 'agent') {
  const tok = tokenFlag ?? process.env.WRIT_TOKEN ?? (await (await import('./login.ts')).loginToken());
  if (!tok) throw new WritError('WRIT_TOKEN_MISSING', 'no token: set WRIT_TOKEN or pass --token');
  const nats = natsForRole(role, cliNats());
  const nc = await connectNats(nats, 'writ-cli');
  return { nc, c: new WritClient({ nc, token: tok, prefix: process.env.WRIT_PREFIX ?? 'writ', ...(session ? { sessionId: session } : {}), ...(nats.inboxPrefix ? { inboxPrefix: nats.inboxPrefix } : {}) }) };
}

/** The `--json` shape: intentId, sessionId, status, then result or error. */
export function outcomeJson(o: Outcome): Record<string, unknown> {
  const base: Record<string, unknown> = { intentId: o.intentId, sessionId: o.sessionId, status: o.status };
  if (o.decision) base.decision = { effect: o.decision.effect, rules: o.decision.rules, reasons: o.decision.reasons };
  if (o.result) base.result = o.result;
  if (o.error) base.error = { code: o.error.code, message: o.error.message };
  return base;
}

function printOutcome(o: Outcome, json: boolean): number {
  if (json) {
    out(`${JSON.stringify(outcomeJson(o))}\n`);
  } else if (o.error) {
    out(`${o.status}: ${o.error.code}: ${o.error.message}\n  intent ${o.intentId} session ${o.sessionId}\n`);
  } else if (o.result) {
    const r = o.result;
    if (r.stdout !== undefined) out(r.stdout + (r.stderr ? `\n[stderr]\n${r.stderr}` : '') + `\n[exit ${r.exitCode ?? r.signal}]\n`);
    else if (r.columns.length === 0) {
      out(`${r.command ?? 'OK'} ${r.rowCount}\n  intent ${o.intentId} session ${o.sessionId}\n`);
    } else {
      out(`${r.columns.map((c) => (c.masked ? `${c.name}*` : c.name)).join('\t')}\n`);
      for (const row of r.rows) out(`${row.map((v) => (v === null ? 'NULL' : typeof v === 'object' ? JSON.stringify(v) : String(v))).join('\t')}\n`);
      out(`(${r.rowCount} rows${r.truncated ? ', truncated' : ''}; * = masked) intent ${o.intentId} session ${o.sessionId}\n`);
    }
  } else out(`${o.status}: intent ${o.intentId} session ${o.sessionId}\n`);
  return o.status === 'succeeded' ? 0 : 1;
}

async function exec(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: {
    target: { type: 'string' }, sql: { type: 'string' }, command: { type: 'string' }, session: { type: 'string' }, json: { type: 'boolean', default: false },
    token: { type: 'string' }, justification: { type: 'string' }, id: { type: 'string' }, timeout: { type: 'string', default: '30s' },
  } });
  if (!values.target) throw new WritError('WRIT_BAD_REQUEST', '--target is required');
  const { nc, c } = await client(values.token, values.session);
  try {
    const o = await c.run(
      { target: values.target, ...(values.sql !== undefined ? { sql: values.sql } : {}), ...(values.command !== undefined ? { command: values.command } : {}), ...(values.justification ? { justification: values.justification } : {}), ...(values.id ? { intentId: values.id } : {}) },
      { timeoutMs: parseDuration(values.timeout) * 1000 },
    );
    return printOutcome(o, values.json);
  } finally {
    await nc.close();
  }
}

async function statusOrWait(cmd: 'status' | 'wait', args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { token: { type: 'string' }, json: { type: 'boolean', default: false }, timeout: { type: 'string', default: '30s' } } });
  const id = positionals[0];
  if (!id) throw new WritError('WRIT_BAD_REQUEST', `usage: writ ${cmd} INTENT_ID`);
  const { nc, c } = await client(values.token);
  try {
    if (cmd === 'status') {
      const s = await c.status(id);
      out(values.json ? `${JSON.stringify({ intentId: id, status: s })}\n` : `${s}\n`);
      return 0;
    }
    return printOutcome(await c.wait(id, { timeoutMs: parseDuration(values.timeout) * 1000 }), values.json);
  } finally {
    await nc.close();
  }
}

async function approver(cmd: 'pending' | 'approve' | 'deny' | 'grants' | 'revoke', args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { token: { type: 'string' }, reason: { type: 'string' }, window: { type: 'string' }, yes: { type: 'boolean', default: false }, json: { type: 'boolean', default: false } } });
  const { nc, c } = await client(values.token, undefined, 'approver');
  const print = (x: unknown) => out(`${JSON.stringify(x, null, values.json ? 0 : 2)}\n`);
  try {
    switch (cmd) {
      case 'pending': {
        const list = await c.pending();
        if (values.json) print(list);
        else if (list.length === 0) out('nothing waits for you\n');
        else for (const p of list) {
          const command = p.command as { sql?: string; command?: string };
          out(`${p.intentId}  ${p.target}  by ${p.requester}${p.actFor ? ` for ${p.actFor}` : ''}  rule ${p.rule}  votes ${(p.votes as string[]).length}/${p.needed}  expires ${new Date(p.expiresAt as number).toISOString()}\n    ${JSON.stringify(command.sql ?? command.command)}\n`);
        }
        return 0;
      }
      case 'approve':
      case 'deny': {
        const id = positionals[0];
        if (!id) throw new WritError('WRIT_BAD_REQUEST', `usage: writ ${cmd} INTENT_ID${cmd === 'deny' ? ' --reason "…"' : ''}`);
        if (cmd === 'deny' && !values.reason) throw new WritError('WRIT_BAD_REQUEST', 'a denial needs --reason');
        if (values.window && cmd !== 'approve') throw new WritError('WRIT_BAD_REQUEST', '--window goes with approve');
        // The vote names the command this approver's own pending view shows (its hash), and a
        // window is granted only after its scope, exactly as the broker will enforce it, was shown.
        const shown = (await c.pending()).find((p) => p.intentId === id);
        if (!shown || typeof shown.commandSha256 !== 'string') throw new WritError('WRIT_NOT_PENDING', `${id} is not among the pending requests you may decide on (writ pending)`);
        let windowSec: number | undefined;
        if (values.window) {
          windowSec = parseDuration(values.window);
          const scope = parseWindowScope(shown.windowScope);
          if (!scope) throw new WritError('WRIT_BAD_REQUEST', `rule ${String(shown.rule)} grants no access windows; approve without --window`);
          err(windowScopeText(scope, windowSec, shown));
          if (!(await confirmed(values.yes))) {
            err('not confirmed: nothing was sent (on a terminal answer y; elsewhere pass --yes)\n');
            return 1;
          }
        }
        // A human's token votes once (the broker spends it): the vote goes with a fresh token,
        // never with the one the pending list was read with (cmd/vote-token.ts).
        const voter = await (await import('./vote-token.ts')).voteClient(nc, values.token ?? process.env.WRIT_TOKEN, DEFAULT_CONFIG);
        const state = await voter.decide(id, cmd === 'approve' ? 'approve' : 'reject', {
          commandSha256: shown.commandSha256, ...(values.reason ? { reason: values.reason } : {}), ...(windowSec ? { windowSec } : {}),
        });
        out(values.json ? `${JSON.stringify({ intentId: id, status: state })}\n` : `${id}: ${state}\n`);
        return 0;
      }
      case 'grants':
        print(await c.grants());
        return 0;
      case 'revoke': {
        const id = positionals[0];
        if (!id) throw new WritError('WRIT_BAD_REQUEST', 'usage: writ revoke WINDOW_ID');
        await c.revoke(id);
        out(`revoked ${id}\n`);
        return 0;
      }
    }
  } finally {
    await nc.close();
  }
}

/** The broker's window scope from a pending listing, validated (anything else shows nothing and grants nothing). */
function parseWindowScope(x: unknown): WindowScope | undefined {
  const r = WindowScopeSchema.safeParse(x);
  return r.success ? r.data : undefined;
}

/** What the window will allow, line by line, before the approver confirms (printed through escapeForTerminal). */
function windowScopeText(scope: WindowScope, askedSec: number, shown: Record<string, unknown>): string {
  const sec = Math.min(askedSec, scope.maxSec);
  const command = shown.command as { sql?: string; command?: string } | undefined;
  return [
    `Approving ${String(shown.intentId)} with a window lets, for ${sec}s${askedSec > scope.maxSec ? ` (you asked ${askedSec}s; the rule allows at most ${scope.maxSec}s)` : ''}, without asking again:`,
    `  requester      ${scope.requester.sub} (issuer ${scope.requester.iss})`,
    `  acting for     ${scope.actFor ?? '(nobody: only requests acting for no human)'}`,
    `  target         ${scope.target}`,
    `  rule           ${scope.rule}`,
    `  policy version ${scope.policyVersion} (a policy change ends the window)`,
    '  statements     only these shapes, each statement of a request:',
    ...scope.shapes.map((x) => `                   ${x}`),
    `  this command   ${JSON.stringify(command?.sql ?? command?.command ?? '')}`,
    `  command sha256 ${String(shown.commandSha256)}`,
    '',
  ].join('\n');
}

/** An explicit yes: `--yes`, or `y` typed on a terminal. Anything else (no TTY, EOF, another answer) is no. */
async function confirmed(yes: boolean): Promise<boolean> {
  if (yes) return true;
  if (!process.stdin.isTTY) return false;
  const { createInterface } = await import('node:readline/promises');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question('Grant this window? [y/N] ')).trim());
  } finally {
    rl.close();
  }
}

async function audit(args: string[]): Promise<number> {
  // Reading the log is the auditor's; checking it against the intents and claims buckets (verify's default) needs the operator.
  const role: NatsRole = args[0] === 'verify' && !args.includes('--no-against-state') ? 'operator' : 'auditor';
  const nc = await connectNats(natsForRole(role, cliNats()), 'writ-audit');
  try {
    let publicKeyPem: string | undefined;
    try {
      publicKeyPem = readFileSync(resolve(DATA_DIR, 'grant-key.pub.pem'), 'utf8');
    } catch {
      publicKeyPem = undefined;
    }
    const { runAuditCli } = await import('../audit/index.ts');
    // The local stack's key registry, when there is one and --keys names none.
    const registry = resolve(DATA_DIR, 'audit-keys.yaml');
    return await runAuditCli(args, { nc, names: names(process.env.WRIT_PREFIX ?? 'writ'), stdout: (s) => out(s), ...(publicKeyPem ? { publicKeyPem } : {}), ...(existsSync(registry) ? { keyRegistryFile: registry } : {}) });
  } finally {
    await nc.close();
  }
}

// Every command ends here, and only once its output has drained (see exitWhenFlushed).
exitQuietlyOnClosedPipe();
main(process.argv.slice(2)).then(
  (code) => exitWhenFlushed(code),
  (e: unknown) => {
    const code = e instanceof WritError ? e.code : 'WRIT_INTERNAL';
    err(`writ: ${code}: ${(e as Error).message}\n`);
    return exitWhenFlushed(e instanceof WritError && e.code === 'WRIT_BAD_REQUEST' ? 2 : 1);
  },
);
