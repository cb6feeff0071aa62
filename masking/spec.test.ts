import { describe, expect, it } from 'vitest';
import { WritError } from '../schemas/errors.ts';
import { compileMasking, maskRows, maskText, MaskingSpecSchema, sensitiveColumns, type MaskingSpecInput } from './index.ts';

const KEY = Buffer.alloc(32, 9);

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof WritError ? e.code : `not a WritError: ${String(e)}`;
  }
  return undefined;
}

describe('MaskingSpecSchema', () => {
  it('accepts an empty spec with defaults: redact, no column rules, all detectors', () => {
    expect(MaskingSpecSchema.parse({})).toEqual({ strategy: 'redact', columns: [] });
    const c = compileMasking({});
    expect(Object.values(c.enabled).every(Boolean)).toBe(true);
  });

  it('accepts compact JSON with per-rule and per-detector strategies', () => {
    const spec: MaskingSpecInput = {
      strategy: 'partial',
      columns: [{ column: 'public.customers.email' }, { column: '*.*.ssn', strategy: 'hash' }],
      detectors: ['email', { name: 'card', strategy: 'redact' }],
    };
    const c = compileMasking(spec, { hmacKey: KEY });
    expect(c.detectors).toEqual({ email: 'partial', card: 'redact' });
    expect(c.enabled.jwt).toBe(false);
    expect(JSON.stringify(MaskingSpecSchema.parse(spec)).length).toBeLessThan(200);
  });

  it('rejects an unknown strategy, so a typo never weakens masking', () => {
    expect(MaskingSpecSchema.safeParse({ strategy: 'scramble' }).success).toBe(false);
    expect(MaskingSpecSchema.safeParse({ columns: [{ column: 'a.b.c', strategy: 'none' }] }).success).toBe(false);
    expect(code(() => maskText('x', { strategy: 'none' } as never))).toBe('WRIT_MASKING_FAILED');
  });

  it('rejects unknown keys, unknown detectors, duplicates and malformed column patterns', () => {
    expect(MaskingSpecSchema.safeParse({ stratgey: 'hash' }).success).toBe(false);
    expect(MaskingSpecSchema.safeParse({ columns: [{ column: 'a.b.c', strategy: 'hash', extra: 1 }] }).success).toBe(false);
    expect(MaskingSpecSchema.safeParse({ detectors: ['passport'] }).success).toBe(false);
    expect(MaskingSpecSchema.safeParse({ detectors: ['email', { name: 'email' }] }).success).toBe(false);
    for (const column of ['customers.email', 'a.b.c.d', 'a..c', ' a.b.c', '']) {
      expect(MaskingSpecSchema.safeParse({ columns: [{ column }] }).success, column).toBe(false);
    }
  });

  it('names the offending key in the error', () => {
    try {
      compileMasking({ columns: [{ column: 'public.customers' }] });
      expect.unreachable();
    } catch (e) {
      expect((e as WritError).code).toBe('WRIT_MASKING_FAILED');
      expect((e as WritError).message).toContain('columns.0.column');
    }
  });

  it('refuses the hash strategy without a deployment key of at least 16 bytes', () => {
    expect(code(() => compileMasking({ strategy: 'hash' }))).toBe('WRIT_MASKING_FAILED');
    expect(code(() => compileMasking({ detectors: [{ name: 'email', strategy: 'hash' }] }))).toBe('WRIT_MASKING_FAILED');
    expect(code(() => compileMasking({}, { hmacKey: Buffer.alloc(8) }))).toBe('WRIT_MASKING_FAILED');
    expect(code(() => compileMasking({ strategy: 'hash' }, { hmacKey: KEY }))).toBeUndefined();
  });

  it('refuses a spec that was never validated when handed straight to the engine', () => {
    expect(code(() => maskRows({ fields: [], rows: [] }, { columns: 'public.x.y' } as never))).toBe('WRIT_MASKING_FAILED');
  });
});

describe('column patterns', () => {
  it('match one segment per *, case-insensitively, never across a dot', () => {
    const spec = { columns: [{ column: '*.*.ssn' }, { column: 'public.cust*.email' }] };
    expect(sensitiveColumns(spec, ['public.customers.ssn', 'hr.people.SSN', 'public.customers.email', 'public.custard.email', 'public.orders.email', 'public.customers.ssn_hash'])).toEqual([
      'public.customers.ssn',
      'hr.people.SSN',
      'public.customers.email',
      'public.custard.email',
    ]);
  });
  it('treat regex characters in names literally', () => {
    expect(sensitiveColumns({ columns: [{ column: 'public.a+b.c(d)' }] }, ['public.a+b.c(d)', 'public.aab.cd'])).toEqual(['public.a+b.c(d)']);
  });
  it('can be checked without the deployment key a hash spec needs', () => {
    expect(sensitiveColumns({ strategy: 'hash', columns: [{ column: 'public.t.c' }] }, ['public.t.c'])).toEqual(['public.t.c']);
  });
});
