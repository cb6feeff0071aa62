/**
 * Quote removal for tree-sitter-bash word nodes: what bash would pass to a
 * program, with every expansion kept as marked source text (EXPANSION_MARK)
 * because its value is only known when the command runs.
 */
import type { Node } from 'web-tree-sitter';
import { EXPANSION_MARK } from './types.ts';

/** A shell word after quote removal. */
export interface Word {
  /** The value; expansions appear as MARK + source + MARK. */
  value: string;
  /** No expansion of any kind (parameter, command, arithmetic, process substitution, brace expansion). */
  literal: boolean;
  /** Holds an unquoted glob (`*`, `?`, `[..]`, extglob) or unquoted expansion, so bash may replace it with file names. */
  glob: boolean;
  /** First and last source index of the word (for joining `\`-newline continuations). */
  start: number;
  end: number;
  /**
   * The parser's word holds an unquoted, unescaped blank or newline, which always ends a word in
   * bash (`--since=today⏎\eval …` read as one argument ran eval): not a word bash sees.
   */
  broken?: true;
}

const EXPANSION_TYPES = new Set(['simple_expansion', 'expansion', 'command_substitution', 'process_substitution', 'arithmetic_expansion', 'brace_expression']);

/** Wraps source text as an expansion marker. */
function mark(source: string): string {
  return `${EXPANSION_MARK}${source}${EXPANSION_MARK}`;
}

/** Unquoted text: a backslash quotes the next character; backslash-newline disappears. */
export function unescapeUnquoted(s: string): string {
  return s.replace(/\\(\n|[\s\S])?/g, (_, c: string | undefined) => (c === undefined ? '\\' : c === '\n' ? '' : c));
}

