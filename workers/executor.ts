/**
 * The one interface every target kind implements. An executor only runs a verified,
 * claimed order and returns raw output or throws a WritError; the runtime around it
 * (grant check, claim, masking, publishing, audit) is written once, in runtime.ts.
 */
import type { GrantClaims, Order } from '../schemas/index.ts';

/** Where a result field comes from, as the target reports it. */
export interface FieldInfo {
  name: string;
  /** schema.table and column; null for a computed field. */
  origin: { table: string; column: string } | null;
  /** A whole-row reference (`SELECT c FROM customers c`): the table's every column. */
  wholeRow?: boolean;
  /** For a whole-row reference: the table's column names. */
  tableColumns?: string[];
  /** For a view's column: the base columns (schema.table.column) the view draws on. */
  viewSources?: string[];
  /**
   * For a computed field: the base columns (schema.table.column) the statement draws on,
   * from its SQL facts; the runtime masks the field when any of them is sensitive.
   */
  sources?: string[];
}

export interface RowsOutput {
  type: 'rows';
  fields: FieldInfo[];
  rows: unknown[][];
  rowCount: number;
  truncated: boolean;
  /** Command tag(s), e.g. `SELECT`, `UPDATE`. */
  command: string;
  /** Notices the server sent; masked like errors before publishing. */
  notices: string[];
}

export interface StreamOutput {
  type: 'stream';
  /** Already masked line by line by the runtime's masker while streaming. */
  stdout: string;
  stderr: string;
  exitCode: number | null;
  signal: string | null;
  truncated: boolean;
}

export type ExecOutput = RowsOutput | StreamOutput;

export interface ExecContext {
  order: Order;
  claims: GrantClaims;
  /** Aborted when the worker stops hard or the time limit passes. */
  signal: AbortSignal;
  /** A fresh line masker for streamed output (SSH), built from the grant's masking spec. */
  streamMasker(): { push(chunk: Buffer | string): string; end(): string };
}

export interface Executor {
  readonly kind: 'postgres' | 'ssh';
  /** Target names this executor serves. */
  readonly targets: readonly string[];
  run(ctx: ExecContext): Promise<ExecOutput>;
  close(): Promise<void>;
}
