import { describe, expect, it } from 'vitest';
import { WritError } from '../schemas/errors.ts';
import { maskRows, type FieldInput, type MaskingSpecInput } from './index.ts';

const col = (name: string, table: string, column = name): FieldInput => ({ name, origin: { table, column } });
const SPEC: MaskingSpecInput = { columns: [{ column: 'public.customers.email' }, { column: '*.*.ssn' }] };

function failure(fn: () => unknown): WritError {
  try {
    fn();
  } catch (e) {
    if (e instanceof WritError) return e;
    throw new Error(`expected a WritError, got ${String(e)}`);
  }
  throw new Error('expected masking to fail');
}

describe('column rules', () => {
  it('mask a sensitive column whole whatever its alias and type; null stays null', () => {
    const fields = [col('id', 'public.customers'), { name: 'contact', origin: { table: 'public.customers', column: 'email' } }, col('ssn', 'hr.people')];
    const rows = [
      [1, 'alice@example.com', 219099999],
      [2, null, { raw: '219-09-9999' }],
      [3, 'not-an-email', new Date(0)],
    ];
    const out = maskRows({ fields, rows }, SPEC);
    expect(out.rows).toEqual([
      [1, '[MASKED:column]', '[MASKED:column]'],
      [2, null, '[MASKED:column]'],
      [3, '[MASKED:column]', '[MASKED:column]'],
    ]);
    expect(out.columns).toEqual([
      { name: 'id', masked: false, reasons: [] },
      { name: 'contact', masked: true, reasons: ['column:public.customers.email'] },
      { name: 'ssn', masked: true, reasons: ['column:hr.people.ssn'] },
    ]);
    expect(out.maskedValues).toBe(5);
  });

  it('report a rule-masked column as masked even when the result has no rows', () => {
    const out = maskRows({ fields: [col('email', 'public.customers')], rows: [] }, SPEC);
    expect(out.columns[0]).toEqual({ name: 'email', masked: true, reasons: ['column:public.customers.email'] });
  });

  it('treat an origin the resolver could not name as sensitive when any rule exists (fail closed)', () => {
    const fields = [{ name: 'x', origin: { table: 'oid:16384', column: '3' } }];
    expect(maskRows({ fields, rows: [['secret']] }, SPEC).rows).toEqual([['[MASKED:column]']]);
    expect(maskRows({ fields, rows: [['plain']] }, {}).rows).toEqual([['plain']]);
  });

  it('never modify the input rows', () => {
    const rows = [[1, 'alice@example.com', { note: 'bob@example.com' }]];
    const copy = structuredClone(rows);
    maskRows({ fields: [col('id', 'public.t'), col('email', 'public.customers'), col('j', 'public.t')], rows }, SPEC);
    expect(rows).toEqual(copy);
  });
});