/** Inside double quotes a backslash only quotes $ ` " \ and newline. */
function unescapeDouble(s: string): string {
  return s.replace(/\\([$`"\\\n])/g, (_, c: string) => (c === '\n' ? '' : c));
}

const SIMPLE_ESCAPES: Record<string, string> = {
  a: '\x07',
  b: '\b',
  e: '\x1b',
  E: '\x1b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
  v: '\v',
  '\\': '\\',
  "'": "'",
  '"': '"',
  '?': '?',
};

/**
 * Decodes the body of `$'...'` as bash does; a decoded NUL ends the string (bash cuts it there).
 * Undefined where the decoding is not certain to be bash's, so the word is no literal: escapes
 * that make a byte past ASCII (`\377`, `\xff`: one raw byte to bash, a UTF-8 character here; `\u`
 * past ASCII depends on the locale), `\x{…}` (bash 5.2 reads `\x{2e}` as `.`), and `\c` before a
 * backslash (bash takes `\c\\` as one control character) or before anything but printable ASCII
 * (bash takes the first byte of a UTF-8 character). Each let a hidden newline end a comment in an
 * `eval`'s script, or `..` pass as a literal path.
 */
function decodeAnsiC(body: string): string | undefined {
  let out = '';
  for (let i = 0; i < body.length; i++) {
    const ch = body[i] as string;
    if (ch !== '\\' || i + 1 >= body.length) {
      out += ch;
      continue;
    }
    const n = body[i + 1] as string;
    let m: RegExpMatchArray | null;
    const rest = body.slice(i + 1);
    if (n in SIMPLE_ESCAPES) {
      out += SIMPLE_ESCAPES[n];
      i += 1;
    } else if ((m = rest.match(/^[0-7]{1,3}/))) {
      const byte = parseInt(m[0], 8) & 0xff;
      if (byte > 0x7f) return undefined;
      out += String.fromCharCode(byte);
      i += m[0].length;
    } else if (rest.startsWith('x{')) {
      return undefined;
    } else if ((m = rest.match(/^x([0-9a-fA-F]{1,2})/))) {
      const byte = parseInt(m[1] as string, 16);
      if (byte > 0x7f) return undefined;
      out += String.fromCharCode(byte);
      i += m[0].length;
    } else if ((m = rest.match(/^u([0-9a-fA-F]{1,4})/)) || (m = rest.match(/^U([0-9a-fA-F]{1,8})/))) {
      const cp = parseInt(m[1] as string, 16);
      if (cp > 0x7f) return undefined;
      out += String.fromCharCode(cp);
      i += m[0].length;
    } else if (n === 'c' && i + 2 < body.length) {
      const c = body.charCodeAt(i + 2);
      if (c < 0x20 || c > 0x7e || c === 0x5c) return undefined;
      // bash: `\c?` is DEL (0x7f); any other character is its control code.
      out += c === 0x3f ? '\x7f' : String.fromCharCode(c & 0x1f);
      i += 2;
    } else {
      out += `\\${n}`;
      i += 1;
    }
  }
  const nul = out.indexOf('\u0000');
  return nul >= 0 ? out.slice(0, nul) : out;
}

/** Parts of a word: quoted text (never globbed), unquoted text (globbed, brace-expanded) and expansions. */
interface Part {
  text: string;
  quoted: boolean;
  expansion: boolean;
}

function parts(node: Node): Part[] {
  switch (node.type) {
    case 'word':
    case 'number':
      if (node.namedChildCount > 0) return node.namedChildren.flatMap((c) => (c ? parts(c) : []));
      return [{ text: node.text, quoted: false, expansion: false }];
    case 'raw_string':
      return [{ text: node.text.slice(1, -1), quoted: true, expansion: false }];
    case 'ansi_c_string': {
      const decoded = decodeAnsiC(node.text.slice(2, -1));
      // A decoding that may not be bash's is no literal (as an expansion: its value is not known).
      return [decoded === undefined ? { text: node.text, quoted: true, expansion: true } : { text: decoded, quoted: true, expansion: false }];
    }
    case 'translated_string':
      return node.namedChildren.flatMap((c) => (c ? parts(c) : []));
    case 'string':
      return doubleQuoted(node);
    case 'concatenation':
      return node.children.flatMap((c) => (c ? parts(c) : []));
    case 'extglob_pattern':
    case 'regex':
    case 'variable_name':
      return [{ text: node.text, quoted: false, expansion: false }];
    default:
      // Expansions, and anything this module does not know: not a literal.
      return [{ text: node.text, quoted: false, expansion: EXPANSION_TYPES.has(node.type) || node.isNamed || node.text.includes('$') }];
  }
}

/** `"..."`: the text between child nodes is literal too (tree-sitter does not always give it a node). */
function doubleQuoted(node: Node): Part[] {
  const out: Part[] = [];
  const base = node.startIndex;
  const text = node.text;
  let pos = 1; // after the opening quote
  const push = (s: string) => {
    if (s) out.push({ text: unescapeDouble(s), quoted: true, expansion: false });
  };
  for (const c of node.namedChildren) {
    if (!c) continue;
    push(text.slice(pos, c.startIndex - base));
    if (c.type === 'string_content') push(c.text);
    else out.push({ text: c.text, quoted: true, expansion: true });
    pos = c.endIndex - base;
  }
  push(text.slice(pos, text.length - 1));
  return out;
}

// Unquoted `{a,b}` or `{1..3}`: bash turns one word into several. Any unquoted `,` or `..` between an
// unquoted `{` and a later `}` counts, whatever braces nest between them: `{..,{}}` is a brace
// expansion to bash (`/var/log/{..,{}}/{..,{}}/etc/passwd` read /etc/passwd), which a pattern
// without nesting missed.
const BRACE = /\{[^]*(,|\.\.)[^]*\}/;
// Words that read as assignments, where bash also expands a `~` after the `=` or a `:`.
const ASSIGNMENT_LIKE = /^[A-Za-z_][A-Za-z0-9_]*=/;
const TILDE_AFTER = /[=:]~/;
// Unquoted `*`, `?`, `[..]`, or an extglob group.
const GLOB = /[*?]|\[[^\]]*\]|[+@!]\(/;

/** Quote removal of a word node. */
export function wordOf(node: Node, assignmentValue = false): Word {
  const ps = parts(node);
  // Unquoted text with its escapes neutralised, quoted text and expansions blanked: what globbing and braces see.
  const unquoted = ps.map((p) => (p.quoted || p.expansion ? '_' : p.text.replace(/\\[\s\S]/g, '_'))).join('');
  const brace = BRACE.test(unquoted);
  // bash replaces an unquoted `~` or `~user` at a word's start, and after the `=` or a `:` of a
  // word that reads as an assignment (`a=~/x`, `p=a:~/y`), with a home directory: the path is
  // only known when the command runs (`cat ~/.ssh/id_rsa` is not the relative path it reads as).
  // (In an assignment's value, after every unquoted `:` too.) The whole word is then an expansion.
  const tilde = unquoted.startsWith('~') || (ASSIGNMENT_LIKE.test(unquoted) && TILDE_AFTER.test(unquoted)) || (assignmentValue && unquoted.includes(':~'));
  const expanded = brace || tilde;
  const value = expanded ? mark(node.text) : ps.map((p) => (p.expansion ? mark(p.text) : p.quoted ? p.text : unescapeUnquoted(p.text))).join('');
  return {
    ...(hasBareBlank(node) ? { broken: true as const } : {}),
    value,
    literal: !expanded && ps.every((p) => !p.expansion),
    // An unquoted expansion's value is globbed too (`cat $p` with p='.?/.?/etc/shadow').
    glob: GLOB.test(unquoted) || ps.some((p) => p.expansion && !p.quoted),
    start: node.startIndex,
    end: node.endIndex,
  };
}

/** A word made of plain text (for wrappers that rebuild words). */
export function textWord(value: string): Word {
  return { value, literal: !value.includes(EXPANSION_MARK), glob: false, start: -1, end: -1 };
}

/** Whether an unquoted text leaf of the word holds a blank or newline no backslash escapes. */
function hasBareBlank(node: Node): boolean {
  if ((node.type === 'word' || node.type === 'number') && node.namedChildCount === 0) {
    const t = node.text;
    for (let i = 0; i < t.length; i++) {
      if (t[i] === '\\') i++;
      else if (t[i] === ' ' || t[i] === '\t' || t[i] === '\n') return true;
    }
    return false;
  }
  if (node.type === 'concatenation' || node.type === 'word') return node.namedChildren.some((c) => c !== null && hasBareBlank(c));
  return false;
}
