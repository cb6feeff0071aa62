/**
 * Small helpers over libpg-query's JSON parse tree. Fields typed as `Node`
 * are wrapped (`{"RangeVar": {...}}`); fields typed as a struct are not
 * (`"relation": {...}`), so the walker needs both shapes.
 */

import { relationSchema } from './pg-catalog.ts';

/** A JSON object of the parse tree. */
export type Obj = Record<string, unknown>;

/** The object, or undefined when the value is not a plain object. */
export function obj(v: unknown): Obj | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : undefined;
}

/** The array, or an empty one. */
export function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

/** The string, or undefined. */
export function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** `{Type: body}` → [Type, body]; undefined for anything else. Node type names start upper-case, field names do not. */
export function unwrap(v: unknown): [string, Obj] | undefined {
  const o = obj(v);
  if (!o) return undefined;
  const keys = Object.keys(o);
  if (keys.length !== 1) return undefined;
  const k = keys[0] as string;
  const first = k.charCodeAt(0);
  if (first < 65 || first > 90) return undefined;
  const body = obj(o[k]);
  return body ? [k, body] : undefined;
}

/** The body of a node of the given type, or undefined. */
export function nodeOf(v: unknown, type: string): Obj | undefined {
  const u = unwrap(v);
  return u && u[0] === type ? u[1] : undefined;
}

/** The text of a `{String: {sval}}` node (protobuf JSON omits an empty sval). */
export function sval(v: unknown): string | undefined {
  const s = nodeOf(v, 'String');
  return s ? (str(s.sval) ?? '') : undefined;
}

/** The strings of a list of String nodes (others skipped). */
export function names(v: unknown): string[] {
  const out: string[] = [];
  for (const item of arr(v)) {
    const s = sval(item);
    if (s !== undefined) out.push(s);
  }
  return out;
}

/**
 * Default schema for an unqualified relation. The worker pins `search_path = pg_catalog, public` on its
 * connections, so a name resolves exactly as the server will: in pg_catalog when pg_catalog has a relation
 * of that name (from the generated catalogue), else in public. `$user` and other schemas are never searched.
 */
function defaultSchema(relname: string): string {
  return relationSchema(relname);
}

/** Qualify a relation name given as parts (`[schema?, name]` or `[catalog, schema, name]`). */
export function qualifyParts(parts: string[]): string {
  if (parts.length === 0) return '?';
  if (parts.length === 1) {
    const name = parts[0] as string;
    return `${defaultSchema(name)}.${name}`;
  }
  return parts.slice(-2).join('.');
}

/** The schema-qualified name of a RangeVar body. */
export function rangeVarName(rv: Obj): string {
  const rel = str(rv.relname) ?? '?';
  const schema = str(rv.schemaname);
  return schema ? `${schema}.${rel}` : `${defaultSchema(rel)}.${rel}`;
}

/** The alias of a RangeVar / subselect / function, or undefined. */
export function aliasName(v: unknown): string | undefined {
  return str(obj(v)?.aliasname);
}

/** A printable name for a DDL object node: String, List of Strings, ObjectWithArgs, TypeName, RoleSpec, RangeVar. */
export function objectName(v: unknown): string {
  const u = unwrap(v);
  if (!u) {
    const o = obj(v);
    if (o && typeof o.relname === 'string') return rangeVarName(o);
    if (o && Array.isArray(o.objname)) return names(o.objname).join('.');
    if (o && Array.isArray(o.names)) return names(o.names).join('.');
    if (o && typeof o.rolename === 'string') return o.rolename;
    return '?';
  }
  const [type, body] = u;
  switch (type) {
    case 'String':
      return str(body.sval) ?? '';
    case 'List':
      return arr(body.items).map(objectName).join('.');
    case 'RangeVar':
      return rangeVarName(body);
    case 'ObjectWithArgs':
      return names(body.objname).join('.');
    case 'TypeName':
      return names(body.names).join('.');
    case 'RoleSpec':
      return (
        str(body.rolename) ??
        String(body.roletype ?? '?')
          .replace(/^ROLESPEC_/, '')
          .toLowerCase()
      );
    case 'Integer':
      return String(body.ival ?? 0);
    default:
      return '?';
  }
}

/** `OBJECT_MATVIEW` → `materialized_view`, `OBJECT_TABLE` → `table`. */
export function objectTypeName(t: unknown): string {
  const s = String(t ?? 'OBJECT_UNKNOWN')
    .replace(/^OBJECT_/, '')
    .toLowerCase();
  return OBJECT_RENAMES[s] ?? s;
}

const OBJECT_RENAMES: Record<string, string> = {
  matview: 'materialized_view',
  fdw: 'foreign_data_wrapper',
  foreign_server: 'server',
  tabconstraint: 'constraint',
  domconstraint: 'domain_constraint',
  statistic_ext: 'statistics',
  tsconfiguration: 'text_search_configuration',
  tsdictionary: 'text_search_dictionary',
  tsparser: 'text_search_parser',
  tstemplate: 'text_search_template',
  opclass: 'operator_class',
  opfamily: 'operator_family',
  largeobject: 'large_object',
  defacl: 'default_privileges',
  amop: 'operator_of_access_method',
  amproc: 'function_of_access_method',
  parameter_acl: 'parameter',
};

/** Object types whose names are relations (reported in tablesWritten). */
export const RELATION_OBJECT_TYPES = new Set(['table', 'view', 'materialized_view', 'sequence', 'foreign_table', 'index']);

/** JSON of a node with locations removed, to compare two expressions structurally. */
export function shape(v: unknown): string {
  return JSON.stringify(v, (k, val: unknown) => (k === 'location' ? undefined : val));
}
