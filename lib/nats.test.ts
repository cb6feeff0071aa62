// One connection config: the `nats` section is validated at load, the environment overrides
// it in one place, and a server that refuses the credentials stops the start with its reason.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUser } from '@nats-io/nkeys';
import { parseConfig, WritError } from '../schemas/index.ts';
import { startNats, type NatsServerHandle } from '../test/helpers/index.ts';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { connectNats, flushingOncePerTurn, natsConnectionOptions, resolveNatsConfig } from './nats.ts';

const tmp = mkdtempSync(join(tmpdir(), 'writ-nats-'));
const failure = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(WritError);
    expect((e as WritError).code).toBe('WRIT_CONFIG_INVALID');
    return (e as Error).message;
  }
  throw new Error('expected a WRIT_CONFIG_INVALID');
};
const rejection = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
  } catch (e) {
    expect((e as WritError).code).toBe('WRIT_CONFIG_INVALID');
    return (e as Error).message;
  }
  throw new Error('expected a WRIT_CONFIG_INVALID');
};

describe('the nats section is validated at load, errors naming the key', () => {
  it('refuses two ways to authenticate at once, naming both', () => {
    expect(failure(() => parseConfig({ nats: { creds: 'a.creds', user: { value: 'u' }, password: { env: 'P' } } }))).toMatch(/nats\.user: conflicting authentication: creds and user\/password/);
    expect(failure(() => parseConfig({ nats: { nkeySeed: 'seed', token: { env: 'T' } } }))).toMatch(/nats\.token: .*nkeySeed and token/);
    expect(failure(() => parseConfig({ nats: { creds: 'a', nkeySeed: 'b' } }))).toMatch(/nats\.nkeySeed/);
  });

  it('refuses a password without a user, servers with url, a lone client cert, a bad inbox prefix and unknown keys', () => {
    expect(failure(() => parseConfig({ nats: { password: { env: 'P' } } }))).toMatch(/nats\.password: a password needs a user/);
    expect(failure(() => parseConfig({ nats: { url: 'nats://a:4222', servers: ['nats://b:4222'] } }))).toMatch(/nats\.url: give servers or the deprecated url/);
    expect(failure(() => parseConfig({ nats: { tls: { cert: 'c.pem' } } }))).toMatch(/nats\.tls: cert and key go together/);
    expect(failure(() => parseConfig({ nats: { inboxPrefix: '_INBOX.>' } }))).toMatch(/nats\.inboxPrefix/);
    expect(failure(() => parseConfig({ nats: { pass: { value: 'x' } } }))).toMatch(/nats: .*"pass"/);
  });

  it('resolves file paths against the config file folder and keeps url as an alias of servers', () => {
    const c = parseConfig({ nats: { url: 'nats://a:1,nats://b:2', creds: 'keys/agent.creds', tls: { ca: 'ca.pem' }, user: undefined } }, '/etc/writ');
    expect(c.nats.creds).toBe('/etc/writ/keys/agent.creds');
    expect(c.nats.tls?.ca).toBe('/etc/writ/ca.pem');
    expect(resolveNatsConfig(c.nats, {}).servers).toEqual(['nats://a:1', 'nats://b:2']);
  });
});

describe('environment overrides, applied in one place', () => {
  it('NATS_URL replaces the servers; no setting at all means the default URL', () => {
    expect(resolveNatsConfig({ servers: ['nats://cfg:4222'] }, { NATS_URL: 'nats://x:1, nats://y:2' }).servers).toEqual(['nats://x:1', 'nats://y:2']);
    expect(resolveNatsConfig(undefined, {}).servers).toEqual(['nats://127.0.0.1:4222']);
  });

  it('an authentication variable replaces the whole authentication of the file (no conflict with it)', () => {
    const r = resolveNatsConfig({ user: { value: 'u' }, password: { value: 'p' } }, { WRIT_NATS_CREDS: '/run/agent.creds' });
    expect(r).toMatchObject({ creds: '/run/agent.creds' });
    expect(r.user).toBeUndefined();
    expect(r.password).toBeUndefined();
    // Secrets stay references to the variable, read only when connecting.
    expect(resolveNatsConfig({ creds: '/x' }, { WRIT_NATS_USER: 'agent', WRIT_NATS_PASSWORD: 'pw', WRIT_NATS_INBOX_PREFIX: '_INBOX.agent' })).toEqual({
      servers: ['nats://127.0.0.1:4222'],
      user: { env: 'WRIT_NATS_USER' },
      password: { env: 'WRIT_NATS_PASSWORD' },
      inboxPrefix: '_INBOX.agent',
    });
  });

  it('variables that conflict with each other are refused by name, like the same keys in a file', () => {
    expect(failure(() => resolveNatsConfig(undefined, { WRIT_NATS_CREDS: '/a', WRIT_NATS_TOKEN: 't' }))).toMatch(
      /WRIT_NATS_CREDS, WRIT_NATS_TOKEN[\s\S]*nats\.token: conflicting authentication: creds and token/,
    );
    expect(failure(() => resolveNatsConfig(undefined, { WRIT_NATS_PASSWORD: 'p' }))).toMatch(/nats\.password: a password needs a user/);
    expect(failure(() => resolveNatsConfig(undefined, { WRIT_NATS_INBOX_PREFIX: 'evil.>' }))).toMatch(/nats\.inboxPrefix/);
  });

  it('a file it cannot read fails naming the key', () => {
    expect(failure(() => natsConnectionOptions(resolveNatsConfig({ creds: join(tmp, 'missing.creds') }, {}), 'n'))).toMatch(/nats\.creds: cannot read/);
    expect(failure(() => natsConnectionOptions(resolveNatsConfig({ tls: { ca: join(tmp, 'missing-ca.pem') } }, {}), 'n'))).toMatch(/nats\.tls\.ca: cannot read/);
    writeFileSync(join(tmp, 'ca.pem'), 'PEM');
    expect(natsConnectionOptions(resolveNatsConfig({ tls: { ca: join(tmp, 'ca.pem') } }, {}), 'n').tls).toEqual({ ca: 'PEM' });
  });
});

