/**
 * Generic texts for database errors whose own text may quote a masked value. PostgreSQL
 * puts values in the message (`invalid input syntax for type integer: "hunter2"`), the
 * DETAIL (`Key (email)=(…)`, `Failing row contains (…)`, `Token "…" is invalid`) and the
 * CONTEXT (`JSON data, line 1: …`); no pattern list finds them all. When a failed statement
 * touched a masked column, the caller replaces the whole text with this one: the SQLSTATE
 * stays (it names the condition), nothing the server wrote does.
 */

/** A few frequent conditions, worded as PostgreSQL words them minus the value. */
const BY_CODE: Readonly<Record<string, string>> = {
  '22P02': 'invalid input syntax for the target type',
  '22003': 'numeric value out of range',
  '22007': 'invalid datetime format',
  '22008': 'datetime field out of range',
  '22001': 'value too long for the target type',
  '22012': 'division by zero',
  '22023': 'invalid parameter value',
  '22P05': 'untranslatable character',
  '2201B': 'invalid regular expression',
  '22032': 'invalid JSON text',
  '23505': 'duplicate key value violates a unique constraint',
  '23503': 'insert or update violates a foreign key constraint',
  '23502': 'null value violates a not-null constraint',
  '23514': 'new row violates a check constraint',
  '23P01': 'conflicting key value violates an exclusion constraint',
  '42804': 'datatype mismatch',
  '42883': 'function or operator does not exist for these argument types',
  P0001: 'an exception was raised',
};

/** PostgreSQL's error classes (Appendix A), by the SQLSTATE's first two characters. */
const BY_CLASS: Readonly<Record<string, string>> = {
  '01': 'warning',
  '02': 'no data',
  '03': 'SQL statement not yet complete',
  '08': 'connection exception',
  '09': 'triggered action exception',
  '0A': 'feature not supported',
  '0B': 'invalid transaction initiation',
  '0F': 'locator exception',
  '0L': 'invalid grantor',
  '0P': 'invalid role specification',
  '0Z': 'diagnostics exception',
  '20': 'case not found',
  '21': 'cardinality violation',
  '22': 'data exception',
  '23': 'integrity constraint violation',
  '24': 'invalid cursor state',
  '25': 'invalid transaction state',
  '26': 'invalid SQL statement name',
  '27': 'triggered data change violation',
  '28': 'invalid authorization specification',
  '2B': 'dependent privilege descriptors still exist',
  '2D': 'invalid transaction termination',
  '2F': 'SQL routine exception',
  '34': 'invalid cursor name',
  '38': 'external routine exception',
  '39': 'external routine invocation exception',
  '3B': 'savepoint exception',
  '3D': 'invalid catalog name',
  '3F': 'invalid schema name',
  '40': 'transaction rollback',
  '42': 'syntax error or access rule violation',
  '44': 'WITH CHECK OPTION violation',
  '53': 'insufficient resources',
  '54': 'program limit exceeded',
  '55': 'object not in prerequisite state',
  '57': 'operator intervention',
  '58': 'system error',
  '72': 'snapshot failure',
  F0: 'configuration file error',
  HV: 'foreign data wrapper error',
  P0: 'PL/pgSQL error',
  XX: 'internal error',
};

/** The generic text for a SQLSTATE (an unknown or missing one gets a generic text too). */
export function genericSqlError(sqlstate: string | undefined): string {
  const code = typeof sqlstate === 'string' && /^[0-9A-Z]{5}$/.test(sqlstate) ? sqlstate : undefined;
  const what = (code && (BY_CODE[code] ?? BY_CLASS[code.slice(0, 2)])) ?? 'the statement failed';
  return `${what}${code ? ` (SQLSTATE ${code})` : ''}; the server's message is withheld because the statement touches a masked column`;
}
