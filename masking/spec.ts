/**
 * The masking spec (it travels inside a signed execution grant, so it stays compact JSON)
 * and its compiled form. Compiling validates the spec again, so a caller cannot hand the
 * engine an object that never went through the schema.
 */
import { z } from 'zod';
import { WritError } from '../schemas/errors.ts';
import { Detector, DETECTOR_NAMES, Strategy, type DetectorName, type MaskOptions } from './types.ts';

const StrategySchema = z.enum(Strategy);
const DetectorNameSchema = z.enum(Detector);

/**
 * `schema.table.column`; `*` is a wildcard inside one segment (`*.*.ssn`, `public.cust*.email`).
 * Matching is case-insensitive: a mis-cased rule over-masks rather than leaks.
 */
const ColumnPatternSchema = z
  .string()
  .max(256)
  .refine((p) => {
    const segs = p.split('.');
    return segs.length === 3 && segs.every((s) => s.length > 0 && s.trim() === s);
  }, 'expected schema.table.column (three non-empty segments; * matches within one segment)');

const ColumnRuleSchema = z.strictObject({
  /** Which source columns the rule covers, e.g. `public.customers.email`, `*.*.ssn`. */
  column: ColumnPatternSchema,
  /** Default: the spec's `strategy`. */
  strategy: StrategySchema.optional(),
});

const DetectorEntrySchema = z.union([
  DetectorNameSchema,
  z.strictObject({
    name: DetectorNameSchema,
    /** Default: the spec's `strategy`. */
    strategy: StrategySchema.optional(),
  }),
]);

export const MaskingSpecSchema = z
  .strictObject({
    /** Strategy for every column rule and detector that names none. Default `redact`. */
    strategy: StrategySchema.default('redact'),
    /** Sensitive source columns; a field from one is masked whole, whatever its type. Default none. */
    columns: z.array(ColumnRuleSchema).max(1000).default([]),
    /**
     * Value detectors to run on strings that no column rule masked, as names or
     * `{ name, strategy }`. Absent: all of them. `[]`: none (an explicit policy decision).
     */
    detectors: z.array(DetectorEntrySchema).max(64).optional(),
    /**
     * Computed fields of a statement that calls a function the classifier cannot see into
     * (one that runs SQL text or reads a relation by name, like `query_to_xml`, or any
     * function it does not know) are redacted whole, because where their values come from
     * cannot be known. `true` shows them (value detectors still run): set it only for a
     * rule whose named functions are known to return nothing sensitive. Default false.
     */
    trustComputed: z.boolean().optional(),
    /**
     * A write (INSERT, UPDATE, MERGE, CREATE TABLE AS, SELECT INTO, COPY TO a file, a function
     * that stores session or server state) whose values may come from a masked column is
     * refused (WRIT_MASKED_COPY): column masking follows a column by its origin, not the value
     * once it is stored elsewhere, so whoever reads the copy would see it in the clear. `true`
     * lets this rule's writes copy masked values (an operator's migration, a backfill). Default false.
     */
    copyMasked: z.boolean().optional(),
    /**
     * A statement that reads a masked column where its value is no result field (WHERE, JOIN ON,
     * GROUP BY, HAVING, ORDER BY, DISTINCT, LIMIT, a window's PARTITION/ORDER BY, a FROM-clause or
     * set-returning function's arguments, an UPDATE/DELETE/MERGE filter) is refused
     * (WRIT_MASKED_FILTER): the rows it lets through are plain columns and answer questions about
     * the masked value (`WHERE email LIKE 'a%'`), enough to recover it. `true` allows such uses for
     * this rule (a principal trusted to look up by the value). Default false.
     */
    filterMasked: z.boolean().optional(),
  })
  .superRefine((spec, ctx) => {
    const seen = new Set<string>();
    spec.detectors?.forEach((d, i) => {
      const name = typeof d === 'string' ? d : d.name;
      if (seen.has(name)) ctx.addIssue({ code: 'custom', path: ['detectors', i], message: `detector "${name}" is listed twice` });
      seen.add(name);
    });
  });

/** A parsed masking spec (defaults applied). */
export type MaskingSpec = z.output<typeof MaskingSpecSchema>;
/** A masking spec as written in a policy (defaults optional). */
export type MaskingSpecInput = z.input<typeof MaskingSpecSchema>;

/** One column rule, ready to match `schema.table.column` names. */
export interface ColumnRule {
  readonly pattern: string;
  readonly strategy: Strategy;
  /** Matches the full `schema.table.column`. */
  readonly full: RegExp;
  /** Matches `schema.table` alone, for whole-row references whose columns are unknown. */
  readonly table: RegExp;
  /** Matches the column segment alone, for error texts that name only the column. */
  readonly column: RegExp;
  /** The column segment as written, for reasons. */
  readonly columnSegment: string;
}

