import { describe, expect, it } from 'vitest';
import { WritError } from '../schemas/errors.ts';
import { maskText } from './index.ts';

const SPEC = { columns: [{ column: 'public.customers.national_id' }, { column: '*.*.email' }] };

describe('maskText on PostgreSQL messages', () => {
  it('masks a value quoted by a failed cast', () => {
    expect(maskText('invalid input syntax for type integer: "078-05-1120"', {})).toEqual({
      text: 'invalid input syntax for type integer: "[MASKED:ssn]"',
      hits: ['detector:ssn'],
    });
    expect(maskText('invalid input syntax for type integer: "alice@example.com"', {}).text).toBe('invalid input syntax for type integer: "[MASKED:email]"');
  });

  it('masks a sensitive column value quoted in a key violation, even when no detector recognises it', () => {
    const msg = 'duplicate key value violates unique constraint "customers_national_id_key"\nDETAIL:  Key (national_id)=(AB 12 34 56 C) already exists.';
    expect(maskText(msg, SPEC)).toEqual({
      text: 'duplicate key value violates unique constraint "customers_national_id_key"\nDETAIL:  Key (national_id)=([MASKED:column]) already exists.',
      hits: ['column:national_id'],
    });
  });

  it('masks every value of a multi-column or expression key when one column is sensitive', () => {
    const msg = 'Key (tenant, lower(email::text))=(7, alice@example.com) already exists.';
    expect(maskText(msg, SPEC).text).toBe('Key (tenant, lower(email::text))=([MASKED:column]) already exists.');
  });

  it('narrows by table when the error names one', () => {
    const msg = 'Key (national_id)=(X1) is not present in table "people".';
    expect(maskText(msg, SPEC, { table: 'public.orders' }).text).toBe(msg);
    expect(maskText(msg, SPEC, { table: 'public.customers' }).hits).toEqual(['column:public.customers.national_id']);
  });

  it('leaves key values of columns no rule names to the detectors', () => {
    expect(maskText('Key (id)=(42) already exists.', SPEC).text).toBe('Key (id)=(42) already exists.');
  });

  it('masks a failing row, which quotes every column of the row', () => {
    const msg = 'new row for relation "customers" violates check constraint "c"\nDETAIL:  Failing row contains (1, Alice, AB123456C, null).';
    expect(maskText(msg, SPEC).text).toBe('new row for relation "customers" violates check constraint "c"\nDETAIL:  Failing row contains ([MASKED:row]).');
    expect(maskText(msg, SPEC, { table: 'public.orders' }).text).toBe(msg.replace('(1, Alice, AB123456C, null)', '([MASKED:row])')); // *.*.email names every table
    expect(maskText(msg, { columns: [{ column: 'public.customers.national_id' }] }, { table: 'public.orders' }).text).toBe(msg);
  });

  it('masks notices like errors', () => {
    expect(maskText('NOTICE:  sending to bob@example.com with token ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8', {}).hits).toEqual(['detector:email', 'detector:github_token']);
  });

  it('refuses to return text it could not mask', () => {
    expect(() => maskText(42 as never, {})).toThrow(WritError);
    expect(() => maskText('x', { strategy: 'hash' })).toThrow(/deployment key/);
  });
});
