/**
 * The approver bots on a real stack (nats-server, PostgreSQL, broker, worker) with a
 * local fake of the Slack Web API that checks the request shapes @slack/web-api sends
 * (bearer token, form body, well-formed Block Kit) and records every call. Interactions
 * are signed here the way Slack signs them. Covers: one post per request with two
 * replicas, a signed approval that runs once, bad signatures and stale timestamps,
 * unmapped and e-mail-mapped users, outcomes decided elsewhere, escaping, and the
 * terminal adapter.
 */
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ACTION_APPROVE,
  ACTION_APPROVE_WINDOW,
  ACTION_DENY,
  ACTIONS_BLOCK,
  Bot,
  commandTokenSource,
  generateBotKey,
  parseSlackBotConfig,
  SlackAdapter,
  startTerminalApprover,
} from '../approver/index.ts';
import { readSession } from '../audit/index.ts';
import { DEV_ISSUER, mintDevToken } from '../broker/index.ts';
import { createLogger, type Logger } from '../lib/index.ts';
import { startStack, type Stack } from './fixture.ts';

const SLACK_TOKEN = 'xoxb-fake-bot-token-0123456789';
const SIGNING_SECRET = 'fake-signing-secret-abcdef0123456789';
const CHANNEL = 'C0APPROVALS';
/** The bot's vote-signing key; its public half is listed with the bot in the broker's trustedBots. */
const BOT_KEY = generateBotKey();
const TEAM = 'T0TEST';

