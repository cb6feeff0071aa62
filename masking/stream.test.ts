import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { WritError } from '../schemas/errors.ts';
import { LineMasker, maskText, type LineMaskerOptions, type MaskingSpecInput } from './index.ts';

/** Feeds the chunks, checks every push returns only whole lines, and joins all output. */
function run(chunks: Array<Buffer | string>, spec: MaskingSpecInput = {}, opts: LineMaskerOptions = {}): string {
  const m = new LineMasker(spec, opts);
  let out = '';
  for (const c of chunks) {
    const o = m.push(c);
    expect(o === '' || o.endsWith('\n') || (opts.maxHeldBytes ?? Infinity) < Infinity).toBe(true);
    out += o;
  }
  return out + m.end();
}

/** Splits a buffer into pieces of the given size. */
function pieces(b: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < b.length; i += size) out.push(b.subarray(i, i + size));
  return out;
}

const TOKENS = {
  github: 'ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8',
  jwt: 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U',
  aws: 'AKIAIOSFODNN7EXAMPLE',
  card: '4111 1111 1111 1111',
  email: 'alice@example.com',
};

describe('LineMasker', () => {
  it('catches a token split at every byte position of its line', () => {
    for (const [kind, token] of Object.entries(TOKENS)) {
      const line = Buffer.from(`Grüße → export T=${token} ✓\n`);
      const want = maskText(line.toString(), {}).text;
      expect(want, kind).not.toContain(token);
      for (let i = 0; i <= line.length; i++) {
        const m = new LineMasker({});
        const first = m.push(line.subarray(0, i));
        expect(first, `${kind} @${i}`).toBe(i === line.length ? want : '');
        const out = first + m.push(line.subarray(i)) + m.end();
        expect(out, `${kind} @${i}`).toBe(want);
      }
    }
  });

  it('catches tokens fed one byte at a time among other lines', () => {
    const text = `ok\n${TOKENS.github} and ${TOKENS.email}\r\nplain ${TOKENS.jwt}\nlast line without newline ${TOKENS.aws}`;
    const out = run(pieces(Buffer.from(text), 1));
    expect(out).toBe(`ok\n[MASKED:github_token] and [MASKED:email]\r\nplain [MASKED:jwt]\nlast line without newline [MASKED:aws_key]`);
  });

  it('keeps multi-byte characters intact when a chunk ends inside one', () => {
    const text = 'héllo wörld — ✓ 😀\n';
    expect(run(pieces(Buffer.from(text), 1))).toBe(text);
  });

  describe('private keys across lines and chunks', () => {
    const pem = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
    const body = pem.split('\n').filter((l) => l && !l.startsWith('-----'));

    const noBodyLeaks = (out: string) => {
      for (const l of body) expect(out).not.toContain(l.slice(0, 16));
    };

    it('masks a BEGIN…END block as one unit, whatever the chunking', () => {
      const text = `$ cat id_rsa\n${pem}$ echo done\ndone\n`;
      for (const size of [1, 7, 64, 1000]) {
        const out = run(pieces(Buffer.from(text), size));
        expect(out, `chunk ${size}`).toBe('$ cat id_rsa\n[MASKED:private_key]\n$ echo done\ndone\n');
      }
    });

    it('masks a block with text before BEGIN and after END on the same lines', () => {
      const text = `key: ${pem.trim()} (end)\nnext\n`;
      expect(run(pieces(Buffer.from(text), 5))).toBe('key: [MASKED:private_key] (end)\nnext\n');
    });

    it('masks a partial block: BEGIN and body with no END', () => {
      const partial = pem.split('\n').slice(0, 6).join('\n');
      expect(run([`${partial}\n`, 'Connection closed.\n'])).toBe('[MASKED:private_key]\nConnection closed.\n');
      const out = run([partial]);
      expect(out).toBe('[MASKED:private_key]');
      noBodyLeaks(out);
    });

    it('masks a key printed from its middle (tail key.pem)', () => {
      const tail = pem.trim().split('\n').slice(-5).join('\n');
      const out = run(pieces(Buffer.from(`$ tail -5 key.pem\n${tail}\n$ \n`), 3));
      expect(out).toBe('$ tail -5 key.pem\n[MASKED:private_key]\n$ \n');
      noBodyLeaks(out);
    });

    it('emits base64 lines that turn out not to be a key, unchanged', () => {
      const b64 = Buffer.alloc(200, 7)
        .toString('base64')
        .match(/.{1,64}/g)!
        .join('\n');
      expect(run([`${b64}\nthat was base64\n`])).toBe(`${b64}\nthat was base64\n`);
    });

    it('drops the rest of a key block that outgrows the bound, leaking none of it', () => {
      const big = generateKeyPairSync('rsa', { modulusLength: 4096 }).privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
      const out = run([`before\n${big}after\n`], {}, { maxHeldBytes: 4096 });
      expect(out).toBe('before\n[MASKED:private_key]\nafter\n');
      for (const l of big.split('\n').filter((x) => x && !x.startsWith('-----'))) expect(out).not.toContain(l.slice(0, 16));
    });

    it('holds no block when the private_key detector is off', () => {
      const m = new LineMasker({ detectors: ['email'] });
      expect(m.push('-----BEGIN PRIVATE KEY-----\n')).toBe('-----BEGIN PRIVATE KEY-----\n');
    });
  });

  describe('bounded holding', () => {
    it('flushes a line with no newline once it passes maxHeldBytes', () => {
      const m = new LineMasker({}, { maxHeldBytes: 4096 });
      let out = '';
      for (let i = 0; i < 100; i++) {
        out += m.push('word '.repeat(200));
        expect(out.length, `after chunk ${i}`).toBeGreaterThan((i + 1) * 1000 - 4096 - 1);
      }
      out += m.end();
      expect(out).toBe('word '.repeat(20_000));
    });

    it('masks secrets on both sides of and across every forced cut', () => {
      const unit = `pad ${'x'.repeat(300)} ${TOKENS.github} ${TOKENS.email} aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY `;
      const text = unit.repeat(200);
      for (const size of [997, 4096, 10_000]) {
        const out = run(pieces(Buffer.from(text), size), {}, { maxHeldBytes: 4096 });
        expect(out, `chunk ${size}`).toBe(maskText(text, {}).text);
        expect(out).not.toContain('ghp_');
        expect(out).not.toContain('wJalr');
      }
    });

    it('keeps masking a long single-line key cut by the bound', () => {
      const body = Buffer.alloc(9000, 3).toString('base64');
      const text = `x -----BEGIN PRIVATE KEY-----${body}`;
      const out = run(pieces(Buffer.from(text), 1000), {}, { maxHeldBytes: 4096 });
      expect(out).not.toMatch(/[A-Za-z0-9+/]{40}/);
      expect(out.startsWith('x [MASKED:private_key]')).toBe(true);
    });

    it('refuses a bound too small to hold a key', () => {
      expect(() => new LineMasker({}, { maxHeldBytes: 100 })).toThrow(WritError);
    });
  });

  it('reports what it masked', () => {
    const m = new LineMasker({});
    m.push(`${TOKENS.github}\n${TOKENS.github} ${TOKENS.email}\n`);
    m.end();
    expect(m.summary()).toEqual({ maskedSpans: 3, reasons: { 'detector:github_token': 2, 'detector:email': 1 } });
  });

  it('cannot be pushed to after end', () => {
    const m = new LineMasker({});
    m.end();
    expect(() => m.push('x')).toThrow(WritError);
  });
});

describe('LineMasker with keys back to back', () => {
  const pem = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString().trim();
  const [begin, ...rest] = pem.split('\n');
  const end = rest.pop()!;
  it('holds a second key that opens on the END line of the first', () => {
    const text = `${begin}\n${rest.join('\n')}\n${end} then ${begin}\n${rest.join('\n')}\n${end}\nok\n`;
    expect(run(pieces(Buffer.from(text), 3))).toBe('[MASKED:private_key] then [MASKED:private_key]\nok\n');
  });
  it('holds a second key that opens on the END line of a dropped, oversized first', () => {
    const body = Array.from({ length: 120 }, () => 'A'.repeat(64)).join('\n');
    const text = `${begin}\n${body}\n${end} ${begin}\n${rest.join('\n')}\n${end}\nok\n`;
    const out = run([text], {}, { maxHeldBytes: 4096 });
    expect(out).toBe('[MASKED:private_key]\n [MASKED:private_key]\nok\n');
    for (const l of rest) expect(out).not.toContain(l.slice(0, 12));
  });
});
