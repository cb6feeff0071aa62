import { randomInt } from 'node:crypto';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { timestamptzParser } from './timestamps.ts';

const TIMESTAMPTZ = 1184;
const general = pg.types.getTypeParser(TIMESTAMPTZ, 'text') as (v: string) => unknown;
const fast = timestamptzParser(general);
const pad = (n: number, w: number) => String(n).padStart(w, '0');

describe('timestamptzParser', () => {
  it('gives the Date pg gives for UTC timestamps, fraction digits 0 to 6', () => {
    for (let i = 0; i < 20_000; i++) {
      const digits = randomInt(0, 7);
      const frac = digits === 0 ? '' : `.${pad(randomInt(0, 10 ** digits), digits)}`;
      const v = `${randomInt(1000, 10_000)}-${pad(randomInt(1, 13), 2)}-${pad(randomInt(1, 32), 2)} ${pad(randomInt(0, 24), 2)}:${pad(randomInt(0, 60), 2)}:${pad(randomInt(0, 60), 2)}${frac}+00`;
      const want = general(v) as Date;
      const got = fast(v) as Date;
      expect(got).toBeInstanceOf(Date);
      if (got.getTime() !== want.getTime()) expect({ v, got: got.toISOString() }).toEqual({ v, got: want.toISOString() });
    }
  });

  it('leaves every other form to pg: offsets, early years, BC, infinity, dates', () => {
    const others = [
      '2026-12-06 07:08:09.5+01',
      '2026-12-06 07:08:09-05:30',
      '0050-01-01 00:00:00+00',
      '0999-12-31 23:59:59.999999+00',
      '2026-12-06 07:08:09+00 BC',
      'infinity',
      '-infinity',
      '12026-01-01 00:00:00+00',
      '2026-12-06 07:08:09.1234567+00',
    ];
    for (const v of others) {
      const want = general(v);
      const got = fast(v);
      expect(got instanceof Date ? got.getTime() : got).toEqual(want instanceof Date ? want.getTime() : want);
    }
  });
});
