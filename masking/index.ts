/**
 * The masking engine: pure functions over values, text and streams; no database, no NATS.
 * Workers call it before anything is published: a result is masked whole or withheld
 * (WRIT_MASKING_FAILED), never passed through. Decisions are written down in README.md.
 */
export { MaskingSpecSchema, columnStrategy, compileMasking, sensitiveColumns } from './spec.ts';
export type { MaskingSpec, MaskingSpecInput, CompiledMasking } from './spec.ts';
export { maskRows } from './rows.ts';
export { maskText } from './text.ts';
export { genericSqlError } from './errors.ts';
export { LineMasker } from './stream.ts';
export type { DetectorName, FieldInput, LineMaskerOptions, RowsInput } from './types.ts';