type Json = Record<string, unknown>;
interface SlackCall {
  method: string;
  body: Json;
  at: number;
  /** chat.postMessage: the ts it answered. */ ts?: string;
}
interface PostedMessage {
  channel: string;
  ts: string;
  text: string;
  blocks: Json[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function eventually<T>(fn: () => T | undefined | false | Promise<T | undefined | false>, what: string, timeoutMs = 15_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

// ---------------------------------------------------------------------------------------
// The fake Slack Web API.

const TEXT_TYPES = new Set(['mrkdwn', 'plain_text']);

/** Block Kit as Slack validates it (the subset the bot uses, with Slack's limits); returns the problems. */
function blockProblems(blocks: unknown): string[] {
  const out: string[] = [];
  const text = (t: unknown, where: string, o: { plain?: boolean; max?: number } = {}) => {
    const x = t as Json | undefined;
    if (!x || typeof x !== 'object' || typeof x.type !== 'string' || !TEXT_TYPES.has(x.type)) return void out.push(`${where}: not a text object`);
    if (o.plain && x.type !== 'plain_text') out.push(`${where}: must be plain_text`);
    if (typeof x.text !== 'string' || x.text.length === 0) return void out.push(`${where}: text must be a non-empty string`);
    if (x.text.length > (o.max ?? 3000)) out.push(`${where}: text longer than ${o.max ?? 3000}`);
  };
  if (!Array.isArray(blocks)) return ['blocks: not an array'];
  if (blocks.length === 0 || blocks.length > 50) out.push('blocks: 1 to 50 blocks');
  const blockIds = new Set<string>();
  const actionIds = new Set<string>();
  blocks.forEach((b: Json, i) => {
    const at = `blocks[${i}]`;
    if (!b || typeof b.type !== 'string') return void out.push(`${at}: no type`);
    if (b.block_id !== undefined) {
      if (typeof b.block_id !== 'string' || b.block_id.length > 255 || blockIds.has(b.block_id)) out.push(`${at}.block_id: invalid or duplicate`);
      else blockIds.add(b.block_id);
    }
    switch (b.type) {
      case 'header':
        text(b.text, `${at}.text`, { plain: true, max: 150 });
        break;
      case 'divider':
        break;
      case 'section':
        if (b.text === undefined && b.fields === undefined) out.push(`${at}: a section needs text or fields`);
        if (b.text !== undefined) text(b.text, `${at}.text`);
        if (b.fields !== undefined) {
          if (!Array.isArray(b.fields) || b.fields.length > 10) out.push(`${at}.fields: at most 10`);
          else b.fields.forEach((f, j) => text(f, `${at}.fields[${j}]`, { max: 2000 }));
        }
        break;
      case 'context':
        if (!Array.isArray(b.elements) || b.elements.length === 0 || b.elements.length > 10) out.push(`${at}.elements: 1 to 10`);
        else b.elements.forEach((e, j) => text(e, `${at}.elements[${j}]`));
        break;
      case 'input': {
        text(b.label, `${at}.label`, { plain: true, max: 2000 });
        const e = b.element as Json | undefined;
        if (!e || typeof e.type !== 'string' || typeof e.action_id !== 'string') out.push(`${at}.element: needs type and action_id`);
        break;
      }
      case 'actions':
        if (!Array.isArray(b.elements) || b.elements.length === 0 || b.elements.length > 25) out.push(`${at}.elements: 1 to 25`);
        else
          b.elements.forEach((e: Json, j) => {
            const w = `${at}.elements[${j}]`;
            if (e.type !== 'button') return void out.push(`${w}: only buttons expected`);
            if (typeof e.action_id !== 'string' || e.action_id.length === 0 || e.action_id.length > 255) out.push(`${w}.action_id: required`);
            else if (actionIds.has(e.action_id)) out.push(`${w}.action_id: duplicate`);
            else actionIds.add(e.action_id);
            text(e.text, `${w}.text`, { plain: true, max: 75 });
            if (e.value !== undefined && (typeof e.value !== 'string' || e.value.length > 2000)) out.push(`${w}.value: a string of at most 2000`);
            if (e.style !== undefined && e.style !== 'primary' && e.style !== 'danger') out.push(`${w}.style: primary or danger`);
          });
        break;
      default:
        out.push(`${at}: unexpected block type ${String(b.type)}`);
    }
  });
  return out;
}

class FakeSlack {
  readonly calls: SlackCall[] = [];
  readonly problems: string[] = [];
  readonly messages = new Map<string, PostedMessage>();
  /** Slack users by id, for users.info. */
  readonly users = new Map<string, { email?: string; deleted?: boolean; is_bot?: boolean }>();
  #server?: Server;
  #seq = 0;
  url = '';

  async start(): Promise<void> {
    this.#server = createServer((req, res) => void this.#handle(req, res));
    await new Promise<void>((r) => this.#server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}/api/`;
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => {
      this.#server?.close(() => r());
      this.#server?.closeAllConnections();
    });
  }

  callsOf(method: string): SlackCall[] {
    return this.calls.filter((c) => c.method === method);
  }

  /** The chat.postMessage calls to `channel` whose buttons carry this intent id. */
  postsFor(intentId: string, channel = CHANNEL): SlackCall[] {
    return this.callsOf('chat.postMessage').filter((c) => c.body.channel === channel && JSON.stringify(c.body.blocks).includes(`"value":"${intentId}"`));
  }

  /** The current state of the message posted for this intent. */
  messageFor(intentId: string, channel = CHANNEL): PostedMessage | undefined {
    const ts = this.postsFor(intentId, channel)[0]?.ts;
    return ts ? this.messages.get(ts) : undefined;
  }

  #reply(res: ServerResponse, body: Json): void {
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(body));
  }

  #fail(res: ServerResponse, method: string, problem: string, error = 'invalid_arguments'): void {
    this.problems.push(`${method}: ${problem}`);
    this.#reply(res, { ok: false, error });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const method = (req.url ?? '').replace(/^\/api\//, '').split('?')[0]!;
    if (req.method !== 'POST') return this.#fail(res, method, `method ${req.method}`);
    if (req.headers.authorization !== `Bearer ${SLACK_TOKEN}`) return this.#fail(res, method, 'missing or wrong bearer token', 'not_authed');
    const type = String(req.headers['content-type'] ?? '');
    let body: Json;
    if (type.startsWith('application/x-www-form-urlencoded')) {
      body = Object.fromEntries(new URLSearchParams(raw));
      // @slack/web-api sends arrays and objects as JSON strings inside the form.
      if (typeof body.blocks === 'string') {
        try {
          body.blocks = JSON.parse(body.blocks);
        } catch {
          return this.#fail(res, method, 'blocks is not JSON', 'invalid_blocks_format');
        }
      }
    } else if (type.startsWith('application/json')) body = JSON.parse(raw) as Json;
    else return this.#fail(res, method, `content-type ${type}`);
    if ('token' in body) return this.#fail(res, method, 'the token must travel in the Authorization header, not the body');
    const call: SlackCall = { method, body, at: Date.now() };
    this.calls.push(call);
    const needs = (...keys: string[]) => keys.filter((k) => typeof body[k] !== 'string' || (body[k] as string).length === 0);
    switch (method) {
      case 'chat.postMessage': {
        const missing = needs('channel', 'text');
        if (missing.length > 0) return this.#fail(res, method, `missing ${missing.join(', ')}`);
        const problems = blockProblems(body.blocks);
        if (problems.length > 0) return this.#fail(res, method, problems.join('; '), 'invalid_blocks');
        const ts = `${Math.floor(Date.now() / 1000)}.${String(++this.#seq).padStart(6, '0')}`;
        call.ts = ts;
        this.messages.set(ts, { channel: String(body.channel), ts, text: String(body.text), blocks: body.blocks as Json[] });
        return this.#reply(res, { ok: true, channel: body.channel, ts, message: { type: 'message', ts, text: body.text, blocks: body.blocks } });
      }
      case 'chat.update': {
        const missing = needs('channel', 'ts', 'text');
        if (missing.length > 0) return this.#fail(res, method, `missing ${missing.join(', ')}`);
        const m = this.messages.get(String(body.ts));
        if (!m || m.channel !== body.channel) return this.#fail(res, method, `no message ${String(body.ts)} in ${String(body.channel)}`, 'message_not_found');
        const problems = blockProblems(body.blocks);
        if (problems.length > 0) return this.#fail(res, method, problems.join('; '), 'invalid_blocks');
        this.messages.set(m.ts, { ...m, text: String(body.text), blocks: body.blocks as Json[] });
        return this.#reply(res, { ok: true, channel: m.channel, ts: m.ts, text: body.text });
      }
      case 'chat.postEphemeral': {
        const missing = needs('channel', 'user', 'text');
        if (missing.length > 0) return this.#fail(res, method, `missing ${missing.join(', ')}`);
        return this.#reply(res, { ok: true, message_ts: `${Math.floor(Date.now() / 1000)}.${String(++this.#seq).padStart(6, '0')}` });
      }
      case 'users.info': {
        const missing = needs('user');
        if (missing.length > 0) return this.#fail(res, method, `missing ${missing.join(', ')}`);
        const u = this.users.get(String(body.user));
        if (!u) return this.#reply(res, { ok: false, error: 'user_not_found' });
        return this.#reply(res, { ok: true, user: { id: body.user, team_id: TEAM, deleted: u.deleted ?? false, is_bot: u.is_bot ?? false, profile: { ...(u.email ? { email: u.email } : {}) } } });
      }
      default:
        return this.#fail(res, method, 'unexpected method', 'unknown_method');
    }
  }