const COMPILED: unique symbol = Symbol('writ.masking.compiled');

/** A validated spec with its runtime key; build once per grant with compileMasking. */
export interface CompiledMasking {
  readonly [COMPILED]: true;
  readonly spec: MaskingSpec;
  readonly strategy: Strategy;
  readonly columns: readonly ColumnRule[];
  /** Strategy per enabled detector; a missing name is disabled. */
  readonly detectors: Readonly<Partial<Record<DetectorName, Strategy>>>;
  /** Quick on/off lookup for the scanners. */
  readonly enabled: Readonly<Record<DetectorName, boolean>>;
  readonly hmacKey: Buffer | undefined;
}

const MIN_KEY_BYTES = 16;

function segmentSource(seg: string): string {
  return seg
    .split('*')
    .map((lit) => lit.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&'))
    .join('[^.]*');
}

function compileRule(pattern: string, strategy: Strategy): ColumnRule {
  const [s = '', t = '', c = ''] = pattern.split('.');
  return {
    pattern,
    strategy,
    full: new RegExp(`^${segmentSource(s)}\\.${segmentSource(t)}\\.${segmentSource(c)}$`, 'i'),
    table: new RegExp(`^${segmentSource(s)}\\.${segmentSource(t)}$`, 'i'),
    column: new RegExp(`^${segmentSource(c)}$`, 'i'),
    columnSegment: c,
  };
}

function isCompiled(x: unknown): x is CompiledMasking {
  return typeof x === 'object' && x !== null && (x as Record<symbol, unknown>)[COMPILED] === true;
}

/**
 * Validates a spec and binds the runtime options. Throws WRIT_MASKING_FAILED when the spec
 * does not parse or uses `hash` without a deployment key: masking is never skipped.
 * An already compiled spec is returned as it is.
 */
export function compileMasking(spec: MaskingSpecInput | CompiledMasking, opts: MaskOptions = {}): CompiledMasking {
  return build(spec, opts, true);
}

function build(spec: MaskingSpecInput | CompiledMasking, opts: MaskOptions, requireKey: boolean): CompiledMasking {
  if (isCompiled(spec)) return spec;
  const r = MaskingSpecSchema.safeParse(spec);
  if (!r.success) {
    const where = r.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(spec)'}: ${i.message}`).join('; ');
    throw new WritError('WRIT_MASKING_FAILED', `the masking spec is not valid: ${where}`, { cause: r.error });
  }
  const p = r.data;
  const detectors: Partial<Record<DetectorName, Strategy>> = {};
  if (p.detectors === undefined) for (const d of DETECTOR_NAMES) detectors[d] = p.strategy;
  else for (const d of p.detectors) typeof d === 'string' ? (detectors[d] = p.strategy) : (detectors[d.name] = d.strategy ?? p.strategy);
  const enabled = Object.fromEntries(DETECTOR_NAMES.map((d) => [d, detectors[d] !== undefined])) as Record<DetectorName, boolean>;
  const columns = p.columns.map((c) => compileRule(c.column, c.strategy ?? p.strategy));

  const usesHash = p.strategy === 'hash' || columns.some((c) => c.strategy === 'hash') || Object.values(detectors).includes('hash');
  const key = opts.hmacKey;
  if (key !== undefined && (!Buffer.isBuffer(key) || key.length < MIN_KEY_BYTES)) {
    throw new WritError('WRIT_MASKING_FAILED', `the masking hmac key must be a Buffer of at least ${MIN_KEY_BYTES} bytes`);
  }
  if (requireKey && usesHash && key === undefined) {
    throw new WritError('WRIT_MASKING_FAILED', 'the masking spec uses the hash strategy but no deployment key is configured');
  }
  return Object.freeze({ [COMPILED]: true as const, spec: p, strategy: p.strategy, columns, detectors, enabled, hmacKey: key });
}

/** The first column rule matching `schema.table.column`, if any. */
export function ruleForColumn(c: CompiledMasking, fullName: string): ColumnRule | undefined {
  return c.columns.find((r) => r.full.test(fullName));
}

/**
 * Which of the given `schema.table.column` names the spec marks sensitive; for callers that
 * decide `sensitiveSources` of computed fields from a statement's SQL facts.
 */
export function sensitiveColumns(spec: MaskingSpecInput | CompiledMasking, names: readonly string[], opts: MaskOptions = {}): string[] {
  // Deciding sensitivity needs no key, so a hash spec is accepted here without one.
  const c = build(spec, opts, false);
  return names.filter((n) => ruleForColumn(c, n) !== undefined);
}

/** The strategy of the column rule that masks `schema.table.column`, if one does. */
export function columnStrategy(spec: MaskingSpecInput | CompiledMasking, name: string): Strategy | undefined {
  return ruleForColumn(build(spec, {}, false), name)?.strategy;
}
