/**
 * Orders handed over in one process (lib/handover.ts): the worker runs what it checked against
 * the grant, and the grant's claims are what the broker decided, whatever happens afterwards to
 * the objects the broker handed over (each side keeps its own copy); and a worker that trusts
 * another key than its broker's refuses the unsigned grant as it refuses a signed one.
 */
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, type LocalHandover, type LocalOrder } from '../lib/index.ts';
import { parseConfig, type Config } from '../schemas/index.ts';
import { createWorker } from '../workers/index.ts';
import { startStack, type Stack } from './fixture.ts';

const policy = {
  rules: [
    { id: 'analysts-read', effect: 'allow' as const, groups: ['analysts'], targets: ['db'], mode: 'read' as const },
    { id: 'dba-write', effect: 'allow' as const, groups: ['dba'], targets: ['db'], mode: 'write' as const, limits: { rowsAffected: 1 } },
  ],
};

/** Calls `after` with each order the worker took, as soon as it took it (its grant checked, its claim not yet stored). */
function afterTaken(h: LocalHandover, after: (o: LocalOrder) => void): () => void {
  const offer = h.offer.bind(h);
  h.offer = (o) => {
    const answer = offer(o);
    if (answer) after(o);
    return answer;
  };
  return () => {
    h.offer = offer;
  };
}

describe('what a broker handed over, changed after the worker took it', () => {
  let s: Stack;
  beforeAll(async () => {
    s = await startStack({ config: { policy } });
  });
  afterAll(async () => {
    await s?.stop();
  });

  it('the statement: the worker runs the one whose digest it checked', async () => {
    const c = s.client(await s.token('alice', ['analysts']));
    const restore = afterTaken(s.handover!, (o) => {
      (o.order.command as { sql: string }).sql = 'SELECT name, ssn FROM customers ORDER BY id';
    });
    try {
      const o = await c.run({ target: 'db', sql: 'SELECT 1 AS n' });
      expect(o.status).toBe('succeeded');
      expect(o.result!.rows).toEqual([[1]]);
    } finally {
      restore();
    }
  });

  it("the grant's limits: the broker's decision holds (a row limit of 1 against 3 rows)", async () => {
    const c = s.client(await s.token('dba1', ['dba']));
    const restore = afterTaken(s.handover!, (o) => {
      try {
        delete (o.grant.claims.limits as { rowsAffected?: number }).rowsAffected;
      } catch {
        // Frozen: nothing to change.
      }
      const recordLimits = o.order.record?.grant?.limits as { rowsAffected?: number } | undefined;
      if (recordLimits) delete recordLimits.rowsAffected;
    });
    try {
      const o = await c.run({ target: 'db', sql: "UPDATE customers SET plan = 'changed'" });
      expect(o.status).toBe('failed');
      expect(o.error!.code).toBe('WRIT_ROW_LIMIT');
    } finally {
      restore();
    }
    expect((await s.admin.query("SELECT count(*)::int AS n FROM customers WHERE plan = 'changed'")).rows[0].n).toBe(0);
  });
});

describe('where the outcome goes, changed after the worker took the order', () => {
  let s: Stack;
  beforeAll(async () => {
    s = await startStack({ config: { policy } });
  });
  afterAll(async () => {
    await s?.stop();
  });

  it('the reply subject and the reply key: the outcome still reaches the agent that asked, sealed to it', async () => {
    const c = s.client(await s.token('alice', ['analysts']));
    let stolen = 0;
    const thief = s.nc.subscribe('_INBOX.thief.>', {
      callback: () => {
        stolen++;
      },
    });
    const restore = afterTaken(s.handover!, (o) => {
      (o.order as { replyTo?: string }).replyTo = '_INBOX.thief.outcome';
      const reply = o.order.record?.reply as { to?: string } | undefined;
      if (reply) reply.to = '_INBOX.thief.outcome';
      try {
        (o.grant.claims.rpl as { key?: string } | undefined)!.key = 'A'.repeat(43);
      } catch {
        // Frozen: nothing to change.
      }
    });
    try {
      const o = await c.run({ target: 'db', sql: 'SELECT 2 AS n' });
      expect(o.status).toBe('succeeded');
      expect(o.result!.rows).toEqual([[2]]);
      await s.nc.flush();
      expect(stolen).toBe(0);
    } finally {
      restore();
      thief.unsubscribe();
    }
  });
});

describe('a worker that trusts another key than its broker, in one process', () => {
  let s: Stack;
  beforeAll(async () => {
    s = await startStack({ worker: false, config: { policy } });
  });
  afterAll(async () => {
    await s?.stop();
  });

  it('refuses the handed-over order: nothing runs', async () => {
    const other = generateKeyPairSync('ed25519');
    const file = join(s.dir, 'other.pub.pem');
    writeFileSync(file, other.publicKey.export({ type: 'spki', format: 'pem' }).toString());
    const config = parseConfig({ ...(JSON.parse(JSON.stringify(s.config)) as object), grants: { ...s.config.grants, publicKeyFiles: { other: file } } } as never) as Config;
    const w = await createWorker({ nc: s.nc, config, log: createLogger({ name: 'other-key', level: 'silent' }), handover: s.handover });
    await w.start();
    try {
      const taken = s.handover!.stats.taken;
      const c = s.client(await s.token('dba1', ['dba']));
      const { intentId } = await c.submit({ target: 'db', sql: "INSERT INTO events (note) VALUES ('other key')" });
      expect(s.handover!.stats.taken - taken).toBe(1);
      expect(await c.status(intentId)).toBe('dispatched');
      expect((await s.admin.query("SELECT count(*)::int AS n FROM events WHERE note = 'other key'")).rows[0].n).toBe(0);
    } finally {
      await w.stop();
    }
  });
});