describe('derived and whole-row fields', () => {
  it('mask a computed field drawing on a sensitive column whole, with its sources as reasons', () => {
    const fields: FieldInput[] = [
      { name: 'lower', origin: null, sensitiveSources: ['public.customers.email'] },
      { name: 'n', origin: null },
    ];
    const out = maskRows(
      {
        fields,
        rows: [
          ['alice@example.com', 42],
          [null, 43],
        ],
      },
      SPEC,
    );
    expect(out.rows).toEqual([
      ['[MASKED:derived]', 42],
      // A derived null is masked too: an expression can choose null by a condition on the value.
      ['[MASKED:derived]', 43],
    ]);
    expect(out.columns[0]).toEqual({ name: 'lower', masked: true, reasons: ['derived:public.customers.email'] });
    expect(out.columns[1]).toEqual({ name: 'n', masked: false, reasons: [] });
  });

  it("redact a derived field whole whatever the rule's strategy, numbers included (partial applies to the bare column only)", () => {
    const fields: FieldInput[] = [
      { name: 'r', origin: null, sensitiveSources: ['public.p.ssn'] },
      { name: 'len', origin: null, sensitiveSources: ['public.p.ssn'] },
      { name: 'bare', origin: { table: 'public.p', column: 'ssn' } },
    ];
    for (const strategy of ['partial', 'hash'] as const) {
      const out = maskRows({ fields, rows: [['0211-50-870', 11, '078-05-1120']] }, { columns: [{ column: 'public.p.ssn', strategy }] }, { hmacKey: Buffer.alloc(32, 1) });
      expect(out.rows[0]![0]).toBe('[MASKED:derived]');
      expect(out.rows[0]![1]).toBe('[MASKED:derived]');
      if (strategy === 'partial') expect(out.rows[0]![2]).toBe('***-**-1120');
    }
  });

  it('redact every computed field of an opaque statement unless the spec trusts computed fields', () => {
    const fields: FieldInput[] = [
      { name: 'word', origin: null, opaque: 'opaque:ts_stat' },
      { name: 'id', origin: { table: 'public.t', column: 'id' } },
    ];
    const out = maskRows({ fields, rows: [['hunter2', 1]] }, {});
    expect(out.rows).toEqual([['[MASKED:derived]', 1]]);
    expect(out.columns[0]).toEqual({ name: 'word', masked: true, reasons: ['opaque:ts_stat'] });
    const trusted = maskRows({ fields, rows: [['hunter2', 1]] }, { trustComputed: true });
    expect(trusted.rows).toEqual([['hunter2', 1]]);
  });

  it('mask a whole-row reference of a table that has a sensitive column', () => {
    const fields: FieldInput[] = [{ name: 'c', origin: { table: 'public.customers', column: '*' }, wholeRow: true }];
    const out = maskRows({ fields, rows: [['(1,alice@example.com,x)']] }, { columns: [{ column: 'public.customers.email' }] });
    expect(out.rows).toEqual([['[MASKED:row]']]);
    expect(out.columns[0]!.reasons).toEqual(['column:public.customers.email']);
  });

  it('mask a whole row under a wildcard rule unless the table columns show no match', () => {
    const spec = { columns: [{ column: '*.*.ssn' }] };
    const row: FieldInput = { name: 'o', origin: { table: 'public.orders', column: '*' }, wholeRow: true };
    expect(maskRows({ fields: [row], rows: [['(1,2)']] }, spec).rows).toEqual([['[MASKED:row]']]);
    const known: FieldInput = { ...row, tableColumns: ['id', 'total'] };
    expect(maskRows({ fields: [known], rows: [['(1,2)']] }, spec).rows).toEqual([['(1,2)']]);
    const withSsn: FieldInput = { ...row, tableColumns: ['id', 'ssn'] };
    const out = maskRows({ fields: [withSsn], rows: [['(1,219099999)']] }, spec);
    expect(out.rows).toEqual([['[MASKED:row]']]);
    expect(out.columns[0]!.reasons).toEqual(['column:public.orders.ssn']);
  });

  it('leave a whole row of a table without sensitive columns to the detectors', () => {
    const fields: FieldInput[] = [{ name: 'o', origin: { table: 'public.orders', column: '*' }, wholeRow: true }];
    const spec = { columns: [{ column: 'public.customers.email' }] };
    expect(maskRows({ fields, rows: [['(1,bob@example.com)']] }, spec).rows).toEqual([['(1,[MASKED:email])']]);
  });
});

