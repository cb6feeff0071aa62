/**
 * `writ audit …`: sessions, replay, tail, verify, export. Exit codes: 0 done (verify: the
 * log is intact and holds the evidence of everything the state says happened), 1 verify
 * found a broken link or missing evidence, 2 usage error. Other failures throw.
 */
import { createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { escapeForTerminal } from '../lib/index.ts';
import type { SealKeyPair } from './reveal.ts';
import { commandText, WritError, type Command, type Names } from '../schemas/index.ts';
import { auditorKeyPair, revealCommand } from './reveal.ts';
import { storedEventHash, ZERO_HASH } from './chain.ts';
import { clean, formatEvent, formatSessions } from './format.ts';
import { exportJsonl, listSessions, readSessionStored, tail } from './read.ts';
import { addKeyToRegistry, loadKeyRegistry, type KeyRegistry } from './keys.ts';
import { verify } from './verify.ts';
import type { AuditSource, VerifyResult } from './types.ts';

export interface AuditCliIo {
  nc: NatsConnection;
  names: Names;
  /** Receives output text; every call ends with a newline. */
  stdout: (s: string) => void;
  /** Error and progress text; default: stdout. */
  stderr?: ((s: string) => void) | undefined;
  /** Public key (SPKI PEM) that signs checkpoints; `--public-key FILE` overrides it. */
  publicKeyPem?: string | undefined;
  /** The operator's writer-key registry file (audit/keys.ts); `--keys FILE` overrides it. */
  keyRegistryFile?: string | undefined;
  /** Ends `tail`; default: SIGINT or SIGTERM. */
  signal?: AbortSignal | undefined;
}

const AUDIT_USAGE = `usage: writ audit <command>
  sessions [--principal P] [--target T] [--since TIME] [--until TIME] [--outcome O] [--json]
  replay   --session S [--json]
  tail     [--session S] [--from-seq N] [--limit N] [--json]
  verify   [--session S] [--public-key FILE]... [--require-checkpoint] [--anchor HASH[@SEQ]] [--max-checkpoint-age SECONDS]
           [--keys FILE] [--allow-unsigned-before SEQ] [--no-signatures]
           [--no-against-state] [--state-grace SECONDS] [--receipt-window SECONDS] [--json]
           (by default every intent record and claim in the state buckets must have its events in
           the log; --no-against-state checks the chains alone, e.g. on an exported stream.
           Every block must be signed by a writer key in the registry (--keys) whose kind may write
           its events; --allow-unsigned-before accepts unsigned blocks below that stream sequence
           (logs from before signing); --no-signatures skips the check and says so.
           --public-key may be repeated, and a FILE may hold several PEM keys: a checkpoint
           counts when any of them signed it, e.g. the grant keys before and after a rotation)
  keys add --public-key FILE --kind broker|worker|approver|operator|system [--id ID] [--targets T1,T2] [--not-before TIME] [--not-after TIME] [--keys FILE]
           (--targets, workers only: the key's exec events count only for intents received for those
           targets; verify fails an exec event of that key for any other intent)
  keys list [--keys FILE] [--json]
  export   [--since TIME] [--until TIME] [--session S]        (JSON Lines, one AuditEvent per line)
  reveal   --session S --key FILE [--intent I] [--json]
           (auditors: the exact command text sealed to the auditor key, opened with the X25519
           private key in FILE, which never enters NATS; each is checked against the SHA-256 the
           chain recorded and the chain's links up to it; control characters are shown escaped)
TIME is ISO 8601 (2025-01-31T12:00:00Z) or epoch milliseconds.`;

class UsageError extends Error {}

const OPTIONS = {
  session: { type: 'string' },
  principal: { type: 'string' },
  target: { type: 'string' },
  since: { type: 'string' },
  until: { type: 'string' },
  outcome: { type: 'string' },
  json: { type: 'boolean' },
  limit: { type: 'string' },
  'from-seq': { type: 'string' },
  // verify: repeated for every checkpoint key still to be trusted (a grant-key rotation); keys add: one.
  'public-key': { type: 'string', multiple: true },
  'require-checkpoint': { type: 'boolean' },
  anchor: { type: 'string' },
  'max-checkpoint-age': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  // Node 20's parseArgs has no negation: both spellings are options of their own.
  'against-state': { type: 'boolean' },
  'no-against-state': { type: 'boolean' },
  'state-grace': { type: 'string' },
  'receipt-window': { type: 'string' },
  keys: { type: 'string' },
  'allow-unsigned-before': { type: 'string' },
  'no-signatures': { type: 'boolean' },
  kind: { type: 'string' },
  id: { type: 'string' },
  'not-before': { type: 'string' },
  'not-after': { type: 'string' },
  targets: { type: 'string' },
  key: { type: 'string' },
  intent: { type: 'string' },
} as const;
type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

/** Which flags each command takes; anything else is a usage error, not silently ignored. */
const ALLOWED: Record<string, ReadonlyArray<keyof Values>> = {
  sessions: ['principal', 'target', 'since', 'until', 'outcome', 'json'],
  replay: ['session', 'json'],
  tail: ['session', 'from-seq', 'limit', 'json'],
  verify: [
    'session',
    'public-key',
    'require-checkpoint',
    'anchor',
    'max-checkpoint-age',
    'against-state',
    'no-against-state',
    'state-grace',
    'receipt-window',
    'json',
    'keys',
    'allow-unsigned-before',
    'no-signatures',
  ],
  'keys add': ['public-key', 'kind', 'id', 'targets', 'not-before', 'not-after', 'keys'],
  'keys list': ['keys', 'json'],
  export: ['since', 'until', 'session'],
  reveal: ['session', 'intent', 'key', 'json'],
};

export async function runAuditCli(argv: string[], io: AuditCliIo): Promise<number> {
  const err = io.stderr ?? io.stdout;
  let cmd: string | undefined;
  let v: Values;
  try {
    const parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
    v = parsed.values;
    cmd = parsed.positionals[0];
    if (v.help || cmd === undefined || cmd === 'help') {
      io.stdout(`${AUDIT_USAGE}\n`);
      return v.help || cmd === 'help' ? 0 : 2;
    }
    const words = cmd === 'keys' ? 2 : 1;
    if (cmd === 'keys') cmd = `keys ${parsed.positionals[1] ?? ''}`;
    if (parsed.positionals.length > words) throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[words])}`);
    const allowed = ALLOWED[cmd];
    if (!allowed) throw new UsageError(`unknown command ${JSON.stringify(cmd)}`);
    const extra = Object.keys(v).filter((k) => !allowed.includes(k as keyof Values));
    if (extra.length) throw new UsageError(`${cmd} does not take --${extra[0]}`);
  } catch (e) {
    if (!(e instanceof UsageError) && (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') !== true) throw e;
    err(`error: ${(e as Error).message}\n${AUDIT_USAGE}\n`);
    return 2;
  }
  const src: AuditSource = { js: jetstream(io.nc), names: io.names };
  try {
    switch (cmd) {
      case 'sessions':
        return await sessions(src, v, io);
      case 'replay':
        return await replay(src, v, io);
      case 'tail':
        return await tailCmd(src, v, io);
      case 'verify':
        return await verifyCmd(src, v, io);
      case 'export':
        return await exportCmd(src, v, io);
      case 'reveal':
        return await revealCmd(src, v, io);
      case 'keys add':
        return keysAdd(v, io);
      case 'keys list':
        return keysList(v, io);
    }
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    err(`error: ${e.message}\n`);
    return 2;
  }
  return 2;
}

function time(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const t = /^\d+$/.test(v) ? Number(v) : Date.parse(v);
  if (!Number.isFinite(t)) throw new UsageError(`--${flag} must be ISO 8601 or epoch ms, got ${JSON.stringify(v)}`);
  return t;
}

function count(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new UsageError(`--${flag} must be a whole number, got ${JSON.stringify(v)}`);
  return Number(v);
}

function session(v: Values, io: AuditCliIo, required: boolean): string | undefined {
  const s = v.session;
  if (s === undefined) {
    if (required) throw new UsageError('--session is required');
    return undefined;
  }
  try {
    io.names.audit(s);
  } catch {
    throw new UsageError(`--session: not a valid session id: ${JSON.stringify(s.slice(0, 64))}`);
  }
  return s;
}

async function sessions(src: AuditSource, v: Values, io: AuditCliIo): Promise<number> {
  const rows = await listSessions({ ...src, principal: v.principal, target: v.target, since: time(v.since, 'since'), until: time(v.until, 'until'), outcome: v.outcome });
  io.stdout(v.json ? `${JSON.stringify(rows)}\n` : `${formatSessions(rows)}\n${rows.length} sessions\n`);
  return 0;
}

async function replay(src: AuditSource, v: Values, io: AuditCliIo): Promise<number> {
  const sessionId = session(v, io, true)!;
  const stored = await readSessionStored({ ...src, sessionId });
  if (v.json) {
    for (let i = 0; i < stored.length; i += 1000)
      io.stdout(
        stored
          .slice(i, i + 1000)
          .map((s) => `${JSON.stringify(s.event)}\n`)
          .join(''),
      );
    return 0;
  }
  // The chain is checked on the way (links and hashes; checkpoints are verify's job).
  let prev = ZERO_HASH;
  let broken: string | undefined;
  const intents = new Set<string>();
  let out: string[] = [];
  for (const { seq, event } of stored) {
    if (!broken && (event.prev !== prev || storedEventHash(event) !== event.hash)) broken = `event ${event.id} (seq ${seq})`;
    prev = event.hash;
    if (event.intentId) intents.add(event.intentId);
    out.push(`${formatEvent(event)}\n`);
    if (out.length >= 1000) {
      io.stdout(out.join(''));
      out = [];
    }
  }
  out.push(`-- session ${sessionId}: ${stored.length} events, ${intents.size} intents, chain ${broken ? `BROKEN at ${broken} (run verify)` : 'intact'}\n`);
  io.stdout(out.join(''));
  return 0;
}

async function tailCmd(src: AuditSource, v: Values, io: AuditCliIo): Promise<number> {
  const sessionId = session(v, io, false);
  const limit = count(v.limit, 'limit');
  const fromSeq = count(v['from-seq'], 'from-seq');
  const ac = new AbortController();
  const stop = () => ac.abort();
  io.signal?.addEventListener('abort', stop, { once: true });
  if (io.signal?.aborted) stop();
  if (!io.signal) {
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  }
  let seen = 0;
  try {
    await tail(
      { ...src, sessionId, fromSeq },
      ({ seq, event }) => {
        if (limit !== undefined && seen >= limit) return;
        seen++;
        io.stdout(v.json ? `${JSON.stringify(event)}\n` : `${formatEvent(event, { session: !sessionId, seq })}\n`);
        if (limit !== undefined && seen >= limit) stop();
      },
      ac.signal,
    );
  } finally {
    io.signal?.removeEventListener('abort', stop);
    process.removeListener('SIGINT', stop);
    process.removeListener('SIGTERM', stop);
  }
  return 0;
}

async function verifyCmd(src: AuditSource, v: Values, io: AuditCliIo): Promise<number> {
  const sessionId = session(v, io, false);
  let publicKeyPem: string[] | undefined = io.publicKeyPem === undefined ? undefined : publicKeysIn(io.publicKeyPem, 'the default checkpoint key');
  if (v['public-key'] !== undefined) {
    publicKeyPem = [];
    for (const file of v['public-key']) {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (e) {
        throw new UsageError(`--public-key: ${(e as Error).message}`);
      }
      publicKeyPem.push(...publicKeysIn(text, `--public-key ${clean(file)}`));
    }
  }
  let anchor: { hash: string; seq?: number } | undefined;
  if (v.anchor !== undefined) {
    const m = /^([0-9a-f]{64})(?:@(\d+))?$/.exec(v.anchor);
    if (!m) throw new UsageError('--anchor must be HASH or HASH@SEQ (a checkpoint from the broker log)');
    anchor = { hash: m[1]!, ...(m[2] ? { seq: Number(m[2]) } : {}) };
  }
  const maxAge = count(v['max-checkpoint-age'], 'max-checkpoint-age');
  if (v['against-state'] && v['no-against-state']) throw new UsageError('--against-state and --no-against-state exclude each other');
  const againstState = !v['no-against-state'];
  const grace = count(v['state-grace'], 'state-grace');
  const receiptWindow = count(v['receipt-window'], 'receipt-window');
  if (grace !== undefined && !againstState) throw new UsageError('--state-grace needs the check against state');
  // Fail closed: checking chains without checking who wrote them is asked for, never defaulted to.
  const registryFile = v.keys ?? io.keyRegistryFile;
  if (v['no-signatures'] && (v.keys !== undefined || v['allow-unsigned-before'] !== undefined)) throw new UsageError('--no-signatures excludes --keys and --allow-unsigned-before');
  if (!v['no-signatures'] && registryFile === undefined) throw new UsageError('no writer key registry: pass --keys FILE (see `writ audit keys add`), or --no-signatures to check the chains alone');
  let signers: KeyRegistry | undefined;
  if (!v['no-signatures']) {
    try {
      signers = loadKeyRegistry(registryFile!);
    } catch (e) {
      throw new UsageError(`--keys: ${(e as Error).message}`);
    }
  }
  const allowUnsignedBefore = count(v['allow-unsigned-before'], 'allow-unsigned-before');
  let r: VerifyResult;
  try {
    r = await verify({
      ...src,
      sessionId,
      publicKeyPem,
      anchor,
      requireCheckpoint: v['require-checkpoint'] ?? false,
      signers,
      allowUnsignedBefore,
      maxCheckpointAgeMs: maxAge === undefined ? undefined : maxAge * 1000,
      againstState,
      stateGraceMs: grace === undefined ? undefined : grace * 1000,
      receiptWindowMs: receiptWindow === undefined ? undefined : receiptWindow * 1000,
    });
  } catch (e) {
    // No state to check against is not an intact log: say so, and what to run instead.
    if (e instanceof WritError && e.code === 'WRIT_CONFIG_INVALID') throw new UsageError(e.message);
    throw e;
  }
  io.stdout(v.json ? `${JSON.stringify(r)}\n` : verifyReport(r));
  return r.ok ? 0 : 1;
}

function verifyReport(r: VerifyResult): string {
  const lines = [
    `${r.ok ? 'OK' : 'BROKEN'}: ${r.sessions} sessions, ${r.events} events in ${r.blocks} blocks`,
    `checkpoints: ${r.checkpoints} (${r.signaturesChecked ? 'signatures verified' : 'signatures NOT checked: no public key'}), ${r.coveredHeads} signed heads matched` +
      (r.lastCheckpoint ? `; newest ${r.lastCheckpoint.hash}@${r.lastCheckpoint.seq} at ${new Date(r.lastCheckpoint.at).toISOString()}` : ''),
  ];
  lines.push(
    r.blockSignaturesChecked
      ? `blocks: every signature checked against the writer key registry${r.unsignedBlocks ? ` (${r.unsignedBlocks} unsigned blocks)` : ''}`
      : `blocks: writer signatures NOT checked (--no-signatures)${r.unsignedBlocks ? `; ${r.unsignedBlocks} unsigned blocks` : ''}`,
  );
  if (r.truncatedSessions) lines.push(`${r.truncatedSessions} sessions begin before the retained part of the stream (max_age)`);
  if (r.uncheckedExec) lines.push(`${r.uncheckedExec} execution reports of target-bound worker keys NOT checked: their intents' receipts may have aged out (--receipt-window)`);
  if (r.firstBreak) {
    const b = r.firstBreak;
    lines.push(`first broken link: session ${clean(b.sessionId)}, seq ${b.seq}${b.eventId ? `, event ${clean(b.eventId)}` : ''}: ${clean(b.reason)}`);
    if (r.breaks > 1) lines.push(`${r.breaks} breaks in total`);
  }
  const st = r.state;
  if (!st) lines.push('state: NOT checked against the intents and claims buckets (--no-against-state)');
  else {
    lines.push(
      `state: ${st.checked} intent records checked against the log (${st.claims} claims), ${st.missing} with missing evidence` +
        `${st.recent ? `; ${st.recent} changed within the grace period, not checked` : ''}${st.agedOut ? `; ${st.agedOut} older than the retained log` : ''}`,
    );
    for (const f of st.findings) {
      lines.push(
        `missing evidence: intent ${clean(f.intentId)}, session ${clean(f.sessionId)}, state ${clean(f.state)}${f.claimed ? ' (claimed)' : ''}: no ${f.missing.map((m) => clean(m)).join(', no ')}`,
      );
    }
    if (st.missing > st.findings.length) lines.push(`… and ${st.missing - st.findings.length} more not listed`);
  }
  return `${lines.join('\n')}\n`;
}

