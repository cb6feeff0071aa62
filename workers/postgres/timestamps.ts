/**
 * `timestamp with time zone` values as the server writes them in UTC, parsed without pg's
 * general parser: `2026-12-06 07:08:09.123456+00` is the common case (a server or role whose
 * TimeZone is UTC), and pg's parser reads it with three regular expressions and a string split,
 * about 1 µs a value: a 1,000-row result with one such column spent 5 % of the worker's CPU there.
 * The Date is built from the same numbers the same way (Date.UTC, and the fraction as
 * 1000 × parseFloat), so it is the same Date; any other form (another offset, a year before 1000,
 * BC, infinity) goes to pg's parser.
 */
const UTC_TIMESTAMP = /^([1-9]\d{3})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(\.\d{1,6})?\+00$/;

export function timestamptzParser(general: (v: string) => unknown): (v: string) => unknown {
  return (v: string) => {
    const m = UTC_TIMESTAMP.exec(v);
    if (m === null) return general(v);
    const ms = m[7] === undefined ? 0 : 1000 * parseFloat(m[7]);
    return new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]), ms));
  };
}
