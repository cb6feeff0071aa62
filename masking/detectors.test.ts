import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { maskText, type DetectorName } from './index.ts';

/** Masks with one detector only, so a hit can only come from it. */
function only(detector: DetectorName, text: string): string {
  return maskText(text, { detectors: [detector] }).text;
}
function all(text: string): string {
  return maskText(text, {}).text;
}

describe('email', () => {
  it('masks addresses wherever they sit in text', () => {
    expect(only('email', 'contact alice.smith+news@mail.example.co.uk today')).toBe('contact [MASKED:email] today');
    expect(only('email', '<bob@example.com>,carol_x@sub.example.org')).toBe('<[MASKED:email]>,[MASKED:email]');
    expect(only('email', 'mailto:dave@example.io')).toBe('mailto:[MASKED:email]');
  });
  it('leaves near misses alone', () => {
    for (const s of ['user@localhost', 'a@b', '@example.com', 'x@1.2.3.4', 'twitter @handle here', 'ex@mple.c']) expect(only('email', s)).toBe(s);
  });
  it('scans in linear time however many @ signs a value holds', () => {
    const s = `${'a'.repeat(50_000)}@${'@b'.repeat(50_000)}`;
    const t = performance.now();
    expect(only('email', s)).toBe(s);
    expect(performance.now() - t).toBeLessThan(1000);
  });
});

describe('card', () => {
  it('masks Luhn-valid numbers of card brands, plain or grouped by spaces or dashes', () => {
    expect(only('card', 'visa 4111111111111111.')).toBe('visa [MASKED:card].');
    expect(only('card', '4111 1111 1111 1111')).toBe('[MASKED:card]');
    expect(only('card', 'mc 5555-5555-5555-4444 exp')).toBe('mc [MASKED:card] exp');
    expect(only('card', 'amex 3782 822463 10005')).toBe('amex [MASKED:card]');
    expect(only('card', 'card 4111 1111 1111 1111 12/25')).toBe('card [MASKED:card] 12/25');
  });
  it('does not mask a Luhn-invalid number', () => {
    expect(only('card', '4111 1111 1111 1112')).toBe('4111 1111 1111 1112');
  });
  it('does not mask Luhn-valid ids without a card-brand prefix or length', () => {
    // 1234567890123452 passes Luhn, but no brand issues numbers starting with 1.
    expect(only('card', 'order 1234567890123452')).toBe('order 1234567890123452');
    // A Visa prefix with an unissued length (17 digits).
    expect(only('card', '41111111111111113')).toBe('41111111111111113');
  });
  it('does not mask part of a longer digit run', () => {
    expect(only('card', '94111111111111111')).toBe('94111111111111111');
  });
});

describe('ssn', () => {
  it('masks dashed or spaced SSNs, including inside a cast error', () => {
    expect(only('ssn', 'ssn 078-05-1120 on file')).toBe('ssn [MASKED:ssn] on file');
    expect(only('ssn', '219 09 9999')).toBe('[MASKED:ssn]');
  });
  it('masks a bare nine-digit SSN only next to its keyword', () => {
    expect(only('ssn', 'SSN: 219099999')).toBe('SSN: [MASKED:ssn]');
    expect(only('ssn', 'social security number 219099999')).toBe('social security number [MASKED:ssn]');
    expect(only('ssn', 'order 219099999')).toBe('order 219099999');
  });
  it('does not mask numbers in never-issued ranges', () => {
    for (const s of ['000-12-3456', '666-12-3456', '900-12-3456', '987-65-4321', '123-00-4567', '123-45-0000', 'ssn 000123456']) expect(only('ssn', s)).toBe(s);
  });
  it('does not mask dates, phone numbers or mixed separators', () => {
    for (const s of ['2024-01-15', '415-555-2671', '078-05 1120', '1078-05-1120']) expect(only('ssn', s)).toBe(s);
  });
});

describe('iban', () => {
  it('masks mod-97-valid IBANs, grouped or not', () => {
    expect(only('iban', 'pay to DE89 3704 0044 0532 0130 00 please')).toBe('pay to [MASKED:iban] please');
    expect(only('iban', 'GB82WEST12345698765432')).toBe('[MASKED:iban]');
    expect(only('iban', 'FR1420041010050500013M02606')).toBe('[MASKED:iban]');
    expect(only('iban', 'DE89 3704 0044 0532 0130 00 EUR')).toBe('[MASKED:iban] EUR');
  });
  it('does not mask a mod-97-invalid IBAN', () => {
    expect(only('iban', 'DE89370400440532013001')).toBe('DE89370400440532013001');
  });
  it('does not mask a wrong length or an unknown country', () => {
    expect(only('iban', 'DE8937040044053201300')).toBe('DE8937040044053201300');
    expect(only('iban', 'ZZ89370400440532013000')).toBe('ZZ89370400440532013000');
  });
});

