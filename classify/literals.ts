/**
 * Where a command's literal values are, by the real grammars' tokens: SQL string and bit
 * constants and comments (libpg-query's scanner), shell words, strings and comments
 * (tree-sitter-bash). Whatever masks a command for human eyes (approvers, the audit log)
 * rewrites only inside these spans, so a mask can never join or split tokens: the text an
 * approver sees has the structure of the text that runs.
 */
import { scanSync } from 'libpg-query';
import type { Node } from 'web-tree-sitter';
import { bashParser, pgParse } from './runtime.ts';

/** A literal's span in the text (UTF-16 offsets, end exclusive) and the part that may be rewritten. */
export interface LiteralSpan {
  /** The whole token. */
  start: number;
  end: number;
  /** The content between the token's delimiters (quotes, `$tag$`, `--`, `/* *\/`). */
  innerStart: number;
  innerEnd: number;
  /** `other`: a keyword, identifier, operator or number: not rewritable without changing the text's meaning. */
  kind: 'string' | 'comment' | 'word' | 'other';
}

/** UTF-8 byte offset → UTF-16 offset, for the scanner's byte positions. */
function byteToChar(text: string): (b: number) => number {
  const map: number[] = [];
  let b = 0;
  for (let i = 0; i < text.length; i++) {
    const cp = text.codePointAt(i)!;
    const n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    for (let k = 0; k < n; k++) map[b + k] = i;
    b += n;
    if (cp >= 0x10000) i++;
  }
  map[b] = text.length;
  return (x) => map[x] ?? text.length;
}

const SQL_STRING_TOKENS = new Set(['SCONST', 'USCONST', 'BCONST', 'XCONST']);
const SQL_COMMENT_TOKENS = new Set(['SQL_COMMENT', 'C_COMMENT']);

/** Every token of a SQL text; string constants and comments with their content; throws what the scanner throws. */
export function sqlLiterals(text: string): LiteralSpan[] {
  pgParse('SELECT 1'); // the module is loaded (throws a coded error otherwise)
  const at = byteToChar(text);
  const out: LiteralSpan[] = [];
  for (const t of scanSync(text).tokens) {
    const start = at(t.start);
    const end = at(t.end);
    const tok = text.slice(start, end);
    if (SQL_COMMENT_TOKENS.has(t.tokenName)) {
      const open = tok.startsWith('--') ? 2 : 2;
      const close = tok.startsWith('/*') && tok.endsWith('*/') ? 2 : 0;
      out.push({ start, end, innerStart: start + open, innerEnd: end - close, kind: 'comment' });
    } else if (SQL_STRING_TOKENS.has(t.tokenName)) {
      const dollar = /^\$[A-Za-z_0-9]*\$/.exec(tok);
      if (dollar) {
        out.push({ start, end, innerStart: start + dollar[0].length, innerEnd: end - dollar[0].length, kind: 'string' });
      } else {
        // 'x', E'x', N'x', B'x', X'x', U&'x': content between the first and the last quote.
        const q = tok.indexOf("'");
        const last = tok.lastIndexOf("'");
        if (q >= 0 && last > q) out.push({ start, end, innerStart: start + q + 1, innerEnd: start + last, kind: 'string' });
        else out.push({ start, end, innerStart: start, innerEnd: end, kind: 'other' });
      }
    } else {
      out.push({ start, end, innerStart: start, innerEnd: end, kind: 'other' });
    }
  }
  return out;
}

/** The scanner's token names in order: the structure a rewrite must keep. */
export function sqlTokenShape(text: string): string[] {
  return scanSync(text).tokens.map((t) => t.tokenName);
}

const SHELL_LEAVES = new Set(['word', 'string_content', 'raw_string', 'comment', 'ansi_c_string', 'heredoc_body', 'number']);

/** Every leaf of a shell line's tree; words, string contents and comments with their content. */
export function shellLiterals(text: string): LiteralSpan[] {
  const tree = bashParser().parse(text);
  if (!tree) return [];
  const out: LiteralSpan[] = [];
  const at = byteToChar(text);
  const visit = (n: Node) => {
    if (SHELL_LEAVES.has(n.type)) {
      const start = n.startIndex;
      const end = n.endIndex;
      // tree-sitter's indexes are UTF-8 byte offsets of its input.
      const s = at(start);
      const e = at(end);
      const tok = text.slice(s, e);
      const quoted = n.type === 'raw_string' || n.type === 'ansi_c_string';
      const open = n.type === 'ansi_c_string' ? 2 : quoted ? 1 : n.type === 'comment' ? 1 : 0;
      const close = quoted && tok.endsWith("'") ? 1 : 0;
      out.push({ start: s, end: e, innerStart: s + open, innerEnd: e - close, kind: n.type === 'comment' ? 'comment' : n.type === 'word' || n.type === 'number' ? 'word' : 'string' });
      return;
    }
    if (n.childCount === 0) {
      const s = at(n.startIndex);
      const e = at(n.endIndex);
      out.push({ start: s, end: e, innerStart: s, innerEnd: e, kind: 'other' });
      return;
    }
    for (const c of n.children) if (c) visit(c);
  };
  visit(tree.rootNode);
  tree.delete();
  return out;
}

/** The leaf node types in order: the structure a rewrite must keep. */
export function shellTokenShape(text: string): string[] {
  const tree = bashParser().parse(text);
  if (!tree) return [];
  const out: string[] = [];
  const visit = (n: Node) => {
    if (n.childCount === 0 || SHELL_LEAVES.has(n.type)) out.push(n.type);
    else for (const c of n.children) if (c) visit(c);
  };
  visit(tree.rootNode);
  tree.delete();
  return out;
}