  /** A `block_actions` payload for pressing `actionId` on the current message, as Slack builds it. */
  click(intentId: string, actionId: string, user: string, reason?: string, channel = CHANNEL): Json {
    const m = this.messageFor(intentId, channel);
    if (!m) throw new Error(`no message for ${intentId}`);
    // A client that has not redrawn yet still shows the buttons as first posted.
    const shown = m.blocks.some((b) => b.type === 'actions') ? m.blocks : (this.postsFor(intentId, channel)[0]!.body.blocks as Json[]);
    const actions = shown.find((b) => b.type === 'actions') as { block_id: string; elements: Json[] } | undefined;
    const button = actions?.elements.find((e) => e.action_id === actionId);
    if (!actions || !button) throw new Error(`no ${actionId} button on the message of ${intentId}`);
    const input = shown.find((b) => b.type === 'input') as { block_id: string; element: { action_id: string; type: string } } | undefined;
    const values: Json = input ? { [input.block_id]: { [input.element.action_id]: { type: input.element.type, value: reason ?? null } } } : {};
    return {
      type: 'block_actions',
      user: { id: user, username: user.toLowerCase(), name: user.toLowerCase(), team_id: TEAM },
      api_app_id: 'A0WRIT',
      token: 'legacy-verification-token',
      trigger_id: '1234.5678.abcdef',
      container: { type: 'message', message_ts: m.ts, channel_id: m.channel, is_ephemeral: false },
      team: { id: TEAM, domain: 'corp' },
      enterprise: null,
      is_enterprise_install: false,
      channel: { id: m.channel, name: 'approvals' },
      message: { type: 'message', ts: m.ts, text: m.text, blocks: m.blocks, bot_id: 'B0WRIT' },
      state: { values },
      response_url: 'https://hooks.slack.invalid/actions/T0TEST/1/x',
      actions: [{ action_id: actionId, block_id: actions.block_id, text: button.text, value: button.value, style: button.style, type: 'button', action_ts: `${Date.now() / 1000}` }],
    };
  }
}

/** Posts an interaction to a bot's endpoint, signed as Slack signs it (unless told otherwise). */
async function sendInteraction(url: string, payload: Json, o: { secret?: string; timestamp?: number; signature?: string } = {}): Promise<number> {
  const body = new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
  const ts = String(o.timestamp ?? Math.floor(Date.now() / 1000));
  const sig =
    o.signature ??
    `v0=${createHmac('sha256', o.secret ?? SIGNING_SECRET)
      .update(`v0:${ts}:${body}`)
      .digest('hex')}`;
  const r = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-slack-request-timestamp': ts, 'x-slack-signature': sig } });
  await r.text();
  return r.status;
}

// ---------------------------------------------------------------------------------------

let s: Stack;
const slack = new FakeSlack();
const conns: NatsConnection[] = [];
const bots: Bot[] = [];
const adapters: SlackAdapter[] = [];
const logLines: Json[] = [];
let botToken = '';
/** Intents earlier tests left pending, and ones they saw decided: a bot started later posts the former only. */
const leftPending: string[] = [];
const decided: string[] = [];
let log: Logger;

const rows = async (note: string) => Number((await s.admin.query('SELECT count(*)::int AS n FROM events WHERE note = $1', [note])).rows[0].n);
const agent = async (groups = ['agents'], sub = 'agent-1', actFor?: string) => s.client(await mintDevToken(s.dev, { sub, groups, audience: 'writ', ttlSec: 600, ...(actFor ? { actFor } : {}) }));
const approver = async (sub: string, groups = ['approvers']) => s.client(await s.approverToken(sub, groups));
const blocksText = (m: PostedMessage | undefined) => JSON.stringify(m?.blocks ?? []);
const outcomeText = (m: PostedMessage | undefined) => String((m?.blocks.find((b) => b.block_id === 'writ_outcome') as { text?: { text?: string } } | undefined)?.text?.text ?? '');
const ephemeralsTo = (user: string) => slack.callsOf('chat.postEphemeral').filter((c) => c.body.user === user);

async function decisionPublished(intentId: string): Promise<boolean> {
  const jsm = await jetstreamManager(s.nc);
  const m = await jsm.streams.getMessage(s.names.streams.approvals, { last_by_subj: s.names.approvalDecision(intentId) }).catch(() => null);
  return m !== null;
}

/** Submits an intent that needs approval and waits until the bot has posted it. */
async function pendingIntent(note: string, o: { groups?: string[]; actFor?: string; justification?: string; sql?: string } = {}) {
  const c = await agent(o.groups ?? ['agents'], 'agent-1', o.actFor);
  const first = await c.run({ target: 'db', sql: o.sql ?? `INSERT INTO events (note) VALUES ('${note}')`, justification: o.justification ?? `ticket for ${note}` });
  expect(first.status).toBe('pending');
  await eventually(() => slack.messageFor(first.intentId), `the Slack post of ${note}`);
  // The bot stores where it posted only once Slack has answered the post: a press sent before
  // that (no human is that quick) is refused as not this bot's message (seen once in CI).
  await eventually(async () => (await bots[0]!.lookup(first.intentId))?.ref, `the stored post of ${note}`);
  return { c, id: first.intentId, sessionId: first.sessionId };
}