describe('against a real nats-server with auth', () => {
  let server: NatsServerHandle;
  const nkey = createUser();
  const seedFile = join(tmp, 'user.nk');

  beforeAll(async () => {
    writeFileSync(seedFile, new TextDecoder().decode(nkey.getSeed()));
    server = await startNats({
      jetstream: false,
      extraConfig: `authorization { users = [ { user: alice, password: "s3cret" }, { nkey: ${nkey.getPublicKey()} } ] }`,
    });
  }, 30_000);
  afterAll(async () => server?.stop());

  it('connects with user/password from secret refs and with an nkey seed file', async () => {
    writeFileSync(join(tmp, 'pw'), 's3cret\n');
    const a = await connectNats(resolveNatsConfig({ servers: [server.url], user: { value: 'alice' }, password: { file: join(tmp, 'pw') } }, {}), 't');
    await a.flush();
    await a.close();
    const b = await connectNats(resolveNatsConfig({ servers: [server.url], nkeySeed: seedFile }, {}), 't');
    await b.flush();
    await b.close();
  });

  it('fails at start with the server reason when the credentials are refused, without retrying forever', async () => {
    const wrong = await rejection(connectNats(resolveNatsConfig({ servers: [server.url], user: { value: 'alice' }, password: { value: 'nope' } }, {}), 't'));
    expect(wrong).toMatch(/refused user "alice".*Authorization Violation/i);
    expect(wrong).not.toContain('nope');
    const none = await rejection(connectNats(resolveNatsConfig({ servers: [server.url] }, {}), 't'));
    expect(none).toMatch(/no authentication.*Authorization Violation/i);
    const other = createUser();
    writeFileSync(join(tmp, 'other.nk'), new TextDecoder().decode(other.getSeed()));
    expect(await rejection(connectNats(resolveNatsConfig({ servers: [server.url], nkeySeed: join(tmp, 'other.nk') }, {}), 't'))).toMatch(/Authorization Violation/i);
  });

  it('takes the credentials from the environment when the file gives none', async () => {
    const env = { NATS_URL: server.url, WRIT_NATS_USER: 'alice', WRIT_NATS_PASSWORD: 's3cret' };
    Object.assign(process.env, env);
    try {
      const nc = await connectNats({}, 't');
      await nc.close();
    } finally {
      for (const k of Object.keys(env)) delete process.env[k];
    }
  });
});

describe('writes queued by many handlers in one turn of the event loop', () => {
  let server: NatsServerHandle;
  beforeAll(async () => {
    server = await startNats();
  });
  afterAll(async () => server?.stop());

  /** Publishes `n` messages, each after the previous one's continuation (as concurrent handlers do), counting socket writes. */
  async function publishApart(nc: NatsConnection, subject: string, n: number): Promise<number> {
    const transport = (nc as unknown as { protocol: { transport: { send(frame: Uint8Array): unknown } } }).protocol.transport;
    const send = transport.send.bind(transport);
    let writes = 0;
    transport.send = (frame) => {
      writes++;
      return send(frame);
    };
    for (let i = 0; i < n; i++) {
      nc.publish(subject, String(i));
      await Promise.resolve();
    }
    await new Promise((r) => setImmediate(r));
    transport.send = send;
    return writes;
  }

  it("go out in two socket writes (the first at once, the rest at the turn's end), complete and in order; a plain connection writes once per handler", async () => {
    const nc = await connectNats(server.url, 'coalesce');
    const plain = await connect({ servers: server.url });
    const reader = await connect({ servers: server.url });
    try {
      expect(flushingOncePerTurn(nc)).toBe(true);
      expect(flushingOncePerTurn(plain)).toBe(false);
      const got: string[] = [];
      const sub = reader.subscribe('coalesce.>', { callback: (_e, m) => void got.push(`${m.subject}:${m.string()}`) });
      await reader.flush();
      // The turn's first publish goes out as nats.js writes it; the other 99 in one write at the turn's end.
      expect(await publishApart(nc, 'coalesce.one', 100)).toBe(2);
      // The client's own behaviour, for contrast: one write per microtask that queued something.
      expect(await publishApart(plain, 'coalesce.plain', 100)).toBeGreaterThan(50);
      await nc.flush();
      await plain.flush();
      await reader.flush();
      const one = got.filter((g) => g.startsWith('coalesce.one:'));
      expect(one).toEqual(Array.from({ length: 100 }, (_, i) => `coalesce.one:${i}`));
      sub.unsubscribe();
      // Requests still get their answers (the reply subscription and the request share the turn).
      const echo = reader.subscribe('coalesce.echo', { callback: (_e, m) => void m.respond(m.data) });
      await reader.flush();
      expect((await nc.request('coalesce.echo', 'ping', { timeout: 2_000 })).string()).toBe('ping');
      echo.unsubscribe();
    } finally {
      await Promise.all([nc.close(), plain.close(), reader.close()]);
    }
  });
});
