#!/usr/bin/env node
/**
 * The `writ` command-line tool. Command names and `--json` shapes are interfaces other
 * tools depend on: keep them.
 */
import { existsSync, readFileSync } from 'node:fs';
import module from 'node:module';
import { resolve } from 'node:path';
// Each command imports what it needs when it runs: a CLI call should not load the broker, and
// `writ --help` loads nothing beyond these (cmd/cli-deps.ts is loaded in main()).
// commander (no dependencies) parses the command line and writes the help; nothing else loads for `--help`.
import { Command, CommanderError } from 'commander';
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
let WritClient: Deps['WritClient'], DATA_DIR: Deps['DATA_DIR'], natsForRole: Deps['natsForRole'], IdSchema: Deps['IdSchema'], TargetNameSchema: Deps['TargetNameSchema'];
let DEFAULT_CONFIG: string;
async function loadDeps(): Promise<void> {
  const d = await import('./cli-deps.ts');
  ({ parseDuration, connectNats, loadConfigFile, names, WindowScopeSchema, WritClient, DATA_DIR, natsForRole, IdSchema, TargetNameSchema } = d);
  DEFAULT_CONFIG = d.defaultConfigFile();
}

// Everything the CLI prints passes through one function that makes control characters, C1
// and bidi overrides visible: result values, column names, errors, requesters and session ids
// come from others (lib/terminal.ts). JSON stays valid (only \uXXXX escapes are added).
const out = (s: string) => process.stdout.write(escapeForTerminal(s));
const err = (s: string) => process.stderr.write(escapeForTerminal(s));

/** Client commands take the `nats` section of WRIT_CONFIG when it is set; else the environment and the local stack (cmd/paths.ts natsForRole). */
const cliNats = () => (process.env.WRIT_CONFIG ? loadConfigFile(DEFAULT_CONFIG).nats : undefined);

const DESCRIPTION = 'writ — privileged-access broker for automation agents';
const ENVIRONMENT = `
Environment: WRIT_TOKEN (the agent's or approver's token), WRIT_CONFIG, WRIT_HOME (the local
stack's data directory), NATS_URL and WRIT_NATS_* (docs/configuration.md).
\`writ COMMAND --help\` describes one command.`;

/**
 * A value the client can check before anything is sent (id syntax, target names): refused at
 * once as a usage error (exit 2), instead of waiting for the broker to refuse it.
 */
function check(cmd: Command, what: string, value: string | undefined, kind: 'id' | 'target'): void {
  if (value === undefined) return;
  const r = (kind === 'id' ? IdSchema : TargetNameSchema).safeParse(value);
  if (!r.success) cmd.error(`error: ${what} ${JSON.stringify(value)}: ${r.error.issues[0]?.message ?? 'invalid'}`, { exitCode: 2, code: 'writ.invalidArgument' });
}

type Opts = Record<string, string | boolean | undefined>;
const str = (o: Opts, k: string) => (typeof o[k] === 'string' ? o[k] : undefined);

