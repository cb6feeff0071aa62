/**
 * The one interface every target kind implements. An executor only runs a verified,
 * claimed order and returns raw output or throws a WritError; the runtime around it
 * (grant check, claim, masking, publishing, audit) is written once, in runtime.ts.
 */
import type { GrantClaims, OrderBody, TargetKind } from '../schemas/index.ts';

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
  /**
   * For a computed field: why its value cannot be traced (the statement calls functions the
   * classifier cannot see into, e.g. `query_to_xml`); the runtime redacts it unless the
   * masking spec trusts computed fields.
   */
  opaque?: string;
}

/**
 * What a failed statement touched, so the runtime can decide how much of the server's
 * error text may be shown (`invalid input syntax for type integer: "<a masked value>"`).
 */
export interface ErrorContext {
  /** The message is the database server's text, which can quote values. */
  serverText: boolean;
  /** Base columns (schema.table.column) the failed batch reads or writes, views resolved. */
  sources: string[];
  /** The batch reads through something the worker cannot trace (unknown function, opaque read, facts unavailable). */
  opaque: boolean;
}

const errorContexts = new WeakMap<object, ErrorContext>();

export function setErrorContext<E extends Error>(e: E, c: ErrorContext): E {
  errorContexts.set(e, c);
  return e;
}

export function errorContextOf(e: unknown): ErrorContext | undefined {
  return typeof e === 'object' && e !== null ? errorContexts.get(e) : undefined;
}

export interface RowsOutput {
  type: 'rows';
  fields: FieldInfo[];
  rows: unknown[][];
  rowCount: number;
  truncated: boolean;
  /** Which limit cut the rows, when the executor knows: the row limit, or the byte limit. */
  truncatedBy?: 'rows' | 'bytes';
  /** Command tag(s), e.g. `SELECT`, `UPDATE`. */
  command: string;
  /** Notices the server sent; masked like errors before publishing. */
  notices: string[];
  /**
   * The rows came in an order the statement did not ask for and that may follow a masked column
   * (a plan through an index on one, or a heap stored in its order: the workers' order.ts): the
   * runtime hands them back sorted by their masked text, an order that tells nothing the values do not.
   */
  unordered?: true;
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
  order: OrderBody;
  claims: GrantClaims;
  /** Aborted when the worker stops hard or the time limit passes. */
  signal: AbortSignal;
  /** A fresh line masker for streamed output (SSH), built from the grant's masking spec. */
  streamMasker(): { push(chunk: Buffer | string): string; end(): string };
}

export interface Executor {
  readonly kind: TargetKind;
  /** Target names this executor serves. */
  readonly targets: readonly string[];
  run(ctx: ExecContext): Promise<ExecOutput>;
  close(): Promise<void>;
}
