/**
 * Where bash evaluates text as code without a visible substitution. Bash's
 * arithmetic evaluates array subscripts, so a variable or quoted operand such
 * as `'a[$(cmd)]'` runs cmd in `$(( ))`, `(( ))`, `$[ ]`, `let`, `[[ x -eq y ]]`,
 * `[[ -v x ]]`, `${s:off:len}`, `${a[i]}`, `declare -i` variables, and in the
 * name operands of `read`, `printf -v`, `unset`, `declare`... Prompt expansion
 * (`${x@P}`, PS4 under `set -x`) and indirection (`${!x}`, namerefs) reach
 * values the classifier cannot see. Each check returns a reason when the
 * construct is opaque; the caller refuses the whole line.
 */
import type { Node } from 'web-tree-sitter';
import { wordOf, type Word } from './shell-words.ts';
import { EXPANSION_MARK } from './types.ts';

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

// Special parameters whose value is always an integer (or empty): safe inside arithmetic.
const NUMERIC_SPECIALS = /\$[#?$!]|\$\{#?[#?$!]\}|\$\{#[A-Za-z_][A-Za-z0-9_]*\}/g;
// Digits, operators, parentheses and white space: nothing that names a variable or holds a subscript.
// Letters are excluded on purpose: a name's value may be `a[$(cmd)]`, and `0x1f`/`16#ff` are not worth the risk.
const LITERAL_ARITH = /^[0-9\s+\-*/%()<>=!&|^~?:,]*$/;

/** True when bash can evaluate this arithmetic text without reading any variable or running anything. */
function isLiteralArith(text: string): boolean {
  return LITERAL_ARITH.test(text.replace(NUMERIC_SPECIALS, '0'));
}

/** A word usable as an arithmetic operand: no expansion, and its value a literal integer expression. */
function literalOperand(w: Word | undefined): boolean {
  // Expansions are kept as marked source: `$#` passes isLiteralArith, `$x` and `$(...)` do not.
  return w !== undefined && isLiteralArith(w.value.replaceAll(EXPANSION_MARK, ''));
}

/** Index of the bracket closing the one opened at `open` (same kind), or -1. */
function closing(text: string, open: number, o: string, c: string): number {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    if (text[i] === o) depth += 1;
    else if (text[i] === c && --depth === 0) return i;
  }
  return -1;
}

/**
 * A variable name as an operand that bash may assign or test (`read`, `printf -v`, `unset`, `declare`, `-v`):
 * a plain name, or a name with a literal integer subscript. Returns the base name, or undefined when opaque.
 */
export function nameOperand(value: string): string | undefined {
  if (value.includes(EXPANSION_MARK)) return undefined;
  const open = value.indexOf('[');
  if (open < 0) return NAME.test(value) ? value : undefined;
  const base = value.slice(0, open);
  const close = closing(value, open, '[', ']');
  if (!NAME.test(base) || close !== value.length - 1) return undefined;
  const index = value.slice(open + 1, close);
  return index === '@' || index === '*' || isLiteralArith(index) ? base : undefined;
}