/** The command line: per-command help, usage errors with exit 2, suggestions for misspelt commands. */
function program(setCode: (code: number) => void): Command {
  const p = new Command('writ')
    .description(DESCRIPTION)
    .usage('COMMAND [options]')
    .exitOverride()
    .configureOutput({ writeOut: out, writeErr: err })
    .showSuggestionAfterError()
    .showHelpAfterError('(writ COMMAND --help for usage)')
    .addHelpText('after', ENVIRONMENT)
    // What the commands use loads only when one runs: help and usage errors never load it.
    .hook('preAction', loadDeps);
  const run = (f: (o: Opts, args: string[], cmd: Command) => Promise<number>) =>
    async function (this: Command) {
      setCode(await f(this.opts(), this.args, this));
    };
  /** A command with its own parser (policy, audit, mcp, login): everything after its name is its own, --help too. */
  const passThrough = (name: string, description: string, f: (args: string[]) => Promise<number>) =>
    p
      .command(name)
      .description(description)
      .helpOption(false)
      .allowUnknownOption()
      .allowExcessArguments()
      .argument('[args...]')
      .action(async (args: string[]) => setCode(await f(args)));
  const tokenOpt = ['--token <token>', 'the token (default: WRIT_TOKEN, else `writ login`)'] as const;

  p.command('up')
    .description('run the local stack in the foreground (nats-server child, broker, workers)')
    .option('--config <file>', 'config file (default: WRIT_CONFIG, else the shipped deploy/local/writ.yaml)')
    .action(run((o) => up(str(o, 'config'))));
  for (const kind of ['broker', 'worker'] as const) {
    p.command(kind)
      .description(`run one ${kind} (NATS_URL or the config's nats section names the server)`)
      .option('--config <file>', 'config file (default: WRIT_CONFIG, else the shipped local config)')
      .action(run((o) => service(kind, str(o, 'config'))));
  }
  passThrough('login', 'log in with your identity provider (device flow); writ login --help', async (args) => (await import('./login.ts')).loginCommand(args));
  p.command('token')
    .description('mint a token from the local development issuer')
    .requiredOption('--sub <name>', 'the principal (subject)')
    .option('--groups <a,b>', 'comma-separated groups', '')
    .option('--ttl <duration>', 'lifetime: 90s, 10m, 1h', '10m')
    .option('--act-for <human>', 'the human the agent acts for')
    .option('--approver', "an approver's token (its own audience); an agent's token cannot vote")
    .option('--config <file>', 'config file naming the development issuer')
    .action(run((o) => token(o)));
  p.command('exec')
    .description('submit an intent and print its outcome')
    .requiredOption('--target <name>', 'the target (writ targets are in the config)')
    .option('--sql <text>', 'the SQL to run')
    .option('--command <line>', 'the shell command line to run')
    .option('--session <id>', 'the audit session (8-128 characters of A-Z a-z 0-9 _ -)')
    .option('--id <intent-id>', 'your own intent id: sent again, it never runs twice')
    .option('--justification <text>', 'why, for the approvers and the audit log')
    .option('--timeout <duration>', 'how long to wait for the outcome', '30s')
    .option('--json', 'print the outcome as JSON')
    .option(...tokenOpt)
    .action(
      run((o, _a, cmd) => {
        check(cmd, '--target', str(o, 'target'), 'target');
        check(cmd, '--session', str(o, 'session'), 'id');
        check(cmd, '--id', str(o, 'id'), 'id');
        if ((o.sql === undefined) === (o.command === undefined)) cmd.error('error: give exactly one of --sql and --command', { exitCode: 2, code: 'writ.invalidArgument' });
        return exec(o);
      }),
    );
  for (const which of ['status', 'wait'] as const) {
    p.command(which)
      .description(which === 'status' ? "an intent's current state" : "wait for an intent's outcome and print it")
      .argument('<intent-id>')
      .option('--timeout <duration>', 'how long to wait', '30s')
      .option('--json', 'print JSON')
      .option(...tokenOpt)
      .action(
        run((o, args, cmd) => {
          check(cmd, 'intent id', args[0], 'id');
          return statusOrWait(which, o, args[0]!);
        }),
      );
  }
  passThrough('mcp', 'the agent tools over MCP (stdio, or Streamable HTTP on 127.0.0.1); writ mcp --help', async (args) => (await import('./mcp/index.ts')).mcpCommand(args));
  passThrough('policy', 'the policy toolchain: check FILE | test FILE… | eval --policy FILE | publish FILE', async (args) => {
    const { runPolicyCli } = await import('../broker/rules/index.ts');
    return runPolicyCli(args, { stdin: process.stdin, stdout: (x) => out(x), stderr: (x) => err(x) });
  });
  passThrough('audit', 'the session log: sessions | replay | tail | verify | export | reveal …; writ audit --help', (args) => audit(args));
  p.command('pending')
    .description('what waits for your approval (approvers, with their own token)')
    .option('--json', 'print JSON')
    .option(...tokenOpt)
    .action(run((o) => approver('pending', o, [])));
  p.command('approve')
    .description('approve a pending intent')
    .argument('<intent-id>')
    .option('--reason <text>', 'why, for the audit log')
    .option('--window <duration>', 'also grant a time-bound access window (shown first; confirm with y or --yes)')
    .option('--yes', 'confirm the window without asking')
    .option('--json', 'print JSON')
    .option(...tokenOpt)
    .action(
      run((o, args, cmd) => {
        check(cmd, 'intent id', args[0], 'id');
        return approver('approve', o, args);
      }),
    );
  p.command('deny')
    .description('deny a pending intent')
    .argument('<intent-id>')
    .requiredOption('--reason <text>', 'why (required)')
    .option('--json', 'print JSON')
    .option(...tokenOpt)
    .action(
      run((o, args, cmd) => {
        check(cmd, 'intent id', args[0], 'id');
        return approver('deny', o, args);
      }),
    );
  p.command('grants')
    .description('the time-bound access windows in force')
    .option('--json', 'print JSON')
    .option(...tokenOpt)
    .action(run((o) => approver('grants', o, [])));
  p.command('revoke')
    .description('end an access window')
    .argument('<window-id>')
    .option(...tokenOpt)
    .action(run((o, args) => approver('revoke', o, args)));
  return p;
}

async function main(argv: string[]): Promise<number> {
  let code = 0;
  try {
    await program((c) => (code = c)).parseAsync(argv, { from: 'user' });
  } catch (e) {
    // Help asked for exits 0; a usage error (unknown command or option, missing argument) or
    // `writ` alone exits 2, after commander has printed what was wrong.
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    throw e;
  }
  return code;
}

