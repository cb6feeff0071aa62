/**
 * `writ policy check | test | eval | publish`. The `eval` line format is a stable
 * interface other tools parse: one JSON line out per line in, in order, whatever the
 * input holds; a line that cannot be evaluated is answered with a denial and an error.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { loadConfigFile, names, toWritError, WritError } from '../../schemas/index.ts';
import { initClassifiers } from '../../classify/index.ts';
import { RulePolicy, type Explanation } from './engine.ts';
import { toPolicyInput } from './intent.ts';
import { lintPolicy } from './lint.ts';
import type { PolicyTarget } from './schema.ts';
import { runTestFile, type TestFileResult } from './testing.ts';

/** Where the CLI reads and writes; the lead's `writ` binary passes process streams. */
export interface PolicyCliIo {
  stdin: AsyncIterable<string | Buffer> | NodeJS.ReadableStream;
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

const USAGE = `usage: writ policy <command>
  check FILE [--config FILE] [--strict]      lint a policy (exit 1 on errors; --strict: on warnings too)
  test PATH... [--config FILE] [--verbose]   run test cases (x.tests.yaml beside x.yaml; a folder runs all)
  eval --policy FILE [--config FILE] [--explain] [--now ISO]
                                             JSON Lines intents on stdin, one JSON line out per line in
  publish FILE [--server URL] [--prefix writ] [--author WHO] [--comment TEXT]
                                             validate and make FILE the active policy in the KV bucket
`;

/** Runs `writ policy …` with argv after `policy`; resolves to the exit code (0 ok, 1 failures, 2 usage). */
export async function runPolicyCli(argv: string[], io: PolicyCliIo): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'check':
        return await check(rest, io);
      case 'test':
        return await test(rest, io);
      case 'eval':
        return await evaluate(rest, io);
      case 'publish':
        return await publish(rest, io);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        io.stdout(USAGE);
        return cmd === undefined ? 2 : 0;
      default:
        io.stderr(`unknown command ${JSON.stringify(cmd)}\n${USAGE}`);
        return 2;
    }
  } catch (e) {
    const err = toWritError(e);
    io.stderr(`${err.code}: ${err.message}\n`);
    return err.code === 'WRIT_BAD_REQUEST' ? 2 : 1;
  }
}

function args(argv: string[], options: NonNullable<ParseArgsConfig['options']>) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new WritError('WRIT_BAD_REQUEST', `${(e as Error).message}\n${USAGE}`);
  }
}

/** Targets declared in a Writ config file (`--config`). */
function configTargets(file: string | undefined): PolicyTarget[] {
  if (!file) return [];
  return loadConfigFile(file).targets.map((t) => ({
    name: t.name,
    kind: t.kind,
    tags: [...t.tags],
    ...(t.description ? { description: t.description } : {}),
    ...(t.database ? { database: t.database } : {}),
  }));
}

async function check(argv: string[], io: PolicyCliIo): Promise<number> {
  const a = args(argv, { config: { type: 'string' }, strict: { type: 'boolean' } });
  const file = a.positionals[0];
  if (!file || a.positionals.length > 1) throw new WritError('WRIT_BAD_REQUEST', `check takes one FILE\n${USAGE}`);
  const text = await readFile(file, 'utf8');
  const { findings, policy } = lintPolicy(text, { source: file, targets: configTargets(a.values.config as string | undefined) });
  for (const f of findings) io.stdout(`${file}: ${f.level}: ${f.path}: ${f.message}\n`);
  const errors = findings.filter((f) => f.level === 'error').length;
  const warnings = findings.length - errors;
  if (policy) io.stdout(`${file}: ${policy.ruleCount} rules, version ${policy.version}: ${errors} errors, ${warnings} warnings\n`);
  else io.stdout(`${file}: ${errors} errors\n`);
  return errors > 0 || (a.values.strict && warnings > 0) ? 1 : 0;
}

async function testFiles(paths: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const p of paths) {
    if ((await stat(p)).isDirectory()) {
      const entries = (await readdir(p, { recursive: true })).filter((f) => /\.tests\.ya?ml$/.test(f)).sort();
      out.push(...entries.map((f) => join(p, f)));
    } else out.push(p);
  }
  return out;
}

async function test(argv: string[], io: PolicyCliIo): Promise<number> {
  const a = args(argv, { config: { type: 'string' }, verbose: { type: 'boolean', short: 'v' } });
  if (a.positionals.length === 0) throw new WritError('WRIT_BAD_REQUEST', `test takes FILE…\n${USAGE}`);
  const extraTargets = configTargets(a.values.config as string | undefined);
  let passed = 0;
  let failed = 0;
  let broken = 0;
  const files = await testFiles(a.positionals);
  if (files.length === 0) throw new WritError('WRIT_BAD_REQUEST', 'no *.tests.yaml files found');
  for (const f of files) {
    let r: TestFileResult;
    try {
      r = await runTestFile(f, { extraTargets });
    } catch (e) {
      const err = toWritError(e);
      io.stdout(`ERROR ${err.message.replace(/\n/g, '\n    ')}\n`);
      broken++;
      continue;
    }
    for (const c of r.results) {
      if (c.pass) {
        passed++;
        if (a.values.verbose) io.stdout(`PASS ${f} › ${c.name}\n`);
        continue;
      }
      failed++;
      io.stdout(`FAIL ${f} › ${c.name}\n${c.failures.map((x) => `    ${x}\n`).join('')}`);
    }
  }
  io.stdout(`${passed} passed, ${failed} failed${broken ? `, ${broken} files could not run` : ''}\n`);
  return failed + broken > 0 ? 1 : 0;
}

