/**
 * The terminal adapter: prints approval requests and outcomes to a stream and reads
 * `approve ID [reason]` / `deny ID reason` lines from another, for an approver who holds
 * their own Writ token. Votes go through `WritClient.decide` (no bot, no `onBehalfOf`), each
 * with a token from the approver's token source: a human's token votes once (the broker
 * spends it), so the source gives a fresh one per vote (./token.ts). Agent text is printed with control characters made visible and every
 * line of it behind a gutter, so a command cannot move the cursor, clear the screen or
 * print a line that looks like the bot's own.
 */
import { createInterface, type Interface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import type { NatsConnection } from '@nats-io/transport-node';
import { WritClient } from '../../client/index.ts';
import type { Logger } from '../../lib/index.ts';
import { commandText, IdSchema, names as makeNames, toWritError } from '../../schemas/index.ts';
import { Bot } from '../bot.ts';
import { factsLines, revealInvisible } from '../text.ts';
import type { ApprovalView, ApproverAdapter, MessageRef } from '../types.ts';
import { escapeForTerminal } from '../../lib/index.ts';

export { commandTokenSource } from './token.ts';

const COMMAND_MAX = 4_000;
const USAGE = 'commands: approve ID [reason] | deny ID reason | pending | help';

interface TerminalAdapterOptions {
  output: Writable;
  /** Where votes are typed; without it the adapter only prints. */
  input?: Readable;
  /** A client holding the approver's own token. */
  client: WritClient;
  log: Logger;
}

/** One line of agent text: visible controls, on one line, capped. */
function oneLine(s: string, max = 200): string {
  const t = revealInvisible(s.replace(/\r\n|\n/g, ' '));
  return t.length > max ? `${t.slice(0, max)}…` : t;
}

/** A block of agent text, each line behind a gutter. */
function gutter(s: string, max: number): string {
  const cut = s.length > max ? s.slice(0, max) : s;
  const lines = revealInvisible(cut)
    .split('\n')
    .map((l) => `   │ ${l}`);
  if (cut.length < s.length) lines.push(`   │ … cut: ${s.length} characters in all (writ pending shows it whole)`);
  return lines.join('\n');
}

function formatRequest(v: ApprovalView): string {
  const r = v.request;
  const text = commandText(r.command);
  const who = `${oneLine(r.requester.sub, 80)}${r.requester.actFor !== undefined ? `, acting for ${oneLine(r.requester.actFor, 80)}` : ''}`;
  return [
    `━━ approval requested: ${r.intentId} on ${r.target}  rule ${oneLine(r.rule, 80)}  needs ${r.approval.count} of ${r.approval.groups.map((g) => oneLine(g, 40)).join(', ')}  expires ${new Date(r.expiresAt).toISOString()}`,
    `   requester ${who}`,
    `   command (${r.command.kind}):`,
    gutter(text, COMMAND_MAX) + (v.commandLength > text.length ? `\n   │ … cut: ${v.commandLength} characters in all` : ''),
    '   what it does:',
    gutter(factsLines(r.facts).join('\n'), 1_000),
    r.justification ? `   justification:\n${gutter(r.justification, 1_000)}` : '   justification: none given',
    `   → approve ${r.intentId} [reason]   |   deny ${r.intentId} reason`,
    '',
  ].join('\n');
}

function formatOutcome(v: ApprovalView): string | undefined {
  const o = v.outcome;
  if (!o) return undefined;
  const by = o.by.length > 0 ? ` by ${o.by.map((b) => oneLine(b, 60)).join(', ')}` : '';
  const reason = o.reason ? ` — ${oneLine(o.reason, 300)}` : '';
  return `━━ ${o.intentId}: ${o.status}${o.status === 'dispatched' || o.status === 'rejected' ? by : ''}${reason}\n`;
}

class TerminalAdapter implements ApproverAdapter {
  readonly kind = 'terminal';
  readonly #o: TerminalAdapterOptions;
  readonly #pending = new Set<string>();
  /** The command hash of each request this terminal printed: a vote names what was shown. */
  readonly #shown = new Map<string, string>();
  readonly #inFlight = new Set<Promise<void>>();
  #rl?: Interface;

  constructor(o: TerminalAdapterOptions) {
    this.#o = o;
  }

  #write(s: string): void {
    // Requesters, commands and reasons come from others: nothing they hold may drive the terminal.
    this.#o.output.write(escapeForTerminal(s));
  }

  async start(): Promise<void> {
    if (!this.#o.input) return;
    this.#rl = createInterface({ input: this.#o.input, crlfDelay: Infinity, terminal: false });
    this.#rl.on('line', (line) => {
      const p = this.#onLine(line)
        .catch((e: unknown) => this.#o.log.error({ err: e }, 'terminal command failed'))
        .finally(() => this.#inFlight.delete(p));
      this.#inFlight.add(p);
    });
  }

  async stop(): Promise<void> {
    this.#rl?.close();
    await Promise.allSettled([...this.#inFlight]);
  }

  async post(view: ApprovalView): Promise<MessageRef> {
    this.#pending.add(view.request.intentId);
    this.#shown.set(view.request.intentId, view.request.commandSha256);
    this.#write(formatRequest(view));
    return { intentId: view.request.intentId };
  }

  async update(_ref: MessageRef, view: ApprovalView): Promise<void> {
    const line = formatOutcome(view);
    if (!line) return;
    this.#pending.delete(view.request.intentId);
    this.#shown.delete(view.request.intentId);
    this.#write(line);
  }

  /** An exact id, or a unique prefix of one this terminal shows as pending. */
  #resolve(id: string): string | undefined {
    if (this.#pending.has(id)) return id;
    const matches = [...this.#pending].filter((p) => p.startsWith(id));
    if (matches.length === 1) return matches[0];
    return IdSchema.safeParse(id).success ? id : undefined;
  }

  async #onLine(line: string): Promise<void> {
    const [cmd, rawId, ...rest] = line.trim().split(/\s+/);
    const reason = rest.join(' ').trim();
    switch (cmd) {
      case undefined:
      case '':
        return;
      case 'help':
        this.#write(`${USAGE}\n`);
        return;
      case 'pending':
        this.#write(this.#pending.size > 0 ? `pending: ${[...this.#pending].join(' ')}\n` : 'nothing pending here\n');
        return;
      case 'approve':
      case 'deny': {
        const id = rawId ? this.#resolve(rawId) : undefined;
        if (!id) {
          this.#write(`usage: ${cmd} ID${cmd === 'deny' ? ' reason' : ' [reason]'}\n`);
          return;
        }
        if (cmd === 'deny' && !reason) {
          this.#write('a denial needs a reason: deny ID reason\n');
          return;
        }
        try {
          // The vote names the command this terminal printed (its hash); an id not printed here is looked up.
          const sha = this.#shown.get(id);
          const state = await this.#o.client.decide(id, cmd === 'approve' ? 'approve' : 'reject', { ...(reason ? { reason: reason.slice(0, 2_000) } : {}), ...(sha ? { commandSha256: sha } : {}) });
          this.#write(`${id}: ${state}\n`);
        } catch (e) {
          const err = toWritError(e);
          this.#write(`${id}: refused ${err.code} — ${oneLine(err.message, 300)}\n`);
          if (err.code === 'WRIT_VOTE_TOKEN_SPENT') this.#write('   each vote needs a fresh token: start the terminal approver with a token command (WRIT_TOKEN_COMMAND)\n');
        }
        return;
      }
      default:
        this.#write(`${USAGE}\n`);
    }
  }
}

export interface TerminalApproverOptions {
  nc: NatsConnection;
  prefix?: string;
  /**
   * The approver's own Writ token source, called for each vote: a function returning a fresh
   * token each time (e.g. {@link commandTokenSource}). A fixed string votes once: the broker
   * spends a human's token on its first vote and refuses it after (WRIT_VOTE_TOKEN_SPENT).
   */
  token: string | (() => string | Promise<string>);
  input?: Readable;
  output: Writable;
  log: Logger;
  /** Default `terminal`. */
  name?: string;
}

/** Wires a started Bot (each delivery: this terminal sees every request) around a TerminalAdapter. */
export async function startTerminalApprover(o: TerminalApproverOptions): Promise<Bot> {
  const prefix = o.prefix ?? 'writ';
  const client = new WritClient({ nc: o.nc, token: o.token, prefix });
  const adapter = new TerminalAdapter({ output: o.output, client, log: o.log, ...(o.input ? { input: o.input } : {}) });
  const bot = new Bot({ name: o.name ?? 'terminal', nc: o.nc, names: makeNames(prefix), adapter, log: o.log, delivery: 'each' });
  await bot.start();
  return bot;
}
