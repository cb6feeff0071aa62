/** Text helpers every adapter shares: what an agent wrote must look like what it is. */

// C0/C1 controls (but tab and newline), DEL, bidi embeddings/overrides/isolates and marks, zero-width characters, line/paragraph separators.
const INVISIBLE = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F\u061C\u200B-\u200F\u2028-\u202E\u2060-\u2069\uFEFF]/g;

/**
 * Shows control, invisible and bidi characters as `⟦U+202E⟧`, so agent text can neither
 * look other than it is (Trojan Source) nor drive a terminal (ANSI escapes, carriage returns).
 */
export function revealInvisible(s: string): string {
  return s.replace(INVISIBLE, (c) => `⟦U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}⟧`);
}

/** The classified facts as short lines; unknown shapes as JSON. All of it is shown in a code block. */
export function factsLines(facts: Record<string, unknown>): string[] {
  const list = (v: unknown) => (Array.isArray(v) && v.length > 0 ? v.map(String).join(', ') : undefined);
  const statements = facts.statements;
  if (Array.isArray(statements)) {
    return statements.map((s: Record<string, unknown>) => {
      const parts = [[s.kind, s.objectType].filter((x) => typeof x === 'string').join(' ') || 'statement'];
      const reads = list(s.tablesRead);
      const writes = list(s.tablesWritten);
      const fns = list(s.dangerousFunctions);
      if (reads) parts.push(`reads ${reads}`);
      if (writes) parts.push(`writes ${writes}`);
      if (typeof s.hasWhere === 'boolean') parts.push(s.hasWhere ? 'has WHERE' : 'no WHERE');
      if (fns) parts.push(`functions ${fns}`);
      return parts.join(' · ');
    });
  }
  const commands = facts.commands;
  if (Array.isArray(commands)) {
    const lines = commands.map((c: Record<string, unknown>) => [String(c.program ?? '?'), ...(Array.isArray(c.args) ? c.args.map(String) : [])].join(' '));
    const files = list(facts.filesWritten);
    return files ? [...lines, `writes files ${files}`] : lines;
  }
  return [JSON.stringify(facts)];
}
