import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { maskRows, maskText } from './index.ts';

const KEY = Buffer.from('0123456789abcdef0123456789abcdef');
const tag = (v: string, key = KEY) => `hmac:${createHmac('sha256', key).update(v).digest('hex').slice(0, 16)}`;

describe('redact', () => {
  it('replaces a hit with its reason and nothing of the value', () => {
    expect(maskText('to alice@example.com', {}).text).toBe('to [MASKED:email]');
  });
});

describe('partial', () => {
  const p = (s: string) => maskText(s, { strategy: 'partial' }).text;
  it('keeps the first letter and domain of an e-mail', () => {
    expect(p('mail john@example.com')).toBe('mail j***@example.com');
    expect(p('j@example.com x')).toBe('***@example.com x');
  });
  it('keeps only the last four digits of cards, phones and SSNs, and their separators', () => {
    expect(p('4111-1111-1111-1111')).toBe('****-****-****-1111');
    expect(p('078-05-1120')).toBe('***-**-1120');
    expect(p('+1 (415) 555-2671')).toBe('+* (***) ***-2671');
  });
  it('keeps the country and the last four characters of an IBAN', () => {
    expect(p('DE89 3704 0044 0532 0130 00')).toBe('DE** **** **** **** **30 00');
  });
  it('reveals no secret material of tokens, only their kind', () => {
    expect(p('ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8')).toBe('ghp_***');
    expect(p('AKIAIOSFODNN7EXAMPLE')).toBe('AKIA***');
    expect(p('xoxb-1234567890-abcdefghijkl')).toBe('xoxb-***');
    expect(p('postgres://u:s3cret@h/db')).toBe('postgres://u:***@h/db');
    const jwt = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U';
    expect(p(jwt)).toBe('eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.***');
  });
  it('guesses the shape of a whole column value: e-mail, phone-like digits, or first letter', () => {
    const fields = [{ name: 'v', origin: { table: 'public.t', column: 'v' } }];
    const spec = { columns: [{ column: 'public.t.v', strategy: 'partial' as const }] };
    const out = maskRows({ fields, rows: [['ann@example.com'], ['+44 20 7946 0958'], ['Annabel'], [1234], [123456789], [{ a: 1 }], [new Date(0)]] }, spec);
    expect(out.rows.map((r) => r[0])).toEqual(['a***@example.com', '+** ** **** 0958', 'A***', '****', '*****6789', '[MASKED:column]', '[MASKED:column]']);
  });
});

describe('hash', () => {
  it('is HMAC-SHA-256 under the deployment key, 16 hex digits', () => {
    expect(maskText('alice@example.com', { strategy: 'hash' }, { hmacKey: KEY }).text).toBe(tag('alice@example.com'));
  });
  it('depends on the key, so a value cannot be confirmed by hashing guesses without it', () => {
    const other = Buffer.alloc(32, 1);
    expect(maskText('alice@example.com', { strategy: 'hash' }, { hmacKey: other }).text).toBe(tag('alice@example.com', other));
    expect(tag('alice@example.com', other)).not.toBe(tag('alice@example.com'));
  });
  it('hashes the same value alike in a column and in free text, so masked data still joins', () => {
    const fields = [
      { name: 'email', origin: { table: 'public.customers', column: 'email' } },
      { name: 'note', origin: { table: 'public.tickets', column: 'note' } },
    ];
    const out = maskRows({ fields, rows: [['alice@example.com', 'from alice@example.com']] }, { strategy: 'hash', columns: [{ column: '*.*.email' }] }, { hmacKey: KEY });
    expect(out.rows[0]).toEqual([tag('alice@example.com'), `from ${tag('alice@example.com')}`]);
  });
  it('hashes non-text values by a canonical text form', () => {
    const fields = [{ name: 'v', origin: { table: 'public.t', column: 'v' } }];
    const spec = { strategy: 'hash' as const, columns: [{ column: 'public.t.v' }] };
    const out = maskRows({ fields, rows: [[42], [new Date(0)], [{ a: 1 }], [Buffer.from('hi')], [null]] }, spec, { hmacKey: KEY });
    expect(out.rows.map((r) => r[0])).toEqual([tag('42'), tag('1970-01-01T00:00:00.000Z'), tag('{"a":1}'), tag('hi'), null]);
  });
});
