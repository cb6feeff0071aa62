/**
 * Runs an approver bot, from the compiled package (`npm run build` in a checkout; the Docker
 * image's /app/dist/approver/main.js):
 *
 *   node dist/approver/main.js --config approver.yaml     the Slack bot
 *   node dist/approver/main.js terminal [--prefix writ]   the terminal approver (WRIT_TOKEN_COMMAND: prints your own fresh token per vote)
 *   node dist/approver/main.js keygen --out FILE          a bot's vote-signing key; prints the public key
 *
 * The config's `nats` section (docs/configuration.md) with NATS_URL and WRIT_NATS_* over it says
 * where NATS is and how to authenticate. SIGTERM / SIGINT drain: the
 * bot takes nothing new, finishes votes and posts in flight, then exits.
 */
import { writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { connectNats, createLogger, guardProcess, withDeadline } from '../lib/index.ts';
import { names, toWritError, WritError } from '../schemas/index.ts';
import { natsForRole } from '../lib/index.ts';
import { Bot } from './bot.ts';
import { generateBotKey } from './decide.ts';
import { loadSlackBotConfig, SlackAdapter } from './slack/index.ts';
import { commandTokenSource, startTerminalApprover } from './terminal/index.ts';

const USAGE = `usage:
  node dist/approver/main.js --config FILE          Slack approver bot
  node dist/approver/main.js terminal [--prefix P]  terminal approver; WRIT_TOKEN_COMMAND prints your own fresh
                                                    token for each vote (WRIT_TOKEN alone votes once)
  node dist/approver/main.js keygen --out FILE      a bot's Ed25519 vote-signing key (0600); prints the public
                                                    key to list in the broker's approvals.trustedBots
(dist/ is in the installed package and the Docker image; in a checkout, \`npm run build\` makes it)`;

function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    for (const s of ['SIGTERM', 'SIGINT'] as const) process.once(s, () => resolve(s));
  });
}

async function slack(configFile: string): Promise<number> {
  const config = loadSlackBotConfig(configFile);
  const log = createLogger({ name: `writ-approver-${config.name}`, level: config.log.level });
  // The config's `nats` section with the environment over it (lib/nats.ts, docs/configuration.md).
  const nc = await connectNats(config.nats, `writ-approver-${config.name}`);
  const bot = new Bot({ name: config.name, nc, names: names(config.prefix), adapter: new SlackAdapter({ config, log }), log, replicas: config.replicas });
  await bot.start();
  // SIGTERM/SIGINT or an uncaught failure: drain within a deadline, then exit.
  return guardProcess({
    log,
    stop: async () => {
      await bot.stop();
      if (!(await withDeadline(nc.drain(), 3_000))) await nc.close();
    },
    deadlineMs: 20_000,
  });
}

async function terminal(prefix: string): Promise<number> {
  // A human's token votes once: WRIT_TOKEN_COMMAND prints a fresh one for each vote; WRIT_TOKEN alone votes once.
  const token = process.env.WRIT_TOKEN_COMMAND ? commandTokenSource(process.env.WRIT_TOKEN_COMMAND) : process.env.WRIT_TOKEN;
  if (!token) throw new WritError('WRIT_TOKEN_MISSING', 'no token: set WRIT_TOKEN_COMMAND (prints a fresh approver token per vote, e.g. `writ login --print --fresh`) or WRIT_TOKEN');
  const log = createLogger({ name: 'writ-approver-terminal', level: process.env.WRIT_LOG_LEVEL ?? 'warn' });
  // The environment (NATS_URL, WRIT_NATS_*), else the local stack's approver credentials.
  const nc = await connectNats(natsForRole('approver'), 'writ-approver-terminal');
  const bot = await startTerminalApprover({ nc, prefix, token, input: process.stdin, output: process.stdout, log });
  process.stdout.write('waiting for approval requests; type help for commands\n');
  await Promise.race([untilSignal(), new Promise((r) => process.stdin.once('end', r))]);
  await bot.stop();
  await nc.drain();
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { config: { type: 'string' }, prefix: { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean', default: false } },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (positionals[0] === 'terminal') return terminal(values.prefix ?? process.env.WRIT_PREFIX ?? 'writ');
  if (positionals[0] === 'keygen') {
    if (!values.out) {
      process.stderr.write(`${USAGE}\n`);
      return 2;
    }
    // The private key stays in this file (never on NATS); the public key goes into the broker's config.
    const k = generateBotKey();
    writeFileSync(values.out, k.privateKeyPem, { mode: 0o600, flag: 'wx' });
    process.stdout.write(`${k.publicKey}\n`);
    return 0;
  }
  const file = values.config ?? process.env.WRIT_APPROVER_CONFIG;
  if (!file || positionals.length > 0) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  return slack(file);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      const err = toWritError(e);
      // An unexpected failure (NATS unreachable, port in use) is worth its own message on the console.
      const detail = err.code === 'WRIT_INTERNAL' && e instanceof Error ? e.message : err.message;
      process.stderr.write(`${err.code}: ${detail}\n`);
      process.exit(1);
    },
  );
}
