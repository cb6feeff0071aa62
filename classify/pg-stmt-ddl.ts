/**
 * Handlers for DDL, privilege and maintenance statements. Relations they
 * change are reported in tablesWritten; other objects only by name.
 */
import { arr, nodeOf, obj, objectName, objectTypeName, qualifyParts, RELATION_OBJECT_TYPES, str, type Obj } from './pg-ast.ts';
import { def, namesIn, relsOf, walkBody, type Handler, type StmtType } from './pg-stmt-common.ts';

const typeOf = (field: string) => (b: Obj) => objectTypeName(b[field]);

/** Object types named `table.object` (DROP POLICY p ON t → List [t, p]): the table is changed too. */
const ON_TABLE_TYPES = new Set(['policy', 'trigger', 'rule', 'constraint']);

/** Relation names (for tablesWritten) and display names of the objects in a DROP / COMMENT / SECURITY LABEL. */
function objectsOf(type: string, objects: unknown[]): { names: string[]; relations: string[] } {
  const out = { names: [] as string[], relations: [] as string[] };
  for (const o of objects) {
    const items = arr(nodeOf(o, 'List')?.items).map(objectName);
    if (RELATION_OBJECT_TYPES.has(type) && items.length) {
      const rel = qualifyParts(items);
      out.names.push(rel);
      out.relations.push(rel);
    } else if (ON_TABLE_TYPES.has(type) && items.length > 1) {
      out.names.push(items.join('.'));
      out.relations.push(qualifyParts(items.slice(0, -1)));
    } else if (type === 'column' && items.length > 1) {
      out.names.push(items.join('.'));
      out.relations.push(qualifyParts(items.slice(0, -1)));
    } else {
      out.names.push(items.length ? items.join('.') : objectName(o));
    }
  }
  return out;
}

const drop: Handler = (b, x) => {
  const type = objectTypeName(b.removeType);
  const { names, relations } = objectsOf(type, arr(b.objects));
  for (const r of relations) x.c.tablesWritten.add(r);
  walkBody(b, x);
  return { kind: 'drop', objectType: type, objectNames: names };
};

const comment =
  (kind: 'comment' | 'security_label'): Handler =>
  (b, x) => {
    const type = objectTypeName(b.objtype);
    const { names } = objectsOf(type, [b.object]);
    walkBody(b, x);
    return { kind, objectType: type, objectNames: names };
  };

const grant: Handler = (b, x) => {
  const type = objectTypeName(b.objtype);
  const rels = relsOf(b.objects);
  for (const rv of rels) x.c.write(rv); // a privilege change on a table is a change to it
  walkBody(b, x);
  const all = b.targtype === 'ACL_TARGET_ALL_IN_SCHEMA';
  return {
    kind: b.is_grant === true ? 'grant' : 'revoke',
    objectType: all ? `all_${type}s_in_schema` : type,
    objectNames: arr(b.objects).map(objectName),
  };
};

const grantRole: Handler = (b, x) => {
  walkBody(b, x);
  return {
    kind: b.is_grant === true ? 'grant' : 'revoke',
    objectType: 'role',
    objectNames: arr(b.granted_roles).map((r) => str(nodeOf(r, 'AccessPriv')?.priv_name) ?? objectName(r)),
  };
};

const defaultPrivileges: Handler = (b, x) => {
  walkBody(b, x);
  const action = obj(b.action) ?? {};
  return { kind: action.is_grant === true ? 'grant' : 'revoke', objectType: 'default_privileges', objectNames: [objectTypeName(action.objtype)] };
};

/** RENAME / SET SCHEMA / OWNER TO / DEPENDS ON: a relation when there is one, else an object. */
const alterObject =
  (typeField: string): Handler =>
  (b, x) => {
    const type = objectTypeName(b[typeField]);
    const rels = relsOf(b.relation);
    for (const rv of rels) x.c.write(rv);
    walkBody(b, x, rels[0]);
    const names = rels.length ? rels.map(objectName) : objectsOf(type, [b.object]).names;
    return { kind: 'alter', objectType: type, objectNames: names };
  };

const vacuum: Handler = (b, x) => {
  const rels = arr(b.rels).flatMap((r) => relsOf(obj(nodeOf(r, 'VacuumRelation')?.relation)));
  for (const rv of rels) x.c.write(rv);
  walkBody(b, x);
  return { kind: b.is_vacuumcmd === true ? 'vacuum' : 'analyze', objectType: 'table', objectNames: rels.map(objectName) };
};

