/**
 * One-line summaries of rules, for planners that ask what they may do on a target
 * (`writ.api.targets`, the MCP `list_targets` tool) before they try.
 */
import type { Principal, TargetConfig } from '../../schemas/index.ts';
import type { TargetAccess } from '../policy.ts';
import type { CompiledRule } from './compile.ts';
import type { PolicyRule } from './schema.ts';

const list = (v: readonly string[], max = 8) => (v.length > max ? `${v.slice(0, max).join(', ')}, …` : v.join(', '));

/** What a rule covers, in a few words: `select, explain on analytics.*; read-only`. */
function summarize(rule: PolicyRule): string {
  const parts: string[] = [];
  const { sql, shell, time } = rule.match;
  if (sql) {
    const what = sql.kinds ? list(sql.kinds) : sql.notKinds ? `SQL except ${list(sql.notKinds)}` : '';
    const tables = sql.tables ?? sql.tablesRead ?? sql.tablesWritten;
    if (what || tables) parts.push(tables ? `${what || 'statements'} on ${list(tables)}` : what);
    if (sql.functions) parts.push(`functions ${list(sql.functions)}`);
    if (sql.whereless !== undefined) parts.push(sql.whereless ? 'UPDATE/DELETE without WHERE' : 'with a WHERE');
    if (sql.readOnly !== undefined) parts.push(sql.readOnly ? 'read-only statements' : 'statements that write');
    if (sql.maxStatements) parts.push(`at most ${sql.maxStatements} statements`);
    if (parts.length === 0) parts.push('any SQL');
  }
  if (shell) {
    parts.push(shell.programs ? `commands ${list(shell.programs)}` : shell.notPrograms ? `commands except ${list(shell.notPrograms)}` : 'shell commands');
    if (shell.args) parts.push(`arguments limited for ${list(Object.keys(shell.args))}`);
    if (shell.argv) parts.push(`argument positions fixed for ${list(Object.keys(shell.argv))}`);
    if (shell.network === true) parts.push('network redirections');
    if (shell.wrappers) parts.push(`via ${list(shell.wrappers)}`);
  }
  if (!sql && !shell) parts.push('any command');
  if (time) parts.push(`${time.days ? time.days.join(',') : 'daily'} ${time.from ?? '00:00'}-${time.to ?? '24:00'} ${time.tz ?? 'UTC'}`);
  const head =
    rule.effect === 'require_approval'
      ? `needs approval by ${rule.approval!.count} of [${rule.approval!.groups.join(', ')}]${rule.scope === 'any' ? ' when a statement or command matches' : ''}`
      : rule.effect === 'deny'
        ? 'denied'
        : `allowed${rule.mode ? ` (${rule.mode})` : ''}`;
  return `${head}: ${parts.join('; ')}${rule.description ? ` — ${rule.description}` : ''}`;
}

/** The rules whose principal and target conditions hold for this principal on this target, in document order. */
export function accessOf(rules: readonly CompiledRule[], principal: Principal, target: TargetConfig): TargetAccess[] {
  const out: TargetAccess[] = [];
  for (const r of rules) {
    if (!r.principal.every((k) => k.test(principal)) || !r.target.every((k) => k.test(target))) continue;
    // A rule about SQL says nothing about an SSH target, and the reverse.
    if (target.kind === 'ssh' ? !r.forShell : !r.forSql) continue;
    const access: TargetAccess = { rule: r.rule.id, effect: r.rule.effect, summary: summarize(r.rule) };
    if (r.rule.mode) access.mode = r.rule.mode;
    out.push(access);
  }
  return out;
}
