/**
 * Types of the masking engine. The spec's zod schema lives in spec.ts; everything
 * here is plain TypeScript shared by the engine's files and its callers.
 */

/** How a sensitive value is replaced. */
export const Strategy = {
  /** `[MASKED:<reason>]`, e.g. `[MASKED:email]`. Nothing of the value survives. */
  redact: 'redact',
  /** Keeps a recognisable, non-secret part: `j***@example.com`, `***-**-1120`, `ghp_***`. */
  partial: 'partial',
  /** `hmac:<first 16 hex of HMAC-SHA-256>` under a deployment key, so masked values can still be joined. */
  hash: 'hash',
} as const;
export type Strategy = (typeof Strategy)[keyof typeof Strategy];

/** Value detectors, run on every string that no column rule masked whole. */
export const Detector = {
  /** E-mail addresses (ASCII local part and domain with an alphabetic TLD). */
  email: 'email',
  /** Payment card numbers: 13–19 digits, optional single spaces/dashes, a card-brand prefix and a valid Luhn check. */
  card: 'card',
  /** US social security numbers `078-05-1120` / `078 05 1120`; bare 9 digits only next to an SSN keyword. */
  ssn: 'ssn',
  /** IBANs of known countries with their exact length and a valid mod-97 check. */
  iban: 'iban',
  /** Phone numbers: `+` international, NANP with separators, trunk-prefixed national numbers with separators. */
  phone: 'phone',
  /** AWS access key ids (AKIA/ASIA/ABIA/ACCA…) and secret keys or session tokens next to their key name. */
  aws_key: 'aws_key',
  /** Google API keys (`AIza…`) and the `"private_key"` value of service-account JSON. */
  gcp_key: 'gcp_key',
  /** GitHub tokens: ghp_/gho_/ghu_/ghs_/ghr_ and github_pat_. */
  github_token: 'github_token',
  /** Slack tokens (xoxb-, xoxp-, …, xapp-) and the secret path of hooks.slack.com webhook URLs. */
  slack_token: 'slack_token',
  /** JSON Web Tokens (JWS/JWE compact form) whose header decodes to JSON with an `alg`. */
  jwt: 'jwt',
  /** PEM private key blocks, including partial ones (BEGIN without END, or a body before END). */
  private_key: 'private_key',
  /** The password of `scheme://user:password@host`. */
  url_password: 'url_password',
} as const;
export type DetectorName = (typeof Detector)[keyof typeof Detector];

/** Every detector name, in the order hits of equal length are preferred when they overlap. */
export const DETECTOR_NAMES: readonly DetectorName[] = Object.values(Detector);

/** Options given at run time, never carried in the spec. */
export interface MaskOptions {
  /**
   * Deployment key for the `hash` strategy (at least 16 bytes). Required when the spec uses
   * `hash` anywhere; without it compiling the spec throws WRIT_MASKING_FAILED.
   */
  hmacKey?: Buffer;
}

/** Where a result field comes from. */
interface FieldOrigin {
  /** `schema.table` as the database names it. Anything else (e.g. `oid:16384`) is unresolved and treated as sensitive when the spec has column rules. */
  table: string;
  /** The column name; `'*'` for a whole-row reference. */
  column: string;
}

/** One result field as the caller knows it. */
export interface FieldInput {
  /** The field's name in the result (its alias). */
  name: string;
  /** The source column; null for a computed field (expression, UNION, …). */
  origin: FieldOrigin | null;
  /** A whole-row reference (`SELECT c FROM customers c`); origin.column is then `'*'`. Default false. */
  wholeRow?: boolean;
  /**
   * For a whole-row field: the table's column names, when known. With them only a rule that
   * matches one of them masks the field; without them any rule naming the table does (fail closed).
   */
  tableColumns?: string[];
  /**
   * For a computed field: the sensitive columns (`schema.table.column`) its expression draws
   * on, decided by the caller from the statement's SQL facts. Non-empty masks the field whole.
   */
  sensitiveSources?: string[];
  /**
   * For a computed field: why its origin cannot be traced (e.g. `opaque:query_to_xml`). Masks
   * the field whole (redacted) unless the spec sets `trustComputed`.
   */
  opaque?: string;
}

export interface RowsInput {
  fields: FieldInput[];
  /** One array per row, one cell per field, in field order. A row of another length fails masking. */
  rows: unknown[][];
}

/** What happened to one result column. */
export interface ColumnReport {
  name: string;
  /** True when the column is masked whole (column rule, derived, whole row) or a detector changed one of its values. */
  masked: boolean;
  /**
   * Why, deduplicated in first-seen order: `column:public.customers.email` (a column rule),
   * `derived:public.customers.email` (a computed field drawing on it), `detector:email` (a value detector).
   */
  reasons: string[];
}

export interface RowsResult {
  /** The masked rows; inputs are never modified. A row, JSON value or array in which nothing changed is returned as it is, not copied. */
  rows: unknown[][];
  columns: ColumnReport[];
  /** Number of cells whose value was changed (a cell with three detector hits counts once). */
  maskedValues: number;
}

export interface TextResult {
  text: string;
  /** One reason per masked span, in text order: `detector:ssn`, `column:email`, … */
  hits: string[];
}

export interface LineMaskerOptions extends MaskOptions {
  /**
   * Upper bound on text held back while waiting for a newline or the end of a private-key
   * block, counted in UTF-16 code units (bytes for ASCII). Past it the held text is flushed
   * masked; see stream.ts for what that can cost. Default 65,536; minimum 4,096.
   */
  maxHeldBytes?: number;
}

/** A detector hit inside one string: the span [start, end) is replaced. */
export interface Hit {
  start: number;
  end: number;
  detector: DetectorName;
  /**
   * Where the evidence for the hit begins (≤ start): e.g. the `aws_secret_access_key=` before
   * a secret. A stream may only be cut outside [ctx, end), or the context would be lost.
   */
  ctx: number;
  /** For private keys: true when the block had no END marker and may continue past the string. */
  open?: boolean;
}