const reindexType = (b: Obj) =>
  String(b.kind ?? '')
    .replace(/^REINDEX_OBJECT_/, '')
    .toLowerCase();

const createFunction: Handler = (b, x) => {
  walkBody(b, x);
  return { kind: 'create', objectType: b.is_procedure === true ? 'procedure' : 'function', objectNames: namesIn(b.funcname) };
};

const compositeType: Handler = (b, x) => {
  const tv = obj(b.typevar);
  if (tv) x.c.claimed.add(tv); // the type's name is a RangeVar, but no table is read
  walkBody(b, x);
  return { kind: 'create', objectType: 'type', objectNames: tv ? [objectName(tv)] : [] };
};

const createForeignTable: Handler = (b, x) => {
  const base = obj(b.base) ?? {};
  const rels = relsOf(base.relation);
  for (const rv of rels) x.c.write(rv);
  walkBody(b, x, rels[0]);
  return { kind: 'create', objectType: 'foreign_table', objectNames: rels.map(objectName) };
};

const alterSystem: Handler = (b, x) => {
  walkBody(b, x);
  return { kind: 'alter', objectType: 'system', objectNames: namesIn(obj(b.setstmt)?.name) };
};

/** Handlers for the DDL, privilege and maintenance statement types. */
export const DDL_HANDLERS = {
  CreateStmt: def('create', 'table', { rels: 'relation', names: 'relation' }),
  CreateTableAsStmt: (b, x) => {
    const into = obj(b.into) ?? {};
    const rels = relsOf(into.rel);
    for (const rv of rels) x.c.write(rv);
    walkBody(b, x);
    return { kind: 'create', objectType: objectTypeName(b.objtype), objectNames: rels.map(objectName) };
  },
  ViewStmt: def('create', 'view', { rels: 'view', names: 'view' }),
  IndexStmt: def('create', 'index', { rels: 'relation', names: 'idxname' }),
  CreateSeqStmt: def('create', 'sequence', { rels: 'sequence', names: 'sequence' }),
  AlterSeqStmt: def('alter', 'sequence', { rels: 'sequence', names: 'sequence' }),
  CreateForeignTableStmt: createForeignTable,
  AlterTableStmt: def('alter', typeOf('objtype'), { rels: 'relation', names: 'relation', cmds: 'cmds' }),
  AlterTableMoveAllStmt: def('alter', typeOf('objtype'), { names: 'orig_tablespacename' }),
  ReplicaIdentityStmt: def('alter', 'table', {}),
  RenameStmt: alterObject('renameType'),
  AlterObjectSchemaStmt: alterObject('objectType'),
  AlterOwnerStmt: alterObject('objectType'),
  AlterObjectDependsStmt: alterObject('objectType'),
  TruncateStmt: def('truncate', 'table', { rels: 'relations', names: 'relations' }),
  LockStmt: def('lock', 'table', { rels: 'relations', names: 'relations' }),
  VacuumStmt: vacuum,
  ClusterStmt: def('cluster', 'table', { rels: 'relation', names: 'relation' }),
  ReindexStmt: def('reindex', reindexType, { rels: 'relation', names: ['relation', 'name'] }),
  RefreshMatViewStmt: def('refresh', 'materialized_view', { rels: 'relation', names: 'relation' }),
  DropStmt: drop,
  CommentStmt: comment('comment'),
  SecLabelStmt: comment('security_label'),
  GrantStmt: grant,
  GrantRoleStmt: grantRole,
  AlterDefaultPrivilegesStmt: defaultPrivileges,
  CreateRoleStmt: def('create', 'role', { names: 'role' }),
  AlterRoleStmt: def('alter', 'role', { names: 'role' }),
  AlterRoleSetStmt: def('alter', 'role', { names: 'role' }),
  DropRoleStmt: def('drop', 'role', { names: 'roles' }),
  CreateSchemaStmt: def('create', 'schema', { names: 'schemaname' }),
  CreateExtensionStmt: def('create', 'extension', { names: 'extname' }),
  AlterExtensionStmt: def('alter', 'extension', { names: 'extname' }),
  AlterExtensionContentsStmt: def('alter', 'extension', { names: 'extname' }),
  CreateFdwStmt: def('create', 'foreign_data_wrapper', { names: 'fdwname' }),
  AlterFdwStmt: def('alter', 'foreign_data_wrapper', { names: 'fdwname' }),
  CreateForeignServerStmt: def('create', 'server', { names: 'servername' }),
  AlterForeignServerStmt: def('alter', 'server', { names: 'servername' }),
  CreateUserMappingStmt: def('create', 'user_mapping', { names: 'servername' }),
  AlterUserMappingStmt: def('alter', 'user_mapping', { names: 'servername' }),
  DropUserMappingStmt: def('drop', 'user_mapping', { names: 'servername' }),
  ImportForeignSchemaStmt: def('import', 'foreign_schema', { names: ['remote_schema', 'local_schema'] }),
  CreatePolicyStmt: def('create', 'policy', { rels: 'table', names: 'policy_name' }),
  AlterPolicyStmt: def('alter', 'policy', { rels: 'table', names: 'policy_name' }),
  CreateAmStmt: def('create', 'access_method', { names: 'amname' }),
  CreateTrigStmt: def('create', 'trigger', { rels: 'relation', names: 'trigname' }),
  CreateEventTrigStmt: def('create', 'event_trigger', { names: 'trigname' }),
  AlterEventTrigStmt: def('alter', 'event_trigger', { names: 'trigname' }),
  CreatePLangStmt: def('create', 'language', { names: 'plname' }),
  DefineStmt: def('create', typeOf('kind'), { names: 'defnames' }),
  CreateDomainStmt: def('create', 'domain', { names: 'domainname' }),
  AlterDomainStmt: def('alter', 'domain', { names: 'typeName' }),
  CreateOpClassStmt: def('create', 'operator_class', { names: 'opclassname' }),
  CreateOpFamilyStmt: def('create', 'operator_family', { names: 'opfamilyname' }),
  AlterOpFamilyStmt: def('alter', 'operator_family', { names: 'opfamilyname' }),
  CreateStatsStmt: def('create', 'statistics', { rels: 'relations', names: 'defnames' }),
  AlterStatsStmt: def('alter', 'statistics', { names: 'defnames' }),
  CreateFunctionStmt: createFunction,
  AlterFunctionStmt: def('alter', typeOf('objtype'), { names: 'func' }),
  AlterOperatorStmt: def('alter', 'operator', { names: 'opername' }),
  AlterTypeStmt: def('alter', 'type', { names: 'typeName' }),
  AlterCollationStmt: def('alter', 'collation', { names: 'collname' }),
  RuleStmt: def('create', 'rule', { rels: 'relation', names: 'rulename' }),
  CompositeTypeStmt: compositeType,
  CreateEnumStmt: def('create', 'type', { names: 'typeName' }),
  CreateRangeStmt: def('create', 'type', { names: 'typeName' }),
  AlterEnumStmt: def('alter', 'type', { names: 'typeName' }),
  CreatedbStmt: def('create', 'database', { names: 'dbname' }),
  AlterDatabaseStmt: def('alter', 'database', { names: 'dbname' }),
  AlterDatabaseRefreshCollStmt: def('alter', 'database', { names: 'dbname' }),
  AlterDatabaseSetStmt: def('alter', 'database', { names: 'dbname' }),
  DropdbStmt: def('drop', 'database', { names: 'dbname' }),
  AlterSystemStmt: alterSystem,
  CreateTableSpaceStmt: def('create', 'tablespace', { names: 'tablespacename' }),
  DropTableSpaceStmt: def('drop', 'tablespace', { names: 'tablespacename' }),
  AlterTableSpaceOptionsStmt: def('alter', 'tablespace', { names: 'tablespacename' }),
  CreateConversionStmt: def('create', 'conversion', { names: 'conversion_name' }),
  CreateCastStmt: def('create', 'cast', { names: ['sourcetype', 'targettype'] }),
  CreateTransformStmt: def('create', 'transform', { names: ['type_name', 'lang'] }),
  DropOwnedStmt: def('drop', 'owned', { names: 'roles' }),
  ReassignOwnedStmt: def('reassign', 'owned', { names: 'roles' }),
  AlterTSDictionaryStmt: def('alter', 'text_search_dictionary', { names: 'dictname' }),
  AlterTSConfigurationStmt: def('alter', 'text_search_configuration', { names: 'cfgname' }),
  CreatePublicationStmt: def('create', 'publication', { names: 'pubname' }),
  AlterPublicationStmt: def('alter', 'publication', { names: 'pubname' }),
  CreateSubscriptionStmt: def('create', 'subscription', { names: 'subname' }),
  AlterSubscriptionStmt: def('alter', 'subscription', { names: 'subname' }),
  DropSubscriptionStmt: def('drop', 'subscription', { names: 'subname' }),
} satisfies Partial<Record<StmtType, Handler>>;