beforeAll(async () => {
  await slack.start();
  slack.users.set('U0DAVE', { email: 'Dave@Corp.Example' });
  slack.users.set('U0MALLORY', { email: 'mallory@elsewhere.example' });
  s = await startStack({
    config: {
      limits: { sweepIntervalMs: 200 },
      approvals: { trustedBots: [{ iss: DEV_ISSUER, sub: 'slack-bot', publicKey: BOT_KEY.publicKey }] },
      policy: {
        rules: [
          { id: 'ask', effect: 'require_approval', groups: ['agents'], targets: ['db'], mode: 'write', approval: { groups: ['approvers'], count: 1, timeoutSec: 60 } },
          { id: 'ask-hasty', effect: 'require_approval', groups: ['hasty'], targets: ['db'], mode: 'write', approval: { groups: ['approvers'], count: 1, timeoutSec: 2 } },
          { id: 'ask-window', effect: 'require_approval', groups: ['windowed'], targets: ['db'], mode: 'write', approval: { groups: ['approvers'], count: 1, timeoutSec: 60, windowMaxSec: 900 } },
        ],
      },
    },
  });
  botToken = await s.approverToken('slack-bot', ['bots']);
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const line of chunk.toString().split('\n')) if (line.trim()) logLines.push(JSON.parse(line) as Json);
      cb();
    },
  });
  log = createLogger({ name: 'approver-test', level: 'debug', destination: sink });
  const config = parseSlackBotConfig({
    name: 'slack',
    prefix: s.names.prefix,
    channel: CHANNEL,
    teamId: TEAM,
    botToken: { value: SLACK_TOKEN },
    signingSecret: { value: SIGNING_SECRET },
    slackApiUrl: slack.url,
    listen: { host: '127.0.0.1', port: 0 },
    users: { U0CAROL: { sub: 'carol', groups: ['approvers'] }, U0GINA: { sub: 'gina', groups: ['analysts'] } },
    emails: { 'dave@corp.example': { sub: 'dave', groups: ['approvers'] } },
    writToken: { value: botToken },
    signingKey: { value: BOT_KEY.privateKeyPem },
  });
  // Two replicas of the same bot, each with its own NATS connection and endpoint.
  for (let i = 0; i < 2; i++) {
    const nc = await connect({ servers: s.nats.url });
    conns.push(nc);
    const adapter = new SlackAdapter({ config, log: log.child({ replica: i }) });
    const bot = new Bot({ name: config.name, nc, names: s.names, adapter, log: log.child({ replica: i }) });
    await bot.start();
    bots.push(bot);
    adapters.push(adapter);
  }
});

afterAll(async () => {
  for (const b of bots) await b.stop().catch(() => undefined);
  for (const nc of conns) await nc.close().catch(() => undefined);
  await s?.stop();
  await slack.stop();
});

