/**
 * The Slack adapter: posts and redraws requests with `chat.postMessage` / `chat.update`,
 * and turns a verified button press into a vote. The vote is cast as the approver
 * identity the pressing Slack user maps to (by user id from the config, else by the
 * e-mail `users.info` reports), with the bot's own Writ token; a user who maps to no
 * identity is told so privately and nothing is published. The broker's answer is drawn
 * in the message (and, for a refusal, told privately with its code).
 */
import { LogLevel, WebClient, type Logger as SlackLogger } from '@slack/web-api';
import { z } from 'zod';
import type { Logger } from '../../lib/index.ts';
import { IdSchema, names as makeNames, readSecret, WritError, type Names } from '../../schemas/index.ts';
import { botSigningKey, publishDecision, type DecisionAnswer } from '../decide.ts';
import type { ApprovalView, ApproverAdapter, BotContext, MessageRef } from '../types.ts';
import { ACTION_APPROVE, ACTION_APPROVE_WINDOW, ACTION_DENY, REASON_ACTION, REASON_BLOCK, renderRequest } from './blocks.ts';
import type { ApproverIdentity, SlackBotConfig } from './config.ts';
import { escapeSlackText, inlineCode } from './escape.ts';
import { startInteractionServer, type InteractionServer } from './server.ts';

/** The part of a `block_actions` payload the adapter reads; Slack sends more, which is ignored. */
const BlockActionsSchema = z.object({
  type: z.literal('block_actions'),
  team: z.object({ id: z.string() }).nullish(),
  user: z.object({ id: z.string().min(1) }),
  container: z.object({ channel_id: z.string().optional(), message_ts: z.string().optional() }).optional(),
  channel: z.object({ id: z.string() }).optional(),
  message: z.object({ ts: z.string() }).optional(),
  state: z.object({ values: z.record(z.string(), z.record(z.string(), z.object({ value: z.string().nullish() }).loose())) }).optional(),
  actions: z.array(z.object({ action_id: z.string(), value: z.string().optional() }).loose()).min(1),
});
type BlockActions = z.infer<typeof BlockActionsSchema>;

type Mapping = { ok: true; identity: ApproverIdentity } | { ok: false; why: 'unmapped' | 'lookup_failed' };

const USER_CACHE_MS = 60_000;

/** Routes @slack/web-api's own logging into pino (it redacts tokens itself; pino redacts by path too). */
function slackLogger(log: Logger): SlackLogger {
  let level = LogLevel.WARN;
  const text = (msg: unknown[]) => msg.map((m) => (typeof m === 'string' ? m : JSON.stringify(m))).join(' ');
  return {
    debug: (...m: unknown[]) => log.debug(text(m)),
    info: (...m: unknown[]) => log.info(text(m)),
    warn: (...m: unknown[]) => log.warn(text(m)),
    error: (...m: unknown[]) => log.error(text(m)),
    setLevel: (l: LogLevel) => {
      level = l;
    },
    getLevel: () => level,
    setName: () => undefined,
  };
}

export interface SlackAdapterOptions {
  config: Readonly<SlackBotConfig>;
  log: Logger;
}

export class SlackAdapter implements ApproverAdapter {
  readonly kind = 'slack';
  readonly #c: Readonly<SlackBotConfig>;
  readonly #log: Logger;
  readonly #web: WebClient;
  readonly #names: Names;
  readonly #users = new Map<string, { mapping: Mapping; until: number }>();
  #ctx?: BotContext;
  #server?: InteractionServer;

