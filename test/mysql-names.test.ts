/**
 * How the broker knows a MySQL target's default database, and what it does with it: the config
 * places it on the target (from targets[].database or the target's workers.mysql entry, refused
 * when the two differ), the broker's classifier names every table with it (and keeps the facts
 * of two targets with different databases apart), and a broker that does not know it refuses
 * unqualified names rather than matching them loosely.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { initClassifiers } from '../classify/index.ts';
import { createCommandClassifier } from '../broker/classify-command.ts';
import { RulePolicy } from '../broker/rules/index.ts';
import { parseConfig, type TargetConfig } from '../schemas/index.ts';

beforeAll(async () => {
  await initClassifiers();
});

const worker = (target: string, database: string) => ({ target, database, credentials: { read: { user: { value: 'r' } } } });

describe("a mysql target's default database in the config", () => {
  it("comes from the target's workers.mysql entry", () => {
    const c = parseConfig({ targets: [{ name: 'shop', kind: 'mysql' }], workers: { mysql: [worker('shop', 'shop_db')] } });
    expect(c.targets[0]!.database).toBe('shop_db');
  });

  it("may be set on the target (a broker config without workers), and must then equal the worker's", () => {
    expect(parseConfig({ targets: [{ name: 'shop', kind: 'mysql', database: 'shop' }] }).targets[0]!.database).toBe('shop');
    expect(parseConfig({ targets: [{ name: 'shop', kind: 'mysql', database: 'shop' }], workers: { mysql: [worker('shop', 'shop')] } }).targets[0]!.database).toBe('shop');
    expect(() => parseConfig({ targets: [{ name: 'shop', kind: 'mysql', database: 'shop' }], workers: { mysql: [worker('shop', 'Shop')] } })).toThrow(
      expect.objectContaining({ code: 'WRIT_CONFIG_INVALID', message: expect.stringContaining('workers.mysql[0].database') }),
    );
    expect(() => parseConfig({ targets: [{ name: 'shop', kind: 'mysql' }], workers: { mysql: [worker('shop', 'a'), worker('shop', 'b')] } })).toThrow(
      expect.objectContaining({ code: 'WRIT_CONFIG_INVALID', message: expect.stringContaining('workers.mysql[1].database') }),
    );
  });

  it('is refused on a target of another kind', () => {
    expect(() => parseConfig({ targets: [{ name: 'wh', kind: 'postgres', database: 'x' }] })).toThrow(
      expect.objectContaining({ code: 'WRIT_CONFIG_INVALID', message: expect.stringContaining('targets[0].database: only a mysql target has a database') }),
    );
  });
});

describe("the broker's classifier on mysql targets", () => {
  const policy = RulePolicy.fromText(`
rules:
  - { id: no-customers, effect: deny, match: { sql: { tables: [shop.customers] } } }
  - { id: no-ssn, effect: deny, match: { sql: { columns: [shop.customers.ssn] } } }
  - { id: read, effect: allow, mode: read, match: { sql: { kinds: [select] } } }
`);
  const shop: TargetConfig = { name: 'shop', kind: 'mysql', tags: [], database: 'shop' };
  const other: TargetConfig = { name: 'other', kind: 'mysql', tags: [], database: 'other' };
  const unknown: TargetConfig = { name: 'nodb', kind: 'mysql', tags: [] };
  const principal = { sub: 'a', iss: '', groups: [] };

  it("places unqualified names in each target's own database, with facts cached apart", () => {
    const classify = createCommandClassifier({ maxStatementBytes: 64 * 1024, factsCacheBytes: 1024 * 1024 });
    const decide = (target: TargetConfig, sql: string) => {
      const command = { kind: 'sql' as const, sql };
      return policy.decide({ principal, target, command, facts: classify(target, command), now: new Date() });
    };
    expect(decide(shop, 'SELECT id FROM customers')).toMatchObject({ effect: 'deny', rules: ['no-customers'] });
    // The same text on a target whose database is another: other.customers, which no rule denies.
    expect(decide(other, 'SELECT id FROM customers')).toMatchObject({ effect: 'allow', rules: ['read'] });
    expect(decide(shop, 'SELECT id FROM customers')).toMatchObject({ effect: 'deny', rules: ['no-customers'] });
    expect(decide(shop, 'SELECT ssn FROM customers')).toMatchObject({ effect: 'deny', rules: ['no-customers', 'no-ssn'] });
    expect(decide(other, 'SELECT ssn FROM shop.customers')).toMatchObject({ effect: 'deny', rules: ['no-customers', 'no-ssn'] });
  });

  it("refuses unqualified names where the target's database is not known", () => {
    const classify = createCommandClassifier({ maxStatementBytes: 64 * 1024, factsCacheBytes: 1024 * 1024 });
    const command = { kind: 'sql' as const, sql: 'SELECT * FROM customers' };
    const d = policy.decide({ principal, target: unknown, command, facts: classify(unknown, command), now: new Date() });
    expect(d).toMatchObject({ effect: 'deny', code: 'WRIT_SQL_UNKNOWN' });
    expect(d.reasons.join(' ')).toMatch(/without a database/);
    const q = { kind: 'sql' as const, sql: 'SELECT * FROM shop.orders' };
    expect(policy.decide({ principal, target: unknown, command: q, facts: classify(unknown, q), now: new Date() })).toMatchObject({ effect: 'allow' });
  });
});