// `${x@op}` transformations that only quote or change case; `P` (prompt expansion) runs substitutions.
const SAFE_TRANSFORMS = new Set(['Q', 'E', 'A', 'a', 'U', 'u', 'L', 'K', 'k']);
const PARAM = /^([A-Za-z_][A-Za-z0-9_]*|[0-9]+|[@*#?$!0-])/;

/** One `${...}` starting at `text[0]`, up to its closing brace. */
function oneExpansion(text: string): { risk?: string; assigns?: string } {
  let i = 2;
  if (text === '${!}' || text === '${#}') return {};
  if (text[i] === '!') return { risk: 'indirect expansion ${!...}' };
  if (text[i] === '#' && text[i + 1] !== '}') i += 1;
  const m = PARAM.exec(text.slice(i));
  if (!m) return { risk: 'a parameter expansion the classifier cannot read' };
  const name = m[0];
  i += name.length;
  if (text[i] === '[') {
    const close = closing(text, i, '[', ']');
    if (close < 0) return { risk: 'an unterminated array subscript' };
    const index = text.slice(i + 1, close);
    if (index !== '@' && index !== '*' && !isLiteralArith(index)) return { risk: 'an array subscript that is evaluated as arithmetic' };
    i = close + 1;
  }
  const rest = text.slice(i, -1);
  if (rest === '') return {};
  // The pattern of # ## % %% ^ ^^ , ,, is expanded before it is matched, command substitutions
  // included, but the parser keeps it as text: `case ${HOME#$(touch M)} in *) uptime;; esac` ran
  // touch while the facts showed uptime alone. What it would run is not seen, so it is opaque.
  if (/^[#%^,]/.test(rest) && /\$\(|`|[<>]\(/.test(rest)) return { risk: "a command substitution inside an expansion's pattern" };
  // In any operand, backticks are kept as text by the parser, and quotes are read by bash by rules
  // of their own (inside "${x:-'…'}" a ' is an ordinary character, so a $(…) between two runs,
  // where the parser saw a single-quoted string): `uptime ${X:-`touch M`}` ran touch unseen.
  if (rest.includes('`') || (/['"]/.test(rest) && /\$|[<>]\(/.test(rest))) return { risk: "a substitution or quoting inside an expansion's operand, which bash and the parser read differently" };
  if (rest[0] === '@') return rest.length === 2 && SAFE_TRANSFORMS.has(rest[1] as string) ? {} : { risk: `the expansion operator ${rest}` };
  if (rest[0] === ':' && !'-=?+'.includes(rest[1] ?? '')) {
    return isLiteralArith(rest.slice(1)) ? {} : { risk: 'a substring offset or length that is evaluated as arithmetic' };
  }
  return /^:?=/.test(rest) ? { assigns: name } : {};
}

/**
 * Checks a `${...}` expansion's text and every `${`, `$((` and `$[` nested in it (as text, so a nested form
 * tree-sitter does not break out as a node is still seen; quoting inside is ignored, which only over-refuses).
 */
export function expansionRisk(text: string): { risk?: string; assigns: string[] } {
  const assigns: string[] = [];
  for (let j = text.indexOf('$'); j >= 0; j = text.indexOf('$', j + 1)) {
    if (text.startsWith('${', j)) {
      const end = closing(text, j + 1, '{', '}');
      if (end < 0) return { risk: 'an unterminated parameter expansion', assigns };
      const r = oneExpansion(text.slice(j, end + 1));
      if (r.risk) return { risk: r.risk, assigns };
      if (r.assigns) assigns.push(r.assigns);
    } else if (text.startsWith('$((', j) || text.startsWith('$[', j)) {
      const r = arithTextRisk(text.slice(j));
      if (r) return { risk: r, assigns };
    }
  }
  return { assigns };
}

/** `$((...))` or `$[...]` at the start of text (possibly followed by more). */
function arithTextRisk(text: string): string | undefined {
  const square = text.startsWith('$[');
  const end = square ? closing(text, 1, '[', ']') : closing(text, 1, '(', ')');
  if (end < 0) return 'an unterminated arithmetic expansion';
  const inner = square ? text.slice(2, end) : text.slice(3, end - 1);
  return isLiteralArith(inner) ? undefined : 'an arithmetic expression over values the classifier cannot see';
}

const OPAQUE_ARITH = 'an arithmetic expression over values the classifier cannot see';

/** Arithmetic node types: `$(( ))`, `$[ ]`, `(( ))`, `for (( ; ; ))`, and `$((`/`((` that tree-sitter read as substitutions. */
export function arithNodeRisk(node: Node): string | undefined {
  const t = node.text;
  switch (node.type) {
    case 'arithmetic_expansion':
      return t.startsWith('$[') ? (isLiteralArith(t.slice(2, -1)) ? undefined : OPAQUE_ARITH) : isLiteralArith(t.slice(3, -2)) ? undefined : OPAQUE_ARITH;
    case 'compound_statement':
      if (node.child(0)?.type !== '((') return undefined;
      return isLiteralArith(t.slice(2, -2)) ? undefined : OPAQUE_ARITH;
    case 'c_style_for_statement': {
      let inside = false;
      for (const c of node.children) {
        if (!c) continue;
        if (c.type === '((') inside = true;
        else if (c.type === '))') break;
        else if (inside && c.isNamed && !isLiteralArith(c.text)) return OPAQUE_ARITH;
      }
      return undefined;
    }
    // Bash reads `$((` and `((` as arithmetic when it can; tree-sitter sometimes reads a substitution or a
    // subshell instead (in here-documents, for one). Either reading may be what runs: refuse both.
    case 'command_substitution':
      return t.startsWith('$((') ? 'a `$((` the classifier cannot tell from arithmetic' : undefined;
    case 'subshell':
      return t.startsWith('((') ? 'a `((` the classifier cannot tell from arithmetic' : undefined;
    case 'subscript': {
      const index = node.childForFieldName('index');
      const it = index?.text ?? '';
      return it === '@' || it === '*' || isLiteralArith(it) ? undefined : 'an array subscript that is evaluated as arithmetic';
    }
    case 'array':
      // `a=([i]=v)`: an unquoted `[...]=` element assigns at an arithmetic subscript.
      for (const c of node.namedChildren) {
        if (c && c.text.startsWith('[') && !/^\[[0-9\s+\-*/%()]*\]\+?=/.test(c.text)) return 'an array element assigned at a computed subscript';
      }
      return undefined;
    default:
      return undefined;
  }
}

const ARITH_TEST_OP = /^-(eq|ne|lt|le|gt|ge)$/;
// The same operators as tokens in the text: a count the tree must account for.
const TEST_OP_TOKENS = /(?:^|[\s(!])-(?:eq|ne|lt|le|gt|ge|v)(?=[\s)]|$)/g;

/**
 * `[[ ... ]]` and `[ ... ]`: `-eq`-style operands are arithmetic in `[[` (and in ksh's and zsh's `[`), and the
 * operand of `-v` may hold a subscript. Operands must be literal integers and plain names.
 */
export function testNodeRisk(node: Node): string | undefined {
  let found = 0;
  const visit = (n: Node): string | undefined => {
    if (n.type === 'test_operator') {
      const op = n.text;
      const parent = n.parent;
      const operands = parent ? parent.namedChildren.filter((c): c is Node => c !== null && c.id !== n.id) : [];
      if (ARITH_TEST_OP.test(op)) {
        found += 1;
        if (parent?.type !== 'binary_expression' || operands.length !== 2 || !operands.every((o) => literalOperand(wordOf(o)))) {
          return `a ${op} test over values the classifier cannot see`;
        }
      } else if (op === '-v') {
        found += 1;
        const o = operands[0];
        if (parent?.type !== 'unary_expression' || operands.length !== 1 || !o || !wordOf(o).literal || !nameOperand(wordOf(o).value)) {
          return 'a -v test of a name the classifier cannot see';
        }
      }
      return undefined;
    }
    for (const c of n.namedChildren) {
      const r = c ? visit(c) : undefined;
      if (r) return r;
    }
    return undefined;
  };
  const r = visit(node);
  if (r) return r;
  const tokens = node.text.match(TEST_OP_TOKENS)?.length ?? 0;
  return tokens > found ? 'a test operator the classifier cannot place' : undefined;
}

/** `test` and `[` run as commands (`command test ...`): the same rules on their argument words. */
function testArgsRisk(args: Word[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as Word;
    if (!a.literal) continue;
    if (ARITH_TEST_OP.test(a.value) && !(literalOperand(args[i - 1]) && literalOperand(args[i + 1]))) return `a ${a.value} test over values the classifier cannot see`;
    if (a.value === '-v' && !(args[i + 1]?.literal && nameOperand((args[i + 1] as Word).value))) return 'a -v test of a name the classifier cannot see';
  }
  return undefined;
}

/** What a builtin does with its arguments beyond running: names it assigns, or why it is opaque. */
export interface BuiltinFacts {
  risk?: string;
  assigns: string[];
}

/** Options of a builtin that take a value (`read -p prompt`), by builtin. */
const VALUE_OPTS: Record<string, string> = { read: 'adinNptu', mapfile: 'dnOsuCc', readarray: 'dnOsuCc', printf: 'v', wait: 'p' };

/** Splits leading options (bash style, `--` ends them); values of value-taking options are returned by letter. */
function options(args: Word[], takes: string): { opts: Map<string, Word>; flags: Set<string>; rest: Word[]; risk?: string } {
  const opts = new Map<string, Word>();
  const flags = new Set<string>();
  let i = 0;
  for (; i < args.length; i++) {
    const a = args[i] as Word;
    if (!a.literal) return { opts, flags, rest: args.slice(i), risk: 'an option the classifier cannot read' };
    if (a.value === '--') {
      i += 1;
      break;
    }
    if (!a.value.startsWith('-') || a.value === '-') break;
    for (let j = 1; j < a.value.length; j++) {
      const ch = a.value[j] as string;
      if (!takes.includes(ch)) {
        flags.add(ch);
        continue;
      }
      const inline = a.value.slice(j + 1);
      const v = inline ? { ...a, value: inline } : args[++i];
      if (v) opts.set(ch, v);
      break;
    }
  }
  return { opts, flags, rest: args.slice(i) };
}

/** Name operands that bash assigns: each must be a literal plain name (a subscript is evaluated). */
function names(words: Word[], what: string): BuiltinFacts {
  const assigns: string[] = [];
  for (const w of words) {
    const n = w.literal ? nameOperand(w.value) : undefined;
    if (!n) return { risk: `${what} assigns a name the classifier cannot see`, assigns };
    assigns.push(n);
  }
  return { assigns };
}

/**
 * declare, typeset, local, export, readonly, unset given as words (the words of a declaration node that are
 * not plain `name=value` assignments, or of `builtin declare ...`). Integer (`-i`) and nameref (`-n`)
 * attributes make later assignments arithmetic or indirect: opaque.
 */
export function declarationRisk(keyword: string, words: Word[]): BuiltinFacts {
  const assigns: string[] = [];
  const attrs = keyword === 'declare' || keyword === 'typeset' || keyword === 'local';
  for (const w of words) {
    const v = w.value;
    const eq = v.indexOf('=');
    const head = eq >= 0 ? v.slice(0, eq).replace(/\+$/, '') : v;
    if (w.literal && /^[-+]/.test(v)) {
      if (attrs && /[in]/.test(v.slice(1))) return { risk: `${keyword} ${v} makes later values arithmetic or indirect`, assigns };
      continue;
    }
    if (head.includes(EXPANSION_MARK)) return { risk: `${keyword} with a computed argument`, assigns };
    const n = nameOperand(head);
    if (!n) return { risk: `${keyword} of a name the classifier cannot see`, assigns };
    // `declare -a 'a=([i]=v)'`: a quoted compound assignment is still parsed, subscripts included.
    if (eq >= 0 && v.slice(eq + 1).startsWith('(')) return { risk: `${keyword} with a compound assignment in a word`, assigns };
    if (keyword !== 'unset' && (eq >= 0 || keyword === 'local' || attrs)) assigns.push(n);
  }
  return { assigns };
}

const DECLARATIONS = new Set(['declare', 'typeset', 'local', 'export', 'readonly', 'unset']);

/** Builtins that evaluate or assign through their arguments. `base` is the program's base name. */
export function builtinRisk(base: string, args: Word[]): BuiltinFacts {
  if (DECLARATIONS.has(base)) return declarationRisk(base, args);
  switch (base) {
    case 'let':
      return args.every(literalOperand) ? { assigns: [] } : { risk: 'let over values the classifier cannot see', assigns: [] };
    case 'test':
    case '[': {
      const risk = testArgsRisk(args);
      return risk ? { risk, assigns: [] } : { assigns: [] };
    }
    case 'read': {
      const o = options(args, VALUE_OPTS.read as string);
      if (o.risk) return { risk: o.risk, assigns: [] };
      const arr = o.opts.get('a');
      const r = names(arr ? [arr, ...o.rest] : o.rest, 'read');
      if (!arr && o.rest.length === 0) r.assigns.push('REPLY');
      return r;
    }
    case 'mapfile':
    case 'readarray': {
      const o = options(args, VALUE_OPTS.mapfile as string);
      if (o.risk) return { risk: o.risk, assigns: [] };
      if (o.opts.has('C')) return { risk: `${base} -C runs a callback`, assigns: [] };
      return o.rest.length ? names(o.rest.slice(0, 1), base) : { assigns: ['MAPFILE'] };
    }
    case 'printf': {
      const o = options(args, 'v');
      if (o.risk) return { risk: o.risk, assigns: [] };
      const v = o.opts.get('v');
      return v ? names([v], 'printf -v') : { assigns: [] };
    }
    case 'getopts': {
      const r = names(args.slice(1, 2), 'getopts');
      r.assigns.push('OPTARG'); // and OPTIND, which getopts sets to an integer itself
      return r;
    }
    case 'wait': {
      const o = options(args, 'p');
      if (o.risk) return { risk: o.risk, assigns: [] };
      const p = o.opts.get('p');
      return p ? names([p], 'wait -p') : { assigns: [] };
    }
    case 'hash': {
      // `hash -p /tmp/x ls`: the name ls then runs /tmp/x.
      const o = options(args, 'pdt');
      return o.opts.has('p') || o.risk ? { risk: 'hash -p binds a command name to another file', assigns: [] } : { assigns: [] };
    }
    // fc re-runs history lines (-s) or runs its editor argument as code (-e), and history -s
    // writes the lines it would re-run: code the facts never show.
    case 'fc':
      return { risk: 'fc re-runs shell history or runs its editor argument', assigns: [] };
    case 'history':
      return args.some((a) => !a.literal || /^-[^-]*[spnra]/.test(a.value)) ? { risk: 'history -s/-r/-n/-a/-p writes or reads the history fc re-runs', assigns: [] } : { assigns: [] };
    // Options that change how bash reads what follows: -k (keyword) turns NAME=value arguments into
    // environment (`set -k` then `uptime BASH_ENV=…`), history expansion re-reads `!…`.
    case 'set':
    case 'shopt': {
      // Options only: set's operands after `--` (or its first non-option) are positional parameters.
      for (const a of args) {
        if (!a.literal) return { risk: `${base} with an option from an expansion`, assigns: [] };
        if (a.value === '--' || (base === 'set' && !/^[-+]/.test(a.value) && !/^[a-z_]+$/.test(a.value))) break;
        if ((base === 'set' && /^[-+][^-]*[kH]/.test(a.value)) || /^(keyword|history|histexpand|onecmd|extdebug|expand_aliases)$/.test(a.value)) {
          return { risk: `${base} ${a.value.slice(0, 20)} changes how bash reads the commands after it`, assigns: [] };
        }
      }
      return { assigns: [] };
    }
    case 'enable': {
      const o = options(args, 'f');
      return o.opts.has('f') || o.risk ? { risk: 'enable -f loads code', assigns: [] } : { assigns: [] };
    }
    default:
      return { assigns: [] };
  }
}

/**
 * Variables whose value bash runs or prompt-expands: PS4 under `set -x` and BASH_ENV of a child bash expand
 * `$(...)` in their value; ENV for sh; the prompts and PROMPT_COMMAND when interactive; BASH_FUNC_x%% in the
 * environment defines function x in a child bash. SHELLOPTS/BASHOPTS can turn on xtrace in a child.
 * TEXTDOMAIN(DIR) pick the catalogue `$"..."` is translated from, and the translation is then expanded.
 * BASH_ALIASES and BASH_CMDS define aliases and the path a command name runs. RANDOM, SRANDOM, OPTIND and
 * HISTCMD evaluate an assigned value as arithmetic (SECONDS, LINENO too, to be safe): see isIntegerVariable.
 */
export function isCodeVariable(name: string): boolean {
  if (name.includes(EXPANSION_MARK)) return true; // `env "$x=..."`: the name is only known when it runs
  return /^(PS[0-4]|PROMPT_COMMAND|BASH_ENV|ENV|SHELLOPTS|BASHOPTS|TEXTDOMAIN|TEXTDOMAINDIR|BASH_ALIASES|BASH_CMDS)$/.test(name) || name.startsWith('BASH_FUNC_');
}

/** Variables whose assigned value bash evaluates as arithmetic (see isCodeVariable); a literal integer is harmless. */
export function isIntegerVariable(name: string): boolean {
  return /^(RANDOM|SRANDOM|OPTIND|HISTCMD|SECONDS|LINENO)$/.test(name);
}