  constructor(o: SlackAdapterOptions) {
    this.#c = o.config;
    this.#log = o.log.child({ adapter: 'slack' });
    this.#names = makeNames(o.config.prefix);
    // A missing or wrong vote key is a start failure, not a refusal at the first vote.
    botSigningKey(readSecret(o.config.signingKey, 'signingKey'));
    this.#web = new WebClient(readSecret(o.config.botToken, 'botToken'), {
      ...(o.config.slackApiUrl ? { slackApiUrl: o.config.slackApiUrl } : {}),
      logger: slackLogger(this.#log),
      logLevel: LogLevel.WARN,
      // A few quick retries; the bot's own redelivery (with back-off) handles longer outages.
      retryConfig: { retries: 2, factor: 2, minTimeout: 300, maxTimeout: 2_000 },
      timeout: 10_000,
    });
  }

  /** The interactions endpoint once started (`http://host:port/slack/interactions`). */
  get url(): string | undefined {
    return this.#server?.url;
  }

  async start(ctx: BotContext): Promise<void> {
    this.#ctx = ctx;
    this.#server = await startInteractionServer({
      host: this.#c.listen.host,
      port: this.#c.listen.port,
      signingSecret: readSecret(this.#c.signingSecret, 'signingSecret'),
      log: this.#log,
      onPayload: (p) => this.#onPayload(p),
    });
    this.#log.info({ url: this.#server.url }, 'slack interactions endpoint listening');
  }

  async stop(): Promise<void> {
    await this.#server?.close();
  }

  async post(view: ApprovalView): Promise<MessageRef> {
    const { text, blocks } = renderRequest(view);
    const r = await this.#web.chat.postMessage({ channel: this.#c.channel, text, blocks, unfurl_links: false, unfurl_media: false });
    if (!r.channel || !r.ts) throw new Error('chat.postMessage answered without channel or ts');
    return { channel: r.channel, ts: r.ts };
  }

  async update(ref: MessageRef, view: ApprovalView): Promise<void> {
    const { channel, ts } = ref;
    if (!channel || !ts) throw new Error('not a Slack message reference');
    const { text, blocks } = renderRequest(view);
    await this.#web.chat.update({ channel, ts, text, blocks });
  }

  async #tell(channel: string | undefined, user: string, text: string): Promise<void> {
    if (!channel) return;
    try {
      await this.#web.chat.postEphemeral({ channel, user, text });
    } catch (e) {
      this.#log.warn({ err: e, user }, 'could not send an ephemeral reply');
    }
  }

  /** The approver identity of a Slack user: by id from the config, else by e-mail through users.info. */
  async #approver(user: string): Promise<Mapping> {
    if (Object.hasOwn(this.#c.users, user)) return { ok: true, identity: this.#c.users[user]! };
    if (Object.keys(this.#c.emails).length === 0) return { ok: false, why: 'unmapped' };
    const cached = this.#users.get(user);
    if (cached && cached.until > Date.now()) return cached.mapping;
    let mapping: Mapping;
    try {
      const r = await this.#web.users.info({ user });
      const u = r.user;
      const email = u && !u.deleted && !u.is_bot ? u.profile?.email?.toLowerCase() : undefined;
      mapping = email && Object.hasOwn(this.#c.emails, email) ? { ok: true, identity: this.#c.emails[email]! } : { ok: false, why: 'unmapped' };
    } catch (e) {
      this.#log.warn({ err: e, user }, 'users.info failed');
      return { ok: false, why: 'lookup_failed' };
    }
    this.#users.set(user, { mapping, until: Date.now() + USER_CACHE_MS });
    return mapping;
  }

  async #onPayload(raw: unknown): Promise<void> {
    const parsed = BlockActionsSchema.safeParse(raw);
    if (!parsed.success) return; // other interaction kinds are not ours
    const p = parsed.data;
    const action = p.actions.find((a) => a.action_id === ACTION_APPROVE || a.action_id === ACTION_APPROVE_WINDOW || a.action_id === ACTION_DENY);
    if (!action) return;
    const ctx = this.#ctx!;
    const user = p.user.id;
    const channel = p.container?.channel_id ?? p.channel?.id;
    const ts = p.container?.message_ts ?? p.message?.ts;
    if (this.#c.teamId && p.team?.id !== this.#c.teamId) {
      this.#log.warn({ team: p.team?.id, user }, 'interaction from another workspace ignored');
      return;
    }
    const intentId = IdSchema.safeParse(action.value);
    const rec = intentId.success ? await ctx.lookup(intentId.data) : undefined;
    // The button must sit on the very message this bot posted for that intent.
    if (!intentId.success || !rec?.ref || rec.ref.channel !== channel || rec.ref.ts !== ts) {
      await this.#tell(channel, user, 'This button does not belong to an approval request this bot posted; nothing was sent.');
      return;
    }
    if (rec.outcome) {
      await this.#tell(channel, user, `This request has already ended (${rec.outcome.status}); nothing was sent.`);
      return;
    }
    const mapping = await this.#approver(user);
    if (!mapping.ok) {
      this.#log.warn({ user, intentId: intentId.data, why: mapping.why }, 'vote from an unmapped Slack user refused');
      await this.#tell(
        channel,
        user,
        mapping.why === 'unmapped'
          ? "You are not mapped to a Writ approver identity, so your vote was not sent. Ask an admin to add your Slack user or e-mail to the approver bot's config."
          : 'Your Slack profile could not be looked up, so your vote was not sent. Try again in a minute.',
      );
      return;
    }
    const verdict = action.action_id === ACTION_DENY ? 'reject' : 'approve';
    const reason = reasonOf(p);
    if (verdict === 'reject' && !reason) {
      await this.#tell(channel, user, 'A denial needs a reason: type it in the Reason box, then press Deny. Nothing was sent.');
      return;
    }
    if (!rec.request) {
      await this.#tell(channel, user, 'This request is not fully stored here yet; nothing was sent. Try again in a moment.');
      return;
    }
    // The window granted is the one the message showed next to the button: the scope's length, no more.
    const windowSec = action.action_id === ACTION_APPROVE_WINDOW ? rec.request.windowScope?.maxSec : undefined;
    if (action.action_id === ACTION_APPROVE_WINDOW && !windowSec) {
      await this.#tell(channel, user, 'This request offers no access window; nothing was sent.');
      return;
    }
    await this.#vote(ctx, {
      intentId: intentId.data,
      commandSha256: rec.request.commandSha256,
      verdict,
      user,
      channel,
      identity: mapping.identity,
      ...(reason ? { reason } : {}),
      ...(windowSec ? { windowSec } : {}),
    });
  }

  async #vote(
    ctx: BotContext,
    v: { intentId: string; commandSha256: string; verdict: 'approve' | 'reject'; user: string; channel: string | undefined; identity: ApproverIdentity; reason?: string; windowSec?: number },
  ): Promise<void> {
    let answer: DecisionAnswer;
    try {
      answer = await publishDecision({
        nc: ctx.nc,
        names: this.#names,
        intentId: v.intentId,
        commandSha256: v.commandSha256,
        verdict: v.verdict,
        token: readSecret(this.#c.writToken, 'writToken'),
        signingKey: botSigningKey(readSecret(this.#c.signingKey, 'signingKey')),
        onBehalfOf: { sub: v.identity.sub, groups: [...v.identity.groups], via: 'slack' },
        timeoutMs: this.#c.decisionTimeoutMs,
        ...(v.reason ? { reason: v.reason } : {}),
        ...(v.windowSec ? { windowSec: v.windowSec } : {}),
      });
    } catch (e) {
      const timeout = e instanceof WritError && e.code === 'WRIT_TIMEOUT';
      this.#log.error({ err: e, intentId: v.intentId, user: v.user }, 'vote not confirmed');
      await this.#tell(
        v.channel,
        v.user,
        timeout ? 'No broker answered in time. Your vote is stored and counts when a broker reads it; the message will show the outcome.' : 'Your vote could not be sent. Try again.',
      );
      return;
    }
    this.#log.info({ intentId: v.intentId, user: v.user, sub: v.identity.sub, verdict: v.verdict, accepted: answer.accepted }, 'vote sent');
    await ctx.note(v.intentId, {
      at: Date.now(),
      platformUser: v.user,
      sub: v.identity.sub,
      verdict: v.verdict,
      accepted: answer.accepted,
      ...(answer.accepted ? { status: answer.status } : { code: answer.code }),
    });
    if (!answer.accepted) {
      await this.#tell(v.channel, v.user, `Your vote was refused: ${inlineCode(answer.code, 60)} ${escapeSlackText(answer.message.slice(0, 500))}`);
    }
  }
}

function reasonOf(p: BlockActions): string | undefined {
  const v = p.state?.values[REASON_BLOCK]?.[REASON_ACTION]?.value;
  const t = typeof v === 'string' ? v.trim() : '';
  return t.length > 0 ? t.slice(0, 2_000) : undefined;
}