/** Splits chunks into lines (LF or CRLF); a last line without a newline counts. */
async function* lines(input: PolicyCliIo['stdin']): AsyncGenerator<string> {
  let buf = '';
  const decoder = new TextDecoder();
  for await (const chunk of input as AsyncIterable<string | Buffer>) {
    buf += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      yield buf.slice(0, nl).replace(/\r$/, '');
      buf = buf.slice(nl + 1);
    }
  }
  buf += decoder.decode();
  if (buf.length > 0) yield buf.replace(/\r$/, '');
}

/** The stable output line for one input line. */
function evalLine(policy: RulePolicy, targets: ReadonlyMap<string, PolicyTarget>, line: string, opts: { explain?: boolean; now?: Date } = {}): Record<string, unknown> {
  let id: unknown;
  try {
    let raw: unknown;
    try {
      raw = JSON.parse(line);
    } catch {
      throw new WritError('WRIT_BAD_JSON', 'the line is not valid JSON');
    }
    if (raw && typeof raw === 'object' && !Array.isArray(raw)) id = (raw as Record<string, unknown>).id;
    const input = toPolicyInput(raw, targets, opts.now);
    const x: Explanation | undefined = opts.explain ? policy.explain(input) : undefined;
    const d = x ? x.decision : policy.decide(input);
    return {
      ...(id !== undefined ? { id } : {}),
      effect: d.effect,
      rules: d.rules,
      reasons: d.reasons,
      mode: d.mode,
      policyVersion: d.policyVersion,
      ...(d.code ? { code: d.code } : {}),
      ...(d.approval ? { approval: d.approval } : {}),
      limits: d.limits,
      facts: input.facts.facts,
      ...(x ? { explain: { considered: x.considered, skipped: x.skipped } } : {}),
    };
  } catch (e) {
    const err = toWritError(e);
    const message = err.code === 'WRIT_INTERNAL' ? 'internal error while evaluating the line' : err.message;
    return {
      ...(typeof id === 'string' || typeof id === 'number' ? { id } : {}),
      effect: 'deny',
      rules: [],
      reasons: [message],
      error: { code: err.code, message },
    };
  }
}

async function evaluate(argv: string[], io: PolicyCliIo): Promise<number> {
  const a = args(argv, { policy: { type: 'string' }, config: { type: 'string' }, explain: { type: 'boolean' }, now: { type: 'string' } });
  const file = a.values.policy as string | undefined;
  if (!file) throw new WritError('WRIT_BAD_REQUEST', `eval needs --policy FILE\n${USAGE}`);
  const policy = RulePolicy.fromText(await readFile(file, 'utf8'), file);
  const targets = new Map<string, PolicyTarget>();
  for (const t of configTargets(a.values.config as string | undefined)) targets.set(t.name, t);
  for (const [n, t] of policy.targets) targets.set(n, t);
  const now = a.values.now ? new Date(a.values.now as string) : undefined;
  if (now && Number.isNaN(now.getTime())) throw new WritError('WRIT_BAD_REQUEST', '--now is not an ISO time');
  await initClassifiers();
  for await (const line of lines(io.stdin)) {
    io.stdout(`${JSON.stringify(evalLine(policy, targets, line, { explain: a.values.explain === true, ...(now ? { now } : {}) }))}\n`);
  }
  return 0;
}

async function publish(argv: string[], io: PolicyCliIo): Promise<number> {
  const a = args(argv, { server: { type: 'string' }, prefix: { type: 'string' }, author: { type: 'string' }, comment: { type: 'string' } });
  const file = a.positionals[0];
  if (!file || a.positionals.length > 1) throw new WritError('WRIT_BAD_REQUEST', `publish takes one FILE\n${USAGE}`);
  const text = await readFile(file, 'utf8');
  RulePolicy.fromText(text, file); // refuse before connecting
  const { connectNats } = await import('../../lib/nats.ts');
  const { natsForRole } = await import('../../lib/index.ts');
  const { Kvm } = await import('@nats-io/kv');
  const { PolicyStore } = await import('./store.ts');
  // Changing what every broker enforces is the operator's: --server, else NATS_URL and WRIT_NATS_*, else the local stack's operator login.
  const server = a.values.server as string | undefined;
  const nc = await connectNats(natsForRole('operator', server ? { servers: [server] } : undefined), 'writ-policy-publish');
  try {
    const kv = await new Kvm(nc).open(names((a.values.prefix as string | undefined) ?? 'writ').buckets.policy);
    const meta = { source: file, ...(a.values.author ? { author: a.values.author as string } : {}), ...(a.values.comment ? { comment: a.values.comment as string } : {}) };
    const r = await new PolicyStore(kv).publish(text, meta);
    io.stdout(r.changed ? `published ${r.version} as revision ${r.revision}\n` : `unchanged: ${r.version} is already active (revision ${r.revision})\n`);
  } finally {
    await nc.close();
  }
  return 0;
}