describe('phone', () => {
  it('masks international, NANP and trunk-prefixed national numbers', () => {
    expect(only('phone', 'call +1 (415) 555-2671 now')).toBe('call [MASKED:phone] now');
    expect(only('phone', '+14155552671')).toBe('[MASKED:phone]');
    expect(only('phone', '+44 20 7946 0958')).toBe('[MASKED:phone]');
    expect(only('phone', 'tel (415) 555-2671')).toBe('tel [MASKED:phone]');
    expect(only('phone', '415.555.2671')).toBe('[MASKED:phone]');
    expect(only('phone', '030 12345678')).toBe('[MASKED:phone]');
    expect(only('phone', '06 12 34 56 78')).toBe('[MASKED:phone]');
    expect(only('phone', 'call +1 415 555 2671 2024-01-01')).toBe('call [MASKED:phone] 2024-01-01');
  });
  it('does not mask dates, times, ids, amounts, versions or IPs', () => {
    for (const s of [
      '2024-01-15',
      '2024-01-15T10:30:00.000Z',
      '15.01.2024',
      '01/15/2024 1234',
      '05.01.2024 1030',
      'id 4155552671',
      'order 123456789',
      '1234567.89',
      'v10.12.3',
      '192.168.100.200',
      '123-456-7890',
      '10:30:00',
    ])
      expect(only('phone', s)).toBe(s);
  });
});