async function up(configFlag: string | undefined): Promise<number> {
  const { startLocalStack } = await import('./stack.ts');
  const stack = await startLocalStack(resolve(configFlag ?? DEFAULT_CONFIG));
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
async function service(kind: 'broker' | 'worker', configFlag: string | undefined): Promise<number> {
  const config = loadConfigFile(resolve(configFlag ?? DEFAULT_CONFIG));
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

async function token(o: Opts): Promise<number> {
  const values = { sub: str(o, 'sub')!, groups: str(o, 'groups') ?? '', ttl: str(o, 'ttl') ?? '10m', 'act-for': str(o, 'actFor'), approver: o.approver === true, config: str(o, 'config') };
  const config = loadConfigFile(resolve(values.config ?? DEFAULT_CONFIG));
  const { loadDevIssuer, mintDevToken } = await import('../broker/dev-issuer.ts');
  const dev = await loadDevIssuer(config.identity.devIssuer.dir, false);
  const t = await mintDevToken(dev, {
    // --approver: a token for voting (its own audience); an agent's token cannot approve.
    sub: values.sub,
    groups: values.groups
      .split(',')
      .map((g) => g.trim())
      .filter(Boolean),
    audience: values.approver ? config.identity.devIssuer.approverAudience : config.identity.devIssuer.audience,
    ttlSec: parseDuration(values.ttl),
    ...(values['act-for'] ? { actFor: values['act-for'] } : {}),
  });
  out(`${t}\n`);
  return 0;
}

async function client(tokenFlag: string | undefined, session?: string, role: NatsRole = 'agent') {
  const tok = tokenFlag ?? process.env.WRIT_TOKEN ?? (await (await import('./login.ts')).loginToken());
  if (!tok) throw new WritError('WRIT_TOKEN_MISSING', 'no token: set WRIT_TOKEN or pass --token');
  const nats = natsForRole(role, cliNats());
  const nc = await connectNats(nats, 'writ-cli');
  return {
    nc,
    c: new WritClient({ nc, token: tok, prefix: process.env.WRIT_PREFIX ?? 'writ', ...(session ? { sessionId: session } : {}), ...(nats.inboxPrefix ? { inboxPrefix: nats.inboxPrefix } : {}) }),
  };
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

async function exec(o: Opts): Promise<number> {
  const values = {
    target: str(o, 'target')!,
    sql: str(o, 'sql'),
    command: str(o, 'command'),
    session: str(o, 'session'),
    json: o.json === true,
    token: str(o, 'token'),
    justification: str(o, 'justification'),
    id: str(o, 'id'),
    timeout: str(o, 'timeout') ?? '30s',
  };
  const { nc, c } = await client(values.token, values.session);
  try {
    const o = await c.run(
      {
        target: values.target,
        ...(values.sql !== undefined ? { sql: values.sql } : {}),
        ...(values.command !== undefined ? { command: values.command } : {}),
        ...(values.justification ? { justification: values.justification } : {}),
        ...(values.id ? { intentId: values.id } : {}),
      },
      { timeoutMs: parseDuration(values.timeout) * 1000 },
    );
    return printOutcome(o, values.json);
  } finally {
    await nc.close();
  }
}

async function statusOrWait(cmd: 'status' | 'wait', o: Opts, id: string): Promise<number> {
  const values = { token: str(o, 'token'), json: o.json === true, timeout: str(o, 'timeout') ?? '30s' };
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

async function approver(cmd: 'pending' | 'approve' | 'deny' | 'grants' | 'revoke', o: Opts, positionals: string[]): Promise<number> {
  const values = { token: str(o, 'token'), reason: str(o, 'reason'), window: str(o, 'window'), yes: o.yes === true, json: o.json === true };
  const { nc, c } = await client(values.token, undefined, 'approver');
  const print = (x: unknown) => out(`${JSON.stringify(x, null, values.json ? 0 : 2)}\n`);
  try {
    switch (cmd) {
      case 'pending': {
        const { requests: list, omitted } = await c.pendingList();
        if (values.json) print(list);
        else if (list.length === 0 && omitted === 0) out('nothing waits for you\n');
        else {
          for (const p of list) {
            const command = p.command as { sql?: string; command?: string };
            out(
              `${p.intentId}  ${p.target}  by ${p.requester}${p.actFor ? ` for ${p.actFor}` : ''}  rule ${p.rule}  votes ${(p.votes as string[]).length}/${p.needed}  expires ${new Date(p.expiresAt as number).toISOString()}\n    ${JSON.stringify(command.sql ?? command.command)}\n`,
            );
          }
          if (omitted > 0) out(`${omitted} more not shown (one reply holds only so much): decide on these, or on one by id (writ approve ID)\n`);
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
        const shown = (await c.pending({ intentId: id })).find((p) => p.intentId === id);
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
          commandSha256: shown.commandSha256,
          ...(values.reason ? { reason: values.reason } : {}),
          ...(windowSec ? { windowSec } : {}),
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
    return await runAuditCli(args, {
      nc,
      names: names(process.env.WRIT_PREFIX ?? 'writ'),
      stdout: (s) => out(s),
      ...(publicKeyPem ? { publicKeyPem } : {}),
      ...(existsSync(registry) ? { keyRegistryFile: registry } : {}),
    });
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
