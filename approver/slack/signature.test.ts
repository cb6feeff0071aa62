import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { slackSignature, verifySlackSignature } from './signature.ts';

// The worked example in Slack's "Verifying requests from Slack".
const DOC_SECRET = '8f742231b10e8888abcd99yyyzzz85a5';
const DOC_TS = '1531420618';
const DOC_BODY =
  'token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c';
const DOC_SIG = 'v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503';
const at = (ts: string, deltaSec = 0) => (Number(ts) + deltaSec) * 1000;

describe('slack request signatures', () => {
  it("matches Slack's published example", () => {
    expect(slackSignature(DOC_SECRET, DOC_TS, DOC_BODY)).toBe(DOC_SIG);
    expect(verifySlackSignature({ secret: DOC_SECRET, timestamp: DOC_TS, signature: DOC_SIG, body: Buffer.from(DOC_BODY), now: at(DOC_TS, 60) })).toEqual({ ok: true });
  });

  it('refuses a request signed with another secret, a changed body, or a malformed signature', () => {
    const body = Buffer.from('payload=%7B%7D');
    const ts = '1700000000';
    const other = `v0=${createHmac('sha256', 'other').update(`v0:${ts}:${body}`).digest('hex')}`;
    const check = (signature: string | undefined, b = body) => verifySlackSignature({ secret: 's3cret', timestamp: ts, signature, body: b, now: at(ts) });
    expect(check(other)).toEqual({ ok: false, reason: 'mismatch' });
    expect(check(slackSignature('s3cret', ts, body), Buffer.from('payload=%7B%22x%22%7D'))).toEqual({ ok: false, reason: 'mismatch' });
    expect(check('v0=short')).toEqual({ ok: false, reason: 'mismatch' });
    expect(check(undefined)).toEqual({ ok: false, reason: 'missing' });
    expect(check(slackSignature('s3cret', ts, body))).toEqual({ ok: true });
  });

  it('refuses a timestamp more than five minutes away, in either direction, or not a number', () => {
    const body = Buffer.from('payload=%7B%7D');
    const ts = '1700000000';
    const sig = slackSignature('s3cret', ts, body);
    const check = (deltaSec: number) => verifySlackSignature({ secret: 's3cret', timestamp: ts, signature: sig, body, now: at(ts, deltaSec) });
    expect(check(300).ok).toBe(true);
    expect(check(301)).toEqual({ ok: false, reason: 'stale' });
    expect(check(-301)).toEqual({ ok: false, reason: 'stale' });
    expect(verifySlackSignature({ secret: 's3cret', timestamp: '1700000000.5', signature: sig, body, now: at(ts) })).toEqual({ ok: false, reason: 'missing' });
  });
});