describe('aws_key', () => {
  it('masks access key ids and secret keys or session tokens next to their names', () => {
    expect(only('aws_key', 'id AKIAIOSFODNN7EXAMPLE')).toBe('id [MASKED:aws_key]');
    expect(only('aws_key', 'ASIAY34FZKBOKMUTVV7A')).toBe('[MASKED:aws_key]');
    expect(only('aws_key', 'aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY')).toBe('aws_secret_access_key = [MASKED:aws_key]');
    expect(only('aws_key', 'export AWS_SECRET_ACCESS_KEY="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"')).toBe('export AWS_SECRET_ACCESS_KEY="[MASKED:aws_key]"');
    expect(only('aws_key', '{"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}')).toBe('{"SecretAccessKey": "[MASKED:aws_key]"}');
    const token = 'IQoJb3JpZ2luX2VjE'.padEnd(300, 'A');
    expect(only('aws_key', `aws_session_token=${token}`)).toBe('aws_session_token=[MASKED:aws_key]');
  });
  it('does not mask ids of other AWS resources or a secret-shaped string without its name', () => {
    for (const s of ['AIDAJQABLZS4A3QDU576Q', 'AKIAIOSFODNN7EXAMPL', 'AKIAIOSFODNN7EXAMPLEX', 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY']) expect(only('aws_key', s)).toBe(s);
  });
});

describe('gcp_key', () => {
  it('masks API keys and the private_key of service-account JSON', () => {
    expect(only('gcp_key', 'key=AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe&x=1')).toBe('key=[MASKED:gcp_key]&x=1');
    const sa = '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBg\\n-----END PRIVATE KEY-----\\n", "client_email": "x"}';
    expect(only('gcp_key', sa)).toBe('{"type": "service_account", "private_key": "[MASKED:gcp_key]", "client_email": "x"}');
  });
  it('does not mask a too-short AIza string', () => {
    expect(only('gcp_key', 'AIzaSyDaGmWKa4JsXZ')).toBe('AIzaSyDaGmWKa4JsXZ');
  });
});

describe('github_token', () => {
  it('masks every GitHub token kind', () => {
    for (const p of ['ghp_', 'gho_', 'ghu_', 'ghs_', 'ghr_']) expect(only('github_token', `t=${p}A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8`)).toBe('t=[MASKED:github_token]');
    expect(only('github_token', 'github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789')).toBe('[MASKED:github_token]');
  });
  it('does not mask a prefix without a token', () => {
    for (const s of ['ghp_short', 'see ghp_ docs', 'xghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8']) expect(only('github_token', s)).toBe(s);
  });
});

describe('slack_token', () => {
  it('masks tokens and the secret path of webhook URLs', () => {
    expect(only('slack_token', 'xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx')).toBe('[MASKED:slack_token]');
    expect(only('slack_token', 'auth xoxp-1234-5678-abcdefabcdef')).toBe('auth [MASKED:slack_token]');
    expect(only('slack_token', 'POST https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX ok')).toBe('POST https://hooks.slack.com/services/[MASKED:slack_token] ok');
  });
  it('does not mask the word xoxo or a short prefix', () => {
    for (const s of ['hugs xoxo-bye', 'xoxb-123']) expect(only('slack_token', s)).toBe(s);
  });
});

describe('jwt', () => {
  const jwt = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U';
  it('masks a JWT whose header decodes to JSON with alg', () => {
    expect(only('jwt', `Authorization: Bearer ${jwt}`)).toBe('Authorization: Bearer [MASKED:jwt]');
  });
  it('does not mask dotted base64 whose header is not a JOSE header', () => {
    const notJose = `${Buffer.from('{"foo":"bar"}').toString('base64url')}.eyJzdWIiOiIxIn0.abc`;
    expect(only('jwt', notJose)).toBe(notJose);
    expect(only('jwt', 'eyJhbGciOiJIUzI1NiJ9 only one part')).toBe('eyJhbGciOiJIUzI1NiJ9 only one part');
  });
});

describe('private_key', () => {
  const pem = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  it('masks whole PEM blocks, keeping the text around them', () => {
    expect(only('private_key', `key:\n${pem}done.`)).toBe('key:\n[MASKED:private_key]\ndone.');
    expect(only('private_key', rsa.trim())).toBe('[MASKED:private_key]');
  });
  it('masks a block written on one line with escaped newlines (JSON, env files)', () => {
    expect(only('private_key', JSON.stringify({ k: pem }))).toBe('{"k":"[MASKED:private_key]\\n"}');
  });
  it('masks a partial block: BEGIN without END, and a body before END without BEGIN', () => {
    const lines = rsa.trim().split('\n');
    const head = lines.slice(0, 5).join('\n');
    expect(only('private_key', `${head}\n(truncated)`)).toBe('[MASKED:private_key]\n(truncated)');
    const tail = lines.slice(-4).join('\n');
    expect(only('private_key', `$ tail key.pem\n${tail}`)).toBe('$ tail key.pem\n[MASKED:private_key]');
  });
  it('leaves certificates and public keys alone', () => {
    const pub = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expect(only('private_key', pub)).toBe(pub);
  });
});

describe('url_password', () => {
  it('masks the password of a URL and nothing else', () => {
    expect(only('url_password', 'postgres://app:s3cr3t@db.example.com:5432/shop')).toBe('postgres://app:[MASKED:url_password]@db.example.com:5432/shop');
    expect(only('url_password', 'redis://:hunter2@cache:6379')).toBe('redis://:[MASKED:url_password]@cache:6379');
    expect(only('url_password', 'amqp://u:p@ss@host/')).toBe('amqp://u:[MASKED:url_password]@host/');
  });
  it('does not take a port and a path for a password', () => {
    for (const s of ['https://host:8080/x?to=a@b.com', 'https://user@host.com/', 'see http://example.com']) expect(only('url_password', s)).toBe(s);
  });
  it('owns a URL password even when the host looks like an e-mail domain', () => {
    expect(all('postgres://app:s3cr3t@db.example.com/shop')).toBe('postgres://app:[MASKED:url_password]@db.example.com/shop');
  });
});

describe('all detectors together', () => {
  it('mask every secret in one string and leave ordinary text as it was', () => {
    const s = 'Hi Alice, your order 100123 ships 2024-01-15 (ETA 3 days). Total 1234.56 EUR. id 5f0c7a5e-3b1d-4c9a-9e2f-0a1b2c3d4e5f';
    expect(all(s)).toBe(s);
    expect(all('alice@example.com 078-05-1120 ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8')).toBe('[MASKED:email] [MASKED:ssn] [MASKED:github_token]');
  });
  it('never leaves part of overlapping hits unmasked', () => {
    // An e-mail whose local part is a phone-looking run: the union of both spans is masked.
    const out = all('+14155552671@example.com');
    expect(out).not.toMatch(/4155552671|example\.com/);
  });
});

describe('adversarial input', () => {
  it('masks pathological values in roughly linear time, so a crafted cell cannot stall the worker', () => {
    const cases = [
      `x://${':a@b.cc '.repeat(20_000)}`,
      'a://'.repeat(30_000),
      'eyJ'.repeat(40_000),
      'eyJaaaaa.'.repeat(20_000),
      '4111-'.repeat(30_000),
      '01 '.repeat(40_000),
      '-----BEGIN PRIVATE KEY-----'.repeat(5_000),
      'AAAA\n-----END PRIVATE KEY-----'.repeat(5_000),
      'ssn '.repeat(40_000),
      `"private_key": "${'\\\\'.repeat(50_000)}`,
      'Key ('.repeat(20_000),
    ];
    const t = performance.now();
    for (const s of cases) maskText(s, { columns: [{ column: '*.*.email' }] });
    expect(performance.now() - t).toBeLessThan(10_000);
  });
});