describe('value detectors in rows', () => {
  const f = [col('v', 'public.t')];
  const one = (v: unknown, spec: MaskingSpecInput = {}) => maskRows({ fields: f, rows: [[v]] }, spec).rows[0]![0];

  it('walk JSON objects and arrays, masking leaves and keys but keeping structure', () => {
    const v = { user: { email: 'alice@example.com', tags: ['ok', 'ssn 078-05-1120'] }, n: 1, ok: true, nil: null, 'bob@example.com': 'key holds pii' };
    expect(one(v)).toEqual({ user: { email: '[MASKED:email]', tags: ['ok', 'ssn [MASKED:ssn]'] }, n: 1, ok: true, nil: null, '[MASKED:email]': 'key holds pii' });
  });

  it('keep both values when two keys mask to the same text', () => {
    expect(one({ 'a@example.com': 1, 'b@example.com': 2 })).toEqual({ '[MASKED:email]': 1, '[MASKED:email]#2': 2 });
  });

  it('keep an own __proto__ key as data, never as a prototype', () => {
    const v = JSON.parse('{"__proto__": {"e": "alice@example.com"}, "x": "bob@example.com"}') as object;
    const out = one(v) as Record<string, unknown>;
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(out, '__proto__')?.value).toEqual({ e: '[MASKED:email]' });
  });

  it('mask array columns element by element', () => {
    expect(one(['alice@example.com', 'plain', null])).toEqual(['[MASKED:email]', 'plain', null]);
  });

  it('return clean values and rows unchanged, without copying', () => {
    const v = { a: [1, 'x'], b: 'plain text' };
    const row = [v];
    const out = maskRows({ fields: f, rows: [row] }, {});
    expect(out.rows[0]).toBe(row);
    expect(out.maskedValues).toBe(0);
  });

  it('scan bytea as bytes: an ASCII secret inside binary is masked, every other byte kept', () => {
    const bin = Buffer.concat([Buffer.from([0, 255, 1]), Buffer.from(' ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8 '), Buffer.from([254, 0])]);
    const out = one(bin) as Buffer;
    expect(Buffer.isBuffer(out)).toBe(true);
    expect(out).toEqual(Buffer.concat([Buffer.from([0, 255, 1]), Buffer.from(' [MASKED:github_token] '), Buffer.from([254, 0])]));
    const clean = Buffer.from([1, 2, 3, 200]);
    expect(one(clean)).toBe(clean);
  });

  it('check long integers as card numbers and integers under an SSN-named key as SSNs', () => {
    expect(one(4111111111111111)).toBe('[MASKED:card]');
    expect(one(4111111111111111n)).toBe('[MASKED:card]');
    expect(one(4111111111111112)).toBe(4111111111111112);
    expect(one({ ssn: 219099999, id: 219099999 })).toEqual({ ssn: '[MASKED:ssn]', id: 219099999 });
    expect(one({ customer_ssn: '219099999' })).toEqual({ customer_ssn: '[MASKED:ssn]' });
    expect(maskRows({ fields: [col('ssn', 'public.t')], rows: [['219099999']] }, {}).rows[0]).toEqual(['[MASKED:ssn]']);
  });

  it('mask secrets under their key name when the value alone would not be recognised', () => {
    expect(one({ SecretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', AccessKeyId: 'x' })).toEqual({ SecretAccessKey: '[MASKED:aws_key]', AccessKeyId: 'x' });
  });

  it('walk what toJSON serialises to, and keep dates', () => {
    const d = new Date(0);
    expect(one(d)).toBe(d);
    expect(one({ toJSON: () => ({ e: 'alice@example.com' }) })).toEqual({ e: '[MASKED:email]' });
  });

  it('report detector reasons per column and count changed cells once', () => {
    const out = maskRows(
      {
        fields: [col('a', 'public.t'), col('b', 'public.t')],
        rows: [
          ['alice@example.com and 078-05-1120', 'x'],
          ['bob@example.com', 'y'],
        ],
      },
      {},
    );
    expect(out.columns).toEqual([
      { name: 'a', masked: true, reasons: ['detector:email', 'detector:ssn'] },
      { name: 'b', masked: false, reasons: [] },
    ]);
    expect(out.maskedValues).toBe(2);
  });

  it('run no detector when the spec lists none', () => {
    expect(one('alice@example.com', { detectors: [] })).toBe('alice@example.com');
  });
});

describe('strict failure: data is withheld, never passed through', () => {
  const f = [col('v', 'public.t')];
  it('fails when reading a value throws', () => {
    const evil = {
      get x() {
        throw new Error('boom');
      },
    };
    const e = failure(() => maskRows({ fields: f, rows: [['ok'], [evil]] }, {}));
    expect(e.code).toBe('WRIT_MASKING_FAILED');
    expect(e.details).toEqual({ row: 1, field: 0 });
  });

  it('fails when converting a value to text throws', () => {
    const evil = {
      toJSON() {
        throw new Error('boom');
      },
    };
    expect(failure(() => maskRows({ fields: f, rows: [[evil]] }, {})).code).toBe('WRIT_MASKING_FAILED');
    const hashed = { strategy: 'hash' as const, columns: [{ column: 'public.t.v' }] };
    const badDate = new Date(Number.NaN);
    expect(failure(() => maskRows({ fields: f, rows: [[badDate]] }, hashed, { hmacKey: Buffer.alloc(16) })).code).toBe('WRIT_MASKING_FAILED');
    const badToString = {
      toString() {
        throw new Error('boom');
      },
    };
    const cls = new (class Weird {
      toString() {
        throw new Error('boom');
      }
    })();
    // An own function property is no data: refused rather than dropped.
    expect(failure(() => maskRows({ fields: f, rows: [[badToString]] }, {})).code).toBe('WRIT_MASKING_FAILED');
    // Under a column rule with partial, a number is turned to text: String() of a class instance is never called.
    const partial = { columns: [{ column: 'public.t.v', strategy: 'partial' as const }] };
    expect(maskRows({ fields: f, rows: [[cls]] }, partial).rows[0]![0]).toBe('[MASKED:column]');
    // Hashing serialises: a value that cannot be serialised fails.
    expect(failure(() => maskRows({ fields: f, rows: [[evil]] }, hashed, { hmacKey: Buffer.alloc(16) })).code).toBe('WRIT_MASKING_FAILED');
    expect(failure(() => maskRows({ fields: f, rows: [[{ big: 1n }]] }, hashed, { hmacKey: Buffer.alloc(16) })).code).toBe('WRIT_MASKING_FAILED');
  });

  it('fails on values it cannot mask: symbols, functions, Maps, Sets, deep nesting, cycles', () => {
    const deep: Record<string, unknown> = {};
    let cur = deep;
    for (let i = 0; i < 100; i++) cur = (cur.n = {}) as Record<string, unknown>;
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    for (const v of [Symbol('s'), () => 1, new Map([['a', 'alice@example.com']]), new Set(['x']), deep, cyclic]) {
      expect(failure(() => maskRows({ fields: f, rows: [[v]] }, {})).code).toBe('WRIT_MASKING_FAILED');
    }
  });

  it('fails on a row whose length does not match the fields', () => {
    expect(failure(() => maskRows({ fields: f, rows: [['a', 'alice@example.com']] }, {})).details).toEqual({ row: 0 });
    expect(failure(() => maskRows({ fields: f, rows: ['abc' as never] }, {})).code).toBe('WRIT_MASKING_FAILED');
  });
});