async function exportCmd(src: AuditSource, v: Values, io: AuditCliIo): Promise<number> {
  const sessionId = session(v, io, false);
  await exportJsonl({ ...src, since: time(v.since, 'since'), until: time(v.until, 'until'), sessionId }, { write: (s) => io.stdout(s) });
  return 0;
}

/**
 * The exact command texts of a session (or one intent of it), for an auditor who holds the
 * private key. Exit 0: every text shown opened and matched its recorded digest on an intact
 * chain; 1: a sealed text did not open or match, or the chain is broken up to it (nothing of
 * it is shown); 2: usage (no key file, nothing sealed to reveal).
 */
async function revealCmd(src: AuditSource, v: Values, io: AuditCliIo): Promise<number> {
  const sessionId = session(v, io, true)!;
  if (v.key === undefined) throw new UsageError("reveal needs --key FILE: the auditor's X25519 private key (PKCS#8 PEM), never fetched from NATS");
  let kp: SealKeyPair;
  try {
    kp = auditorKeyPair(v.key);
  } catch (e) {
    throw new UsageError(`--key: ${(e as Error).message}`);
  }
  const stored = await readSessionStored({ ...src, sessionId });
  let prev = ZERO_HASH;
  let intact = true;
  let shown = 0;
  let failed = 0;
  for (const { seq, event } of stored) {
    // The digest is trusted only as far as the chain holding it is intact.
    if (event.prev !== prev || storedEventHash(event) !== event.hash) intact = false;
    prev = event.hash;
    if (event.type !== 'intent.received' || (v.intent !== undefined && event.intentId !== v.intent)) continue;
    const p = event.payload as { commandSealed?: unknown; commandSha256?: string } | undefined;
    if (!p?.commandSealed) continue;
    const where = `intent ${clean(event.intentId ?? '?')} (seq ${seq}, event ${clean(event.id)})`;
    if (!intact) {
      failed++;
      io.stdout(
        v.json
          ? `${JSON.stringify({ intentId: event.intentId, seq, ok: false, code: 'WRIT_RECORD_TAMPERED', reason: 'the chain is broken at or before this event' })}\n`
          : `${where}: NOT REVEALED: the chain is broken at or before this event (run verify)\n`,
      );
      continue;
    }
    let command: Command;
    try {
      command = revealCommand(event, kp);
    } catch (e) {
      failed++;
      const code = e instanceof WritError ? e.code : 'WRIT_SEAL_INVALID';
      io.stdout(
        v.json
          ? `${JSON.stringify({ intentId: event.intentId, seq, ok: false, code })}\n`
          : `${where}: NOT REVEALED: ${code} (another auditor key, or the sealed text does not match the recorded digest)\n`,
      );
      continue;
    }
    shown++;
    const text = commandText(command);
    // The exact text may hold escape sequences and bidi overrides: shown escaped, never raw.
    io.stdout(
      v.json
        ? `${escapeForTerminal(JSON.stringify({ intentId: event.intentId, seq, ok: true, kind: command.kind, sha256: p.commandSha256, text }))}\n`
        : `${where}: ${command.kind}, sha256 ${clean(String(p.commandSha256))} (matches the chain)\n${escapeForTerminal(text)
            .split('\n')
            .map((l) => `  │ ${l}`)
            .join('\n')}\n`,
    );
  }
  if (shown + failed === 0) throw new UsageError(`no sealed command in session ${sessionId}${v.intent !== undefined ? ` for intent ${v.intent}` : ''} (is audit.auditorPublicKey set?)`);
  return failed === 0 ? 0 : 1;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

/**
 * Every PEM public key in `text` (one file may hold several, e.g. the grant keys before and
 * after a rotation). Fail closed: a file with no key, or a block that is not a public key, is
 * a usage error, never a key silently left out.
 */
function publicKeysIn(text: string, where: string): string[] {
  const blocks = [...text.matchAll(PEM_BLOCK)].map((m) => m[0]);
  if (blocks.length === 0) throw new UsageError(`${where}: no PEM public key in it`);
  for (const [i, b] of blocks.entries()) {
    // Checked first: createPublicKey would accept a private key and derive its public half.
    if (/^-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(b)) throw new UsageError(`${where}: PEM block ${i + 1} is a private key; give the public half`);
    try {
      createPublicKey(b);
    } catch (e) {
      throw new UsageError(`${where}: PEM block ${i + 1} is not a public key (${(e as Error).message})`);
    }
  }
  return blocks;
}

function registryFileOf(v: Values, io: AuditCliIo): string {
  const f = v.keys ?? io.keyRegistryFile;
  if (f === undefined) throw new UsageError('no writer key registry: pass --keys FILE');
  return f;
}

function keysAdd(v: Values, io: AuditCliIo): number {
  const file = registryFileOf(v, io);
  if (v['public-key'] === undefined || v.kind === undefined) throw new UsageError('keys add needs --public-key FILE and --kind');
  if (v['public-key'].length !== 1) throw new UsageError('keys add takes one --public-key FILE');
  let publicKeyPem: string;
  try {
    publicKeyPem = readFileSync(v['public-key'][0]!, 'utf8');
  } catch (e) {
    throw new UsageError(`--public-key: ${(e as Error).message}`);
  }
  try {
    const targets = v.targets === undefined ? undefined : v.targets.split(',').map((t) => t.trim());
    const kid = addKeyToRegistry(file, { publicKeyPem, kind: v.kind, id: v.id, targets, notBefore: time(v['not-before'], 'not-before'), notAfter: time(v['not-after'], 'not-after') });
    io.stdout(`registered ${kid} as ${clean(v.kind)}${v.id ? ` ${clean(v.id)}` : ''}${targets ? ` for ${clean(targets.join(', '))}` : ''} in ${clean(file)}\n`);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError((e as Error).message);
  }
  return 0;
}

function keysList(v: Values, io: AuditCliIo): number {
  const file = registryFileOf(v, io);
  let reg: KeyRegistry;
  try {
    reg = loadKeyRegistry(file);
  } catch (e) {
    throw new UsageError(`--keys: ${(e as Error).message}`);
  }
  const rows = [...reg.values()].map((k) => ({ keyId: k.keyId, kind: k.kind, id: k.id, targets: k.targets, notBefore: k.notBefore, notAfter: k.notAfter }));
  if (v.json) io.stdout(`${JSON.stringify(rows)}\n`);
  else {
    const iso = (t: number | undefined) => (t === undefined ? '-' : new Date(t).toISOString());
    io.stdout(
      `${rows.map((r) => `${r.keyId}  ${clean(r.kind).padEnd(8)} ${clean(r.id ?? '*').padEnd(20)} ${iso(r.notBefore)} .. ${iso(r.notAfter)}${r.targets ? `  targets ${clean(r.targets.join(','))}` : ''}`).join('\n')}${rows.length ? '\n' : ''}${rows.length} keys\n`,
    );
  }
  return 0;
}
