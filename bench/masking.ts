/**
 * Masking throughput: a 100,000-row, 10-column result (ids, names, e-mails, phones, free
 * text with occasional secrets, a JSON column, timestamps, amounts, …) masked with every
 * detector on and two column rules. Input bytes are the rows' JSON size. Baselines from
 * the same run: JSON.stringify of the rows (what publishing costs anyway) and a pass with
 * the column rules but no detectors (the walk alone). Each figure is the median of five runs.
 *
 * `npx tsx bench/masking.ts` runs it alone; bench/index.ts runs it with the others.
 */
import { pathToFileURL } from 'node:url';
import { maskRows, type RowsInput } from '../masking/index.ts';

const ROWS = 100_000;

/** Deterministic pseudo-random numbers, so every run masks the same data. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FIRST = ['Alice', 'Bob', 'Chandra', 'Dmitri', 'Eve', 'Fatima', 'Gustavo', 'Hana', 'Ivan', 'Julia', 'Kofi', 'Lena'];
const LAST = ['Smith', 'Okafor', 'Müller', 'García', 'Nakamura', 'Kowalski', 'Dubois', 'Rossi', 'Andersson', 'Singh'];
const CITIES = ['Berlin', 'Lagos', 'Osaka', 'Lima', 'Toronto', 'Pune', 'Lyon', 'Austin'];
const NOTES = [
  'Customer asked about the delivery window for order %ID%; promised a call back tomorrow.',
  'Refund processed after the duplicate charge on invoice INV-%ID%, see ticket 4411.',
  'Prefers e-mail contact. Account migrated from the legacy system in 2021.',
  'Address verified by phone; parcel left with the neighbour at no. 12.',
  'VIP since 2019 — waive the shipping fee on the next two orders.',
  'Called support twice about the mobile app crashing on login (build 7.4.1).',
];
const SECRETS = [
  'rotated token ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8 after the leak',
  'pasted card 4111 1111 1111 1111 into the chat by mistake',
  'debug: postgres://app:Tr0ub4dor3@db.internal:5432/shop',
  'ssn on file 078-05-1120 per KYC',
  'jwt eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U',
];

function buildResult(rows = ROWS): RowsInput {
  const r = rng(42);
  const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)]!;
  const fields: RowsInput['fields'] = [
    { name: 'id', origin: { table: 'public.customers', column: 'id' } },
    { name: 'name', origin: { table: 'public.customers', column: 'name' } },
    { name: 'email', origin: { table: 'public.customers', column: 'email' } },
    { name: 'phone', origin: { table: 'public.customers', column: 'phone' } },
    { name: 'city', origin: { table: 'public.customers', column: 'city' } },
    { name: 'note', origin: { table: 'public.customers', column: 'note' } },
    { name: 'profile', origin: { table: 'public.customers', column: 'profile' } },
    { name: 'created_at', origin: { table: 'public.customers', column: 'created_at' } },
    { name: 'balance', origin: { table: 'public.customers', column: 'balance' } },
    { name: 'tags', origin: { table: 'public.customers', column: 'tags' } },
  ];
  const out: unknown[][] = [];
  const t0 = Date.UTC(2023, 0, 1);
  for (let i = 0; i < rows; i++) {
    const first = pick(FIRST);
    const last = pick(LAST);
    const id = 100_000 + i;
    const note = r() < 0.02 ? pick(SECRETS) : pick(NOTES).replace('%ID%', String(id));
    out.push([
      id,
      `${first} ${last}`,
      `${first.toLowerCase()}.${i}@example.com`,
      `+1 415 555 ${String(1000 + (i % 9000))}`,
      pick(CITIES),
      note,
      { plan: pick(['free', 'pro', 'team']), seats: 1 + (i % 20), newsletter: r() < 0.5, contact: { preferred: 'email', lang: 'en' } },
      new Date(t0 + i * 60_000).toISOString(),
      (r() * 10_000).toFixed(2),
      ['customer', pick(['eu', 'us', 'apac'])],
    ]);
  }
  return { fields, rows: out };
}

/**
 * Median wall-clock seconds of `reps` runs, after two warm-up runs so the JIT has compiled the
 * hot paths, and the mean process CPU seconds per run (all threads, GC included): on a shared
 * machine the CPU figure is the steadier "per core" measure.
 */
function time(fn: () => void, reps = 5): { wall: number; cpu: number } {
  fn();
  fn();
  const runs: number[] = [];
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < reps; i++) {
    const t = process.hrtime.bigint();
    fn();
    runs.push(Number(process.hrtime.bigint() - t) / 1e9);
  }
  const cpu = process.cpuUsage(cpu0);
  return { wall: runs.sort((a, b) => a - b)[Math.floor(reps / 2)]!, cpu: (cpu.user + cpu.system) / 1e6 / reps };
}

export async function benchMasking(): Promise<Record<string, number>> {
  const input = buildResult();
  const bytes = Buffer.byteLength(JSON.stringify(input.rows));
  const columns = [{ column: 'public.customers.email' }, { column: '*.*.phone', strategy: 'partial' as const }];
  const full = { columns };
  const walkOnly = { columns, detectors: [] };
  const key = Buffer.alloc(32, 7);
  let maskedValues = 0;
  const masked = time(() => (maskedValues = maskRows(input, full, { hmacKey: key }).maskedValues));
  const noDetectors = time(() => maskRows(input, walkOnly, { hmacKey: key }));
  const stringify = time(() => JSON.stringify(input.rows));
  const mb = bytes / 1e6;
  return {
    rows: input.rows.length,
    inputMB: +mb.toFixed(2),
    maskedValues,
    seconds: +masked.wall.toFixed(3),
    rowsPerSec: Math.round(input.rows.length / masked.wall),
    MBPerSec: +(mb / masked.wall).toFixed(1),
    MBPerCpuSec: +(mb / masked.cpu).toFixed(1),
    baselineStringifyMBPerSec: +(mb / stringify.wall).toFixed(1),
    baselineNoDetectorsMBPerSec: +(mb / noDetectors.wall).toFixed(1),
    /** Masking time over JSON.stringify time: how many serialisations one masking pass costs. */
    ratioVsStringify: +(masked.wall / stringify.wall).toFixed(2),
    ratioVsNoDetectors: +(masked.wall / noDetectors.wall).toFixed(2),
  };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const r = await benchMasking();
  console.log(`masking ${r.rows} rows (${r.inputMB} MB JSON): ${r.rowsPerSec} rows/s, ${r.MBPerSec} MB/s (${r.MBPerCpuSec} MB per CPU-second)`);
  console.log(`baselines: JSON.stringify ${r.baselineStringifyMBPerSec} MB/s (masking costs ${r.ratioVsStringify}×), no detectors ${r.baselineNoDetectorsMBPerSec} MB/s (${r.ratioVsNoDetectors}×)`);
  console.log(r);
}
