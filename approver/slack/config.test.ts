import { describe, expect, it } from 'vitest';
import { parseSlackBotConfig } from './config.ts';

const base = {
  name: 'slack',
  channel: 'C0APPROVALS',
  botToken: { env: 'SLACK_BOT_TOKEN' },
  signingSecret: { file: 'secrets/signing' },
  writToken: { file: '/run/writ/token' },
  signingKey: { file: 'secrets/vote-key.pem' },
  users: { U0CAROL: { sub: 'carol', groups: ['approvers'] } },
};

describe('slack approver config', () => {
  it('fills defaults, resolves relative secret files, lower-cases e-mails, and freezes', () => {
    const c = parseSlackBotConfig({ ...base, emails: { 'Dave@Corp.Example': { sub: 'dave' } } }, '/etc/writ');
    expect(c.prefix).toBe('writ');
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 3000 });
    expect(c.signingSecret).toEqual({ file: '/etc/writ/secrets/signing' });
    expect(c.writToken).toEqual({ file: '/run/writ/token' });
    expect(c.signingKey).toEqual({ file: '/etc/writ/secrets/vote-key.pem' });
    expect(c.emails).toEqual({ 'dave@corp.example': { sub: 'dave', groups: [] } });
    expect(Object.isFrozen(c.users)).toBe(true);
  });

  it('names the exact key of an error', () => {
    expect(() => parseSlackBotConfig({ ...base, chanel: 'x' })).toThrow(/\(root\): .*"chanel"/);
    expect(() => parseSlackBotConfig({ ...base, users: { carol: { sub: 'carol' } } })).toThrow(/users\.carol: /);
    expect(() => parseSlackBotConfig({ ...base, botToken: 'xoxb-inline' })).toThrow(/botToken: /);
    expect(() => parseSlackBotConfig({ ...base, name: 'a.b' })).toThrow(/name: /);
    expect(() => parseSlackBotConfig({ ...base, slackApiUrl: 'not a url' })).toThrow(/slackApiUrl: /);
  });

  it("needs the bot's vote-signing key", () => {
    const { signingKey: _k, ...noKey } = base;
    expect(() => parseSlackBotConfig(noKey)).toThrow(/signingKey: /);
  });

  it('refuses a bot that nobody could use, and an address mapped twice', () => {
    expect(() => parseSlackBotConfig({ ...base, users: {} })).toThrow(/users, emails: map at least one/);
    expect(() => parseSlackBotConfig({ ...base, emails: { 'a@x.example': { sub: 'a' }, 'A@x.example': { sub: 'b' } } })).toThrow(/emails\.A@x\.example: /);
  });
});
