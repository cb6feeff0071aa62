import { Kvm, type KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNats, uniqueName, type NatsServerHandle } from '../../test/helpers/index.ts';
import { WritError } from '../../schemas/index.ts';
import { initClassifiers } from '../../classify/index.ts';
import { PolicyStore, ReloadingPolicy, RulePolicy, runPolicyCli, toPolicyInput, type PolicyTarget } from './index.ts';

const V1 = `
version: "1"
rules:
  - { id: read, effect: allow, match: { sql: { kinds: [select] } } }
`;
const V2 = `
version: "2"
rules:
  - { id: nothing-on-wh, effect: deny, match: { target: { name: [wh] } } }
`;
const INVALID = `
rules:
  - { id: read, effect: allow, match: { sql: { tabels: [x] } } }
`;

const TARGETS = new Map<string, PolicyTarget>([['wh', { name: 'wh', kind: 'postgres', tags: [] }]]);
let server: NatsServerHandle;
let nc: NatsConnection;

async function bucket(): Promise<KV> {
  return new Kvm(nc).create(uniqueName('writ_policy'), { history: 16 });
}

async function until(cond: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}

beforeAll(async () => {
  server = await startNats();
  nc = await connect({ servers: server.url });
  await initClassifiers();
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

describe('PolicyStore', () => {
  it('publishes a valid policy under `active` and loads it back with its meta', async () => {
    const store = new PolicyStore(await bucket());
    expect(await store.load()).toBeNull();
    const r = await store.publish(V1, { author: 'ci', source: 'policy.yaml' });
    expect(r.changed).toBe(true);
    expect(r.version).toMatch(/^1\+[0-9a-f]{16}$/);
    const loaded = await store.load();
    expect(loaded?.policy.version).toBe(r.version);
    expect(loaded?.revision).toBe(r.revision);
    expect(loaded?.meta).toEqual({ author: 'ci', source: 'policy.yaml' });
    expect(loaded?.yaml).toBe(V1);
  });

  it('refuses an invalid policy with WRIT_POLICY_INVALID naming the path, and the old one stays', async () => {
    const store = new PolicyStore(await bucket());
    const first = await store.publish(V1);
    const err = await store.publish(INVALID).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WritError);
    expect((err as WritError).code).toBe('WRIT_POLICY_INVALID');
    expect((err as WritError).message).toContain('rules[0].match.sql.tabels: unknown key');
    expect((await store.load())?.policy.version).toBe(first.version);
  });

  it('treats republishing the same content as a no-op, and keeps a version history', async () => {
    const store = new PolicyStore(await bucket());
    const a = await store.publish(V1);
    const again = await store.publish(V1);
    expect(again).toEqual({ version: a.version, revision: a.revision, changed: false });
    const b = await store.publish(V2, { comment: 'lock down wh' });
    const h = await store.history();
    expect(h.map((x) => x.version)).toEqual([b.version, a.version]);
    expect(h[0]?.meta.comment).toBe('lock down wh');
  });

  it('publishes with compare-and-set when given the revision it expects', async () => {
    const store = new PolicyStore(await bucket());
    const a = await store.publish(V1, {}, { expectRevision: 0 });
    await expect(store.publish(V2, {}, { expectRevision: 0 })).rejects.toThrow();
    await expect(store.publish(V2, {}, { expectRevision: a.revision + 5 })).rejects.toThrow();
    const b = await store.publish(V2, {}, { expectRevision: a.revision });
    expect(b.revision).toBeGreaterThan(a.revision);
  });
});

describe('ReloadingPolicy', () => {
  const select = () => toPolicyInput({ principal: { sub: 'a' }, target: 'wh', sql: 'SELECT 1' }, TARGETS);

  it('denies everything until a policy is published, then hot-swaps to each valid version', async () => {
    const kv = await bucket();
    const store = new PolicyStore(kv);
    const loaded: string[] = [];
    const engine = await ReloadingPolicy.start(store, { onChange: (p) => loaded.push(p.policy.version) });
    try {
      expect(engine.decide(select()).effect).toBe('deny');
      const v1 = await store.publish(V1);
      await until(() => engine.version === v1.version);
      expect(engine.decide(select())).toMatchObject({ effect: 'allow', policyVersion: v1.version });
      const v2 = await store.publish(V2);
      await until(() => engine.version === v2.version);
      expect(engine.decide(select())).toMatchObject({ effect: 'deny', rules: ['nothing-on-wh'] });
      expect(loaded).toEqual([v1.version, v2.version]);
      expect(engine.revision).toBe(v2.revision);
    } finally {
      await engine.stop();
    }
  });

  it('starts from the stored policy, refuses an invalid update written straight into the bucket, and keeps the old one', async () => {
    const kv = await bucket();
    const store = new PolicyStore(kv);
    const v1 = await store.publish(V1);
    const warnings: Record<string, unknown>[] = [];
    const log = { info: () => {}, warn: (o: object) => warnings.push(o as Record<string, unknown>) };
    const engine = await ReloadingPolicy.start(store, { log });
    try {
      expect(engine.version).toBe(v1.version);
      // Bypassing publish(): a broker must still refuse what does not validate.
      await kv.put('active', JSON.stringify({ v: 1, yaml: INVALID, version: 'x', hash: 'x', publishedAt: Date.now(), meta: {} }));
      await kv.put('active', 'not even json');
      await until(() => warnings.length >= 2);
      expect(warnings[0]).toMatchObject({ code: 'WRIT_POLICY_INVALID', keeping: v1.version });
      expect(String(warnings[0]?.err)).toContain('rules[0].match.sql.tabels: unknown key');
      expect(engine.version).toBe(v1.version);
      expect(engine.decide(select()).effect).toBe('allow');
      // A valid one afterwards is taken.
      const v2 = await store.publish(V2);
      await until(() => engine.version === v2.version);
    } finally {
      await engine.stop();
    }
  });

  it('uses the fallback when the bucket holds no policy', async () => {
    const store = new PolicyStore(await bucket());
    const fallback = RulePolicy.fromText(V1);
    const engine = await ReloadingPolicy.start(store, { fallback });
    try {
      expect(engine.version).toBe(fallback.version);
      expect(engine.explain(select()).decision.effect).toBe('allow');
    } finally {
      await engine.stop();
    }
  });
});

describe('writ policy publish', () => {
  it('validates the file, then makes it the active policy of <prefix>_policy; an invalid file changes nothing', async () => {
    const prefix = `p${Math.random().toString(36).slice(2, 10)}`;
    const kv = await new Kvm(nc).create(`${prefix}_policy`, { history: 16 });
    const dir = await mkdtemp(join(tmpdir(), 'writ-publish-'));
    try {
      await writeFile(join(dir, 'ok.yaml'), V1);
      await writeFile(join(dir, 'bad.yaml'), INVALID);
      let out = '';
      const io = { stdin: Readable.from([]), stdout: (s: string) => (out += s), stderr: (s: string) => (out += s) };
      expect(await runPolicyCli(['publish', join(dir, 'ok.yaml'), '--server', server.url, '--prefix', prefix, '--author', 'ci'], io)).toBe(0);
      expect(out).toMatch(/^published 1\+[0-9a-f]{16} as revision \d+/);
      const loaded = await new PolicyStore(kv).load();
      expect(loaded?.meta).toMatchObject({ author: 'ci', source: join(dir, 'ok.yaml') });
      out = '';
      expect(await runPolicyCli(['publish', join(dir, 'bad.yaml'), '--server', server.url, '--prefix', prefix], io)).toBe(1);
      expect(out).toContain('WRIT_POLICY_INVALID');
      expect(out).toContain('rules[0].match.sql.tabels: unknown key');
      expect((await new PolicyStore(kv).load())?.revision).toBe(loaded?.revision);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
