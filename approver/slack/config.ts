/**
 * The Slack approver bot's config: parsed once at start with a strict schema, then
 * frozen. Errors name the exact key. Secrets are references (`env`, `file`, `value`),
 * resolved when needed and never logged.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { absNatsPaths, formatIssues, isSubjectToken, names, NatsConfigSchema, SecretRefSchema, WritError, type SecretRef } from '../../schemas/index.ts';

const ApproverIdentitySchema = z.strictObject({
  /** The approver's subject, as the broker compares it with the requester and counts votes. */
  sub: z.string().min(1).max(256),
  /** Checked by the broker against the rule's approver groups. */
  groups: z.array(z.string().min(1)).default([]),
});
export type ApproverIdentity = z.infer<typeof ApproverIdentitySchema>;

const SLACK_USER = /^[UW][A-Z0-9]{2,20}$/;

const SlackBotConfigSchema = z.strictObject({
  /** The bot's name, one subject token: durable `<prefix>-approver-<name>`, bucket `<prefix>_approver_<name>`. */
  name: z.string().refine(isSubjectToken, 'a bot name is 1-128 characters of A-Z a-z 0-9 _ -'),
  /** Subject prefix of the Writ deployment. Default `writ`. */
  prefix: z
    .string()
    .default('writ')
    .refine((p) => {
      try {
        names(p);
        return true;
      } catch {
        return false;
      }
    }, 'a prefix is a lower-case letter then up to 31 of a-z 0-9 _ -'),
  /** The channel id (`C…`) requests are posted to. */
  channel: z.string().regex(/^[CG][A-Z0-9]{2,20}$/, 'a Slack channel id such as C0123ABCD'),
  /** When set, interactions from any other workspace are refused. */
  teamId: z
    .string()
    .regex(/^T[A-Z0-9]{2,20}$/)
    .optional(),
  /** The Slack bot token (`xoxb-…`). */
  botToken: SecretRefSchema,
  /** The Slack app's signing secret; every interaction is verified with it. */
  signingSecret: SecretRefSchema,
  /** Base URL of the Slack Web API. Default `https://slack.com/api/`; tests point it at a fake. */
  slackApiUrl: z.url().optional(),
  /** Where the interactions endpoint (`POST /slack/interactions`) listens. Default 127.0.0.1:3000. */
  listen: z
    .strictObject({
      host: z.string().min(1).default('127.0.0.1'),
      port: z.number().int().min(0).max(65_535).default(3000),
    })
    .default({ host: '127.0.0.1', port: 3000 }),
  /** Slack user id → approver identity. Checked first. */
  users: z.record(z.string().regex(SLACK_USER, 'a Slack user id such as U0123ABCD'), ApproverIdentitySchema).default({}),
  /** Verified e-mail (from `users.info`, scope `users:read.email`) → approver identity; compared case-insensitively. */
  emails: z.record(z.email(), ApproverIdentitySchema).default({}),
  /** The bot's own Writ JWT; its issuer and subject must be listed in the broker's `approvals.trustedBots`. Re-read for every vote, so a file can be rotated. */
  writToken: SecretRefSchema,
  /**
   * The bot's Ed25519 private key (PKCS#8 PEM) that signs every vote; its public key is listed
   * with the bot's issuer and subject in the broker's `approvals.trustedBots`. Never sent on NATS.
   * `node approver/main.ts keygen --out FILE` makes one. Re-read for every vote, like writToken.
   */
  signingKey: SecretRefSchema,
  /**
   * The bot's NATS connection: the same keys as Writ's own `nats` section (servers, creds,
   * nkeySeed, user/password, token, tls, inboxPrefix; docs/configuration.md), with the same
   * environment overrides. `pass` is the deprecated spelling of `password`.
   */
  nats: z
    .preprocess((n) => {
      if (n && typeof n === 'object' && 'pass' in n && !('password' in n)) {
        const { pass, ...rest } = n as Record<string, unknown>;
        return { ...rest, password: pass };
      }
      return n;
    }, NatsConfigSchema)
    .default({ replicas: 1 }),
  /** How long to wait for a broker's answer to a vote, ms. Default 10 s. */
  decisionTimeoutMs: z.number().int().positive().max(120_000).default(10_000),
  /** Replicas of the bot's KV bucket. Default 1. */
  replicas: z.number().int().min(1).max(5).default(1),
  log: z.strictObject({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info') }).default({ level: 'info' }),
});
export type SlackBotConfig = z.output<typeof SlackBotConfigSchema>;

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

/** Validates, fills defaults, checks cross-field rules, resolves relative `file` refs against `baseDir`, and freezes. */
export function parseSlackBotConfig(input: unknown, baseDir = process.cwd()): Readonly<SlackBotConfig> {
  const r = SlackBotConfigSchema.safeParse(input);
  if (!r.success) throw new WritError('WRIT_CONFIG_INVALID', `invalid approver config:\n${formatIssues(r.error)}`);
  const c = r.data;
  if (Object.keys(c.users).length === 0 && Object.keys(c.emails).length === 0) {
    throw new WritError('WRIT_CONFIG_INVALID', 'users, emails: map at least one Slack user or e-mail to an approver identity');
  }
  const emails: Record<string, ApproverIdentity> = {};
  for (const [k, v] of Object.entries(c.emails)) {
    const lower = k.toLowerCase();
    if (emails[lower]) throw new WritError('WRIT_CONFIG_INVALID', `emails.${k}: the same address (ignoring case) is mapped twice`);
    emails[lower] = v;
  }
  c.emails = emails;
  const abs = (ref: SecretRef): SecretRef => ('file' in ref && !isAbsolute(ref.file) ? { file: resolve(baseDir, ref.file) } : ref);
  c.botToken = abs(c.botToken);
  c.signingSecret = abs(c.signingSecret);
  c.writToken = abs(c.writToken);
  c.signingKey = abs(c.signingKey);
  absNatsPaths(c.nats, (p) => (isAbsolute(p) ? p : resolve(baseDir, p)));
  return deepFreeze(c);
}

/** Reads a YAML or JSON config file; relative paths inside resolve against the file's folder. */
export function loadSlackBotConfig(file: string): Readonly<SlackBotConfig> {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new WritError('WRIT_CONFIG_INVALID', `cannot read approver config ${file}: ${(e as Error).message}`, { cause: e });
  }
  return parseSlackBotConfig(raw, dirname(resolve(file)));
}