describe('slack approver bot', () => {
  it('posts each pending request exactly once with two bot replicas running', async () => {
    const c = await agent();
    const submitted = await Promise.all(Array.from({ length: 8 }, (_, i) => c.run({ target: 'db', sql: `INSERT INTO events (note) VALUES ('once-${i}')`, justification: 'ticket 42' })));
    for (const o of submitted) expect(o.status).toBe('pending');
    await eventually(() => submitted.every((o) => slack.postsFor(o.intentId).length > 0), 'every request posted');
    await sleep(1_500); // time for a second replica to post a duplicate, if it were going to
    for (const o of submitted) expect(slack.postsFor(o.intentId)).toHaveLength(1);

    const post = slack.postsFor(submitted[0]!.intentId)[0]!;
    expect(post.body.channel).toBe(CHANNEL);
    const blocks = post.body.blocks as Json[];
    const json = JSON.stringify(blocks);
    expect(json).toContain("INSERT INTO events (note) VALUES ('once-0')");
    expect(json).toContain('`agent-1`');
    expect(json).toContain('`ask`');
    expect(json).toContain('ticket 42');
    expect(json).toContain('insert · writes public.events');
    const buttons = (blocks.find((b) => b.type === 'actions') as { elements: Json[] }).elements;
    expect(buttons.map((b) => [b.action_id, b.value])).toEqual([
      [ACTION_APPROVE, submitted[0]!.intentId],
      [ACTION_DENY, submitted[0]!.intentId],
    ]);
    expect(blocks.some((b) => b.type === 'input')).toBe(true);
    expect(slack.problems).toEqual([]);
  });

  it('runs the intent once on a signed Approve and redraws the message with the outcome', async () => {
    const { c, id, sessionId } = await pendingIntent('slack-approved');
    decided.push(id);
    // The press reaches the other replica's endpoint: any replica can handle any message.
    expect(await sendInteraction(adapters[1]!.url!, slack.click(id, ACTION_APPROVE, 'U0CAROL', 'looks right'))).toBe(200);
    expect((await c.wait(id)).status).toBe('succeeded');
    expect(await rows('slack-approved')).toBe(1);
    const m = await eventually(() => (outcomeText(slack.messageFor(id)).includes('Approved') ? slack.messageFor(id) : undefined), 'the outcome drawn');
    expect(outcomeText(m)).toContain('`carol`');
    expect(m.blocks.some((b) => b.type === 'actions' || b.type === 'input')).toBe(false);
    expect(blocksText(m)).toContain('<@U0CAROL> (`carol`) approved');
    const votes = (await readSession({ nc: s.nc, names: s.names, sessionId })).filter((e) => e.type === 'approval.vote');
    expect(votes.map((e) => e.payload)).toEqual([expect.objectContaining({ by: 'carol', via: 'slack:slack-bot', verdict: 'approve', counted: true })]);
    // A second press after the end changes nothing and runs nothing.
    expect(await sendInteraction(adapters[0]!.url!, slack.click(id, ACTION_APPROVE, 'U0CAROL'))).toBe(200);
    await eventually(() => ephemeralsTo('U0CAROL').some((e) => String(e.body.text).includes('already ended')), 'the already-ended reply');
    expect(await rows('slack-approved')).toBe(1);
    expect(slack.problems).toEqual([]);
  });

  it('refuses a bad signature and a stale timestamp with 401 and publishes nothing', async () => {
    const { c, id } = await pendingIntent('slack-bad-sig');
    leftPending.push(id);
    const press = slack.click(id, ACTION_APPROVE, 'U0CAROL');
    const url = adapters[0]!.url!;
    expect(await sendInteraction(url, press, { secret: 'not-the-signing-secret' })).toBe(401);
    expect(await sendInteraction(url, press, { signature: 'v0=' + '0'.repeat(64) })).toBe(401);
    expect(await sendInteraction(url, press, { signature: 'garbage' })).toBe(401);
    // Correctly signed, but 301 seconds old: a replay.
    expect(await sendInteraction(url, press, { timestamp: Math.floor(Date.now() / 1000) - 301 })).toBe(401);
    const noHeaders = await fetch(url, { method: 'POST', body: new URLSearchParams({ payload: JSON.stringify(press) }).toString(), headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(noHeaders.status).toBe(401);
    expect((await fetch(url.replace('/slack/interactions', '/other'), { method: 'POST' })).status).toBe(404);
    await sleep(500);
    expect(await decisionPublished(id)).toBe(false);
    expect(await c.status(id)).toBe('pending');
    expect(logLines.filter((l) => l.msg === 'slack interaction refused: bad signature or timestamp').map((l) => l.reason)).toEqual(expect.arrayContaining(['mismatch', 'stale', 'missing']));
  });

  it('refuses an unmapped Slack user and lets a user mapped by e-mail through users.info approve', async () => {
    const { c, id } = await pendingIntent('slack-email');
    expect(await sendInteraction(adapters[0]!.url!, slack.click(id, ACTION_APPROVE, 'U0MALLORY'))).toBe(200);
    const refusal = await eventually(() => ephemeralsTo('U0MALLORY')[0], 'the refusal to mallory');
    expect(refusal.body.text).toContain('not mapped');
    expect(refusal.body.channel).toBe(CHANNEL);
    expect(slack.callsOf('users.info').map((u) => u.body.user)).toContain('U0MALLORY');
    await sleep(300);
    expect(await decisionPublished(id)).toBe(false);
    expect(await c.status(id)).toBe('pending');

    expect(await sendInteraction(adapters[0]!.url!, slack.click(id, ACTION_APPROVE, 'U0DAVE'))).toBe(200);
    expect((await c.wait(id)).status).toBe('succeeded');
    expect(await rows('slack-email')).toBe(1);
    await eventually(() => outcomeText(slack.messageFor(id)).includes('`dave`'), 'the outcome naming dave');
  });

  it('shows a vote the broker refused with its code: a mapped approver outside the approver groups, and self-approval', async () => {
    const { c, id } = await pendingIntent('slack-refused', { actFor: 'carol' });
    expect(await sendInteraction(adapters[0]!.url!, slack.click(id, ACTION_APPROVE, 'U0GINA'))).toBe(200);
    await eventually(() => blocksText(slack.messageFor(id)).includes('WRIT_APPROVER_NOT_ALLOWED'), 'the refusal drawn');
    expect(await sendInteraction(adapters[0]!.url!, slack.click(id, ACTION_APPROVE, 'U0CAROL'))).toBe(200);
    await eventually(() => blocksText(slack.messageFor(id)).includes('WRIT_SELF_APPROVAL'), 'the self-approval refusal drawn');
    await eventually(() => ephemeralsTo('U0CAROL').some((e) => String(e.body.text).includes('WRIT_SELF_APPROVAL')), 'the private refusal');
    expect(await c.status(id)).toBe('pending');
    // The buttons stay: someone else may still decide.
    expect(slack.messageFor(id)!.blocks.some((b) => b.type === 'actions')).toBe(true);
    expect(await rows('slack-refused')).toBe(0);
  });

  it('needs a reason to deny; a denial with one rejects, never runs, and is drawn', async () => {
    const { c, id } = await pendingIntent('slack-denied');
    expect(await sendInteraction(adapters[0]!.url!, slack.click(id, ACTION_DENY, 'U0CAROL'))).toBe(200);
    await eventually(() => ephemeralsTo('U0CAROL').some((e) => String(e.body.text).includes('needs a reason')), 'the reason reminder');
    expect(await decisionPublished(id)).toBe(false);
    expect(await sendInteraction(adapters[0]!.url!, slack.click(id, ACTION_DENY, 'U0CAROL', 'not during the freeze <!here>'))).toBe(200);
    const o = await c.wait(id);
    expect(o.status).toBe('rejected');
    expect(o.error?.message).toContain('not during the freeze');
    const text = await eventually(() => (outcomeText(slack.messageFor(id)).includes('Denied') ? outcomeText(slack.messageFor(id)) : undefined), 'the denial drawn');
    expect(text).toContain('not during the freeze &lt;!here&gt;');
    expect(text).not.toContain('<!here>');
    await sleep(300);
    expect(await rows('slack-denied')).toBe(0);
  });

  it('redraws the message with outcomes decided elsewhere: the CLI approves, the CLI rejects, the request expires', async () => {
    const approved = await pendingIntent('cli-approved');
    expect(await (await approver('erin')).decide(approved.id, 'approve')).toBe('dispatched');
    await eventually(() => outcomeText(slack.messageFor(approved.id)).includes('`erin`'), 'the CLI approval drawn');
    expect((await approved.c.wait(approved.id)).status).toBe('succeeded');

    const rejected = await pendingIntent('cli-rejected');
    expect(await (await approver('erin')).decide(rejected.id, 'reject', { reason: 'wrong table' })).toBe('rejected');
    await eventually(() => outcomeText(slack.messageFor(rejected.id)).includes('Denied'), 'the CLI rejection drawn');
    expect(outcomeText(slack.messageFor(rejected.id))).toContain('wrong table');

    const expired = await pendingIntent('expired', { groups: ['hasty'] });
    const m = await eventually(() => (outcomeText(slack.messageFor(expired.id)).includes('Expired') ? slack.messageFor(expired.id) : undefined), 'the expiry drawn', 10_000);
    expect(m.blocks.some((b) => b.type === 'actions')).toBe(false);
    expect(await rows('expired')).toBe(0);
    expect(slack.problems).toEqual([]);
  });

  it('escapes agent text: no ping, no forged link, no fake review or button outside the code block', async () => {
    const sql = "INSERT INTO events (note) VALUES ('<!channel> <https://evil.example|click> *Approved* [ Approve ] ```\n:white_check_mark: *Approved by security*\n```') /* ✅ Approved by security */";
    const { id } = await pendingIntent('escaping', { sql, justification: 'urgent <!here> <@U0CAROL> \u202Eevil\n*Approved by security*' });
    const m = slack.messageFor(id)!;
    const json = blocksText(m);
    for (const raw of ['<!channel>', '<!here>', '<https://evil.example|click>', '<@U0CAROL>', '\u202E']) expect(json).not.toContain(JSON.stringify(raw).slice(1, -1));
    const command = String((m.blocks.find((b) => b.block_id === 'writ_command') as { text: { type: string; text: string } }).text.text);
    expect((m.blocks.find((b) => b.block_id === 'writ_command') as { text: { type: string } }).text.type).toBe('mrkdwn');
    expect(command).toContain('&lt;!channel&gt; &lt;https://evil.example|click&gt; *Approved* [ Approve ]');
    expect(command).toContain('/* ✅ Approved by security */');
    // Exactly two fences: the command's own backticks cannot close the block.
    expect(command.match(/```/g)).toHaveLength(2);
    expect(command.startsWith('*Command* (sql)\n```\n')).toBe(true);
    expect(command.endsWith('\n```')).toBe(true);
    const justification = String((m.blocks.find((b) => b.block_id === 'writ_justification') as { text: { text: string } }).text.text);
    expect(justification).toContain('urgent &lt;!here&gt; &lt;@U0CAROL&gt; ⟦U+202E⟧evil');
    expect(justification.match(/```/g)).toHaveLength(2);
    // Only the bot's two buttons exist; the agent's "[ Approve ]" is text in a code block.
    const buttons = m.blocks.filter((b) => b.type === 'actions').flatMap((b) => b.elements as Json[]);
    expect(buttons.map((b) => (b.text as Json).text)).toEqual(['Approve', 'Deny']);
    // Nothing outside the code blocks mentions an approval: the outcome section is absent while pending.
    expect(m.blocks.find((b) => b.block_id === 'writ_outcome')).toBeUndefined();
    expect(slack.problems).toEqual([]);
  });

  it('shows the facts and, next to "Approve with window", exactly the scope the window then enforces', async () => {
    const c = await agent(['windowed'], 'agent-slack-win', '<!here> alice');
    const first = await c.run({ target: 'db', sql: "UPDATE events SET note = 'slack-window' WHERE id = 1; INSERT INTO events (note) VALUES ('slack-window')" });
    expect(first.status).toBe('pending');
    const m = await eventually(() => slack.messageFor(first.intentId), 'the windowed post');
    const text = (id: string) => String((m.blocks.find((b) => b.block_id === id) as { text?: { text?: string } } | undefined)?.text?.text ?? '');
    // The classifier's facts: kinds, tables, WHERE presence.
    expect(text('writ_facts')).toContain('update · writes public.events · has WHERE');
    expect(text('writ_facts')).toContain('insert · writes public.events');
    // The scope, from the request's windowScope, escaped; placed right before the buttons.
    const scope = (await jetstreamManager(s.nc).then((j) => j.streams.getMessage(s.names.streams.approvals, { last_by_subj: s.names.approvalRequest('db') })))!.json<{
      windowScope: Record<string, unknown>;
    }>().windowScope;
    expect(scope).toMatchObject({ rule: 'ask-window', actFor: '<!here> alice', shapes: ['insert:public.events', 'update:public.events'], maxSec: 900 });
    const w = text('writ_window');
    expect(w).toContain('for 15m and without asking again');
    expect(w).toContain('requester `agent-slack-win`');
    expect(w).toContain('acting for `&lt;!here&gt; alice`');
    expect(w).not.toContain('<!here>');
    expect(w).toContain('rule `ask-window`');
    expect(w).toContain(`policy version \`${String(scope.policyVersion)}\``);
    expect(w).toContain('```\ninsert:public.events\nupdate:public.events\n```');
    const ids = m.blocks.map((b) => b.block_id);
    expect(ids.indexOf('writ_window')).toBeLessThan(ids.indexOf(ACTIONS_BLOCK));
    const buttons = (m.blocks.find((b) => b.type === 'actions') as { elements: Json[] }).elements;
    expect(buttons.map((b) => [b.action_id, (b.text as Json).text])).toEqual([
      [ACTION_APPROVE, 'Approve'],
      [ACTION_APPROVE_WINDOW, 'Approve with 15m window'],
      [ACTION_DENY, 'Deny'],
    ]);

    expect(await sendInteraction(adapters[0]!.url!, slack.click(first.intentId, ACTION_APPROVE_WINDOW, 'U0CAROL'))).toBe(200);
    expect((await c.wait(first.intentId)).status).toBe('succeeded');
    // The window granted holds that scope; the same shapes run without asking, another shape asks again.
    const kv = await new Kvm(s.nc).open(s.names.buckets.windows);
    const keys: string[] = [];
    for await (const k of await kv.keys()) keys.push(k);
    const windows = await Promise.all(keys.map(async (k) => (await kv.get(k))!.json<Record<string, unknown>>()));
    const granted = windows.find((x) => x.sub === 'agent-slack-win')!;
    expect({ rule: granted.rule, target: granted.target, actFor: granted.actFor, policyVersion: granted.policyVersion, shapes: granted.shapes }).toEqual({
      rule: scope.rule,
      target: scope.target,
      actFor: scope.actFor,
      policyVersion: scope.policyVersion,
      shapes: scope.shapes,
    });
    expect(Number(granted.expiresAt) - Number(granted.createdAt)).toBe(900_000);
    expect((await c.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('slack-window-2')" })).status).toBe('succeeded');
    expect((await c.run({ target: 'db', sql: 'DELETE FROM events WHERE id > 0' })).status).toBe('pending');
    expect(slack.problems).toEqual([]);
  });

  it("never writes the Slack token, the signing secret or the bot's Writ token to its logs", () => {
    const all = JSON.stringify(logLines);
    expect(logLines.length).toBeGreaterThan(0);
    for (const secret of [SLACK_TOKEN, SIGNING_SECRET, botToken]) expect(all).not.toContain(secret);
  });
});

describe('terminal approver', () => {
  it('prints requests with control characters made visible and runs the intent approved through its input', async () => {
    const input = new PassThrough();
    let out = '';
    const output = new Writable({
      write(chunk: Buffer, _e, cb) {
        out += chunk.toString();
        cb();
      },
    });
    const nc = await connect({ servers: s.nats.url });
    const bot = await startTerminalApprover({ nc, prefix: s.names.prefix, token: await s.approverToken('tess', ['approvers']), input, output, log });
    try {
      const c = await agent();
      const p = await c.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('terminal-approved') /* \u001b[2J\u001b[1A\r━━ ok */", justification: 'from the terminal' });
      expect(p.status).toBe('pending');
      await eventually(() => out.includes(`approval requested: ${p.intentId}`), 'the request printed');
      expect(out).not.toContain('\u001b');
      expect(out).toContain('⟦U+001B⟧[2J');
      expect(out).toMatch(/ {3}│ INSERT INTO events/);
      input.write(`deny ${p.intentId}\n`);
      await eventually(() => out.includes('a denial needs a reason'), 'the usage reminder');
      input.write(`approve ${p.intentId.slice(0, 10)} fine by me\n`);
      await eventually(() => out.includes(`${p.intentId}: dispatched`), 'the vote answered');
      expect((await c.wait(p.intentId)).status).toBe('succeeded');
      expect(await rows('terminal-approved')).toBe(1);
      await eventually(() => out.includes(`━━ ${p.intentId}: dispatched by tess`), 'the outcome printed');
    } finally {
      await bot.stop();
      await nc.close();
    }
  });
});

describe('terminal approver: a fresh token per vote', () => {
  const terminal = async (token: string | (() => Promise<string>)) => {
    const input = new PassThrough();
    const lines = { out: '' };
    const output = new Writable({
      write(chunk: Buffer, _e, cb) {
        lines.out += chunk.toString();
        cb();
      },
    });
    const nc = await connect({ servers: s.nats.url });
    const bot = await startTerminalApprover({ nc, prefix: s.names.prefix, token, input, output, log });
    return {
      input,
      lines,
      stop: async () => {
        await bot.stop();
        await nc.close();
      },
    };
  };

  it('votes on several requests with a token command run once per vote (here `writ token --approver` on the local stack)', async () => {
    const cfg = join(s.dir, 'terminal-token.json');
    writeFileSync(cfg, JSON.stringify({ prefix: s.names.prefix, identity: { devIssuer: { enabled: true, dir: s.config.identity.devIssuer.dir } } }));
    const cli = join(import.meta.dirname, '..', 'cmd', 'cli.ts');
    const t = await terminal(commandTokenSource(`"${process.execPath}" --import tsx "${cli}" token --sub tess --groups approvers --approver --ttl 2m --config "${cfg}"`));
    try {
      const c = await agent();
      const ids: string[] = [];
      for (const note of ['terminal-fresh-1', 'terminal-fresh-2']) {
        const p = await c.run({ target: 'db', sql: `INSERT INTO events (note) VALUES ('${note}')` });
        expect(p.status).toBe('pending');
        ids.push(p.intentId);
        await eventually(() => t.lines.out.includes(`approval requested: ${p.intentId}`), 'the request printed');
      }
      for (const id of ids) {
        t.input.write(`approve ${id}\n`);
        await eventually(() => t.lines.out.includes(`${id}: dispatched`) || t.lines.out.includes(`${id}: refused`), 'the vote answered', 30_000);
      }
      for (const id of ids) expect(t.lines.out).toContain(`${id}: dispatched`);
      // Dispatched is not yet run: the worker inserts after the vote is answered.
      for (const id of ids) await eventually(async () => (await c.status(id)) === 'succeeded', `${id} to succeed`, 30_000);
      expect(await rows('terminal-fresh-1')).toBe(1);
      expect(await rows('terminal-fresh-2')).toBe(1);
    } finally {
      await t.stop();
    }
  }, 60_000);

  it('with one fixed token, votes once: the second vote is refused (WRIT_VOTE_TOKEN_SPENT) and the terminal says how to get fresh tokens', async () => {
    const t = await terminal(await s.approverToken('tess', ['approvers']));
    try {
      const c = await agent();
      const a = await c.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('terminal-once-1')" });
      const b = await c.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('terminal-once-2')" });
      await eventually(() => t.lines.out.includes(`approval requested: ${b.intentId}`), 'the requests printed');
      t.input.write(`approve ${a.intentId}\n`);
      await eventually(() => t.lines.out.includes(`${a.intentId}: dispatched`), 'the first vote counted');
      t.input.write(`approve ${b.intentId}\n`);
      await eventually(() => t.lines.out.includes(`${b.intentId}: refused WRIT_VOTE_TOKEN_SPENT`), 'the second vote refused');
      expect(t.lines.out).toContain('WRIT_TOKEN_COMMAND');
      expect(await c.status(b.intentId)).toBe('pending');
    } finally {
      await t.stop();
    }
  });
});

describe('approver/main.ts', () => {
  it('runs the Slack bot from a config file, approves through it, and drains on SIGTERM', async () => {
    const dir = s.dir;
    writeFileSync(join(dir, 'slack-token'), `${SLACK_TOKEN}\n`);
    writeFileSync(join(dir, 'writ-token'), botToken);
    writeFileSync(join(dir, 'vote-key.pem'), BOT_KEY.privateKeyPem, { mode: 0o600 });
    const file = join(dir, 'approver.yaml');
    writeFileSync(
      file,
      [
        'name: child',
        `prefix: ${s.names.prefix}`,
        'channel: C0CHILD',
        `teamId: ${TEAM}`,
        'botToken: { file: slack-token }',
        'signingSecret: { env: CHILD_SIGNING_SECRET }',
        'writToken: { file: writ-token }',
        'signingKey: { file: vote-key.pem }',
        `slackApiUrl: ${slack.url}`,
        'listen: { host: 127.0.0.1, port: 0 }',
        'users: { U0CAROL: { sub: carol, groups: [approvers] } }',
        `nats: { url: "${s.nats.url}" }`,
      ].join('\n'),
    );
    const child = spawn(process.execPath, ['--import', 'tsx', 'approver/main.ts', '--config', file], {
      cwd: process.cwd(),
      env: { ...process.env, CHILD_SIGNING_SECRET: SIGNING_SECRET, WRIT_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    try {
      const url = await eventually(
        () => {
          for (const line of stderr.split('\n')) {
            if (line.includes('slack interactions endpoint listening')) return String((JSON.parse(line) as Json).url);
          }
          return undefined;
        },
        'the child endpoint',
        30_000,
      );
      const c = await agent();
      const p = await c.run({ target: 'db', sql: "INSERT INTO events (note) VALUES ('child-approved')" });
      await eventually(() => slack.messageFor(p.intentId, 'C0CHILD'), 'the child post', 30_000);
      // Started late: it posted what is still pending, and skipped what was decided before it looked.
      for (const id of leftPending) await eventually(() => slack.messageFor(id, 'C0CHILD'), 'a late post of a pending request');
      for (const id of decided) expect(slack.postsFor(id, 'C0CHILD')).toHaveLength(0);
      // A press on another bot's message for the same intent is not the child's to act on.
      expect(await sendInteraction(url, slack.click(p.intentId, ACTION_APPROVE, 'U0CAROL'))).toBe(200);
      await eventually(() => ephemeralsTo('U0CAROL').some((e) => String(e.body.text).includes('does not belong')), 'the not-ours reply');
      expect(await c.status(p.intentId)).toBe('pending');
      expect(await sendInteraction(url, slack.click(p.intentId, ACTION_APPROVE, 'U0CAROL', undefined, 'C0CHILD'))).toBe(200);
      expect((await c.wait(p.intentId)).status).toBe('succeeded');
      expect(await rows('child-approved')).toBe(1);
      await eventually(() => outcomeText(slack.messageFor(p.intentId, 'C0CHILD')).includes('Approved'), 'the child redraw');
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    for (const secret of [SLACK_TOKEN, SIGNING_SECRET, botToken]) expect(stderr).not.toContain(secret);
  });
});
