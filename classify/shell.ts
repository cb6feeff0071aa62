/**
 * Shell classification with tree-sitter-bash: every simple command in the
 * tree (pipelines, lists, substitutions, compound commands, function bodies,
 * and the scripts of `sh -c`, `eval`, `su -c`, ...) after quote removal and
 * unwrapping of sudo/env/xargs/... Anything the parser flags, or a program
 * the classifier cannot name, sets an error so the policy fails closed.
 */
import type { Node } from 'web-tree-sitter';
import { EXPANSION_MARK, type ShellCommand, type ShellErrorCode, type ShellFacts, type ShellRedirection } from './types.ts';
import { WritError } from '../schemas/errors.ts';
import { bashParser } from './runtime.ts';
import { textWord, unescapeUnquoted, wordOf, type Word } from './shell-words.ts';
import { programRisk } from './shell-programs.ts';
import { findExecs, WRAPPERS } from './shell-wrappers.ts';
import { arithNodeRisk, builtinRisk, declarationRisk, expansionRisk, isCodeVariable, isIntegerVariable, nameOperand, testNodeRisk } from './shell-arith.ts';
import { firstError, KNOWN_TYPES, redirectOp, SEQUENCE_PARENTS, STATEMENT_TYPES, stdinOf, structureOf, WRITE_OPS, type Stdin } from './shell-nodes.ts';

/** How deep `sh -c '... sh -c ...'` re-parsing goes before the inner script counts as opaque. */
const MAX_DEPTH = 8;

/** Where a command runs from: the text being walked and what wraps it. */
interface Frame {
  src: string;
  depth: number;
  wrappers: string[];
  via?: string;
  env: Record<string, string>;
}

/** Collects the facts of one classifyShell call across nested re-parses. */
class ShellWalker {
  readonly commands: ShellCommand[] = [];
  readonly redirections: ShellRedirection[] = [];
  readonly structure = new Set<string>();
  readonly assignments = new Set<string>();
  /** Assigned names whose value is not a literal integer (RANDOM=1 is harmless, RANDOM=$x is arithmetic). */
  readonly assignedValues = new Set<string>();
  /** LC_ALL, LC_CTYPE or LANG assigned a value that is not a literal UTF-8 or C locale. */
  readonly unsafeLocales = new Set<string>();
  readonly unknownTypes = new Set<string>();
  /** Why the line runs code the classifier cannot see without any opaque command (arithmetic, `${!x}`, ...). */
  readonly opaque: string[] = [];
  parseError: string | undefined;
  /** Parsed texts that held at least one statement (not only comments). */
  statements = 0;

  /** Parses a text and walks it; tree-sitter trees live in WASM memory and are freed here. */
  parse(text: string, frame: Frame, what = ''): void {
    const tree = bashParser().parse(text);
    if (!tree) {
      this.parseError ??= `the parser gave no tree${what}`;
      return;
    }
    try {
      if (tree.rootNode.namedChildren.some((c) => c && c.type !== 'comment')) this.statements += 1;
      const err = firstError(tree.rootNode);
      if (err) this.parseError ??= `${err}${what}`;
      // The parser takes \r, \f and \v for blanks where bash takes them for word characters
      // (`sort -k 1\f#; touch M` ran touch): outside quotes they are refused.
      if (/[\r\f\v]/.test(text) && unquotedControl(tree.rootNode, text)) this.opaque.push('a carriage return, form feed or vertical tab outside quotes');
      this.walk(tree.rootNode, { ...frame, src: text });
    } finally {
      tree.delete();
    }
  }

  private walk(node: Node, f: Frame): void {
    if (!node.isNamed) {
      if (node.type === '&') this.structure.add('background');
      else if (node.type === '|&') this.structure.add('pipeline');
      return;
    }
    switch (node.type) {
      case 'command':
        return this.command(node, f);
      case 'declaration_command':
      case 'unset_command':
        return this.declaration(node, f);
      case 'redirected_statement':
        return this.redirected(node, f);
      case 'file_redirect':
      case 'heredoc_redirect':
      case 'herestring_redirect':
        return this.redirect(node, f);
      case 'variable_assignment':
        this.assign(node);
        return this.walkChildren(node, f);
      case 'comment':
        // bash starts a comment only where a word can start: `\ #` and `1\f#` are words to it, so
        // what follows them ran while the parser saw a comment.
        if (!startsWord(f.src, node.startIndex)) this.opaque.push('a # that bash reads inside a word, where the parser saw a comment');
        return;
      case 'function_definition':
        this.structure.add('function_definition');
        for (const c of [node.childForFieldName('body'), ...node.childrenForFieldName('redirect')]) if (c) this.walk(c, f);
        return;
    }
    if (!KNOWN_TYPES.has(node.type)) this.unknownTypes.add(node.type);
    this.evaluated(node);
    if (node.type === 'command_substitution' && node.child(0)?.type === '`') return this.backticks(node, f);
    const s = structureOf(node);
    if (s) this.structure.add(s);
    if (SEQUENCE_PARENTS.has(node.type) && node.namedChildren.filter((c) => c && STATEMENT_TYPES.has(c.type)).length > 1) {
      this.structure.add('list');
    }
    this.walkChildren(node, f);
  }

  /**
   * Inside backticks bash first removes the backslash of \\, \` and \$, then parses what is left, so
   * `echo \`a \\\`b\\\`\`` runs b. tree-sitter reads the escaped backticks as text: re-parse instead.
   */
  private backticks(node: Node, f: Frame): void {
    this.structure.add('backticks');
    const inner = node.text.slice(1, -1).replace(/\\([\\`$])/g, '$1');
    if (f.depth + 1 > MAX_DEPTH) {
      this.parseError ??= 'backticks nested too deeply';
      return;
    }
    this.parse(inner, { ...f, depth: f.depth + 1 }, ' in backticks');
  }

  /** Constructs where bash evaluates text as code (see shell-arith.ts); names that for/select and `${x:=v}` assign. */
  private evaluated(node: Node): void {
    const risk = arithNodeRisk(node) ?? (node.type === 'test_command' ? testNodeRisk(node) : undefined);
    if (risk) this.opaque.push(risk);
    // Expansions as nodes, and as text where tree-sitter leaves them as text (`$[ x ]` in a here-document).
    // The parser keeps backticks in an expanding here-document as text; bash runs them.
    if (node.type === 'heredoc_body' && expandsBody(node) && node.text.includes('`')) this.opaque.push('backticks in a here-document, which the parser keeps as text');
    // After some delimiters (`<<$x`) the parser keeps an expanding body as plain text, where bash
    // expands it: a `$` in a body the parser found no expansion in is refused.
    if (node.type === 'heredoc_body' && expandsBody(node) && node.text.includes('$') && node.namedChildren.every((c) => c?.type === 'heredoc_content')) {
      this.opaque.push('a here-document body the parser did not expand, which bash does');
    }
    if (node.type === 'expansion' || node.type === 'string' || node.type === 'word' || (node.type === 'heredoc_body' && expandsBody(node))) {
      const r = expansionRisk(node.text.replace(/\\\n/g, '')); // bash drops backslash-newline first
      if (r.risk) this.opaque.push(r.risk);
      for (const a of r.assigns) this.assigned(a);
    }
    if (node.type === 'for_statement') {
      const v = node.childForFieldName('variable');
      if (v) this.assigned(v.text);
    }
  }

  /** `name=value` or `name[i]=value` outside a command prefix; the subscript itself is checked as a node. */
  private assign(node: Node): void {
    const text = node.childForFieldName('name')?.text ?? '?';
    const name = nameOperand(text);
    if (!name) this.opaque.push('an assignment to a name the classifier cannot see');
    const value = node.childForFieldName('value');
    this.assigned(name ?? text, value ? wordOf(value, true) : undefined);
  }

  private assigned(name: string, value?: Word): void {
    this.assignments.add(name);
    if (LOCALE_VARS.has(name) && !(value?.literal && SAFE_LOCALE.test(value.value))) this.unsafeLocales.add(name);
    if (name === 'TZ' && !(value?.literal && SAFE_TZ.test(value.value))) this.unsafeLocales.add(name);
    if (name === 'LANGUAGE' && !(value?.literal && SAFE_LANGUAGE.test(value.value))) this.unsafeLocales.add(name);
    if (!(value?.literal && /^[0-9]+$/.test(value.value))) this.assignedValues.add(name);
  }

  private walkChildren(node: Node, f: Frame): void {
    for (const c of node.children) if (c) this.walk(c, f);
  }

  /**
   * Appends a word, joining it to the previous one when nothing or only `\`-newlines separate
   * them: bash splits words on blanks alone, so two nodes the parser made of one word
   * (`$'A'\-` is the one word `A-` to bash) are joined as bash joins them.
   */
  private static push(words: Word[], w: Word, src: string): void {
    const prev = words[words.length - 1];
    if (prev && prev.end >= 0 && w.start >= prev.end && (w.start === prev.end || /^(\\\n)+$/.test(src.slice(prev.end, w.start)))) {
      words[words.length - 1] = {
        value: prev.value + w.value,
        literal: prev.literal && w.literal,
        glob: prev.glob || w.glob,
        start: prev.start,
        end: w.end,
        ...(prev.broken || w.broken ? { broken: true } : {}),
      };
    } else words.push(w);
  }

  private command(node: Node, f: Frame, stdin?: Stdin, extra: readonly Node[] = []): void {
    const env = { ...f.env };
    const words: Word[] = [];
    const nested: Node[] = []; // walked after the command itself is recorded, so outer commands come first
    const unread: string[] = []; // words the parser read otherwise than bash: the command is opaque
    let named = false;
    const children = node.children;
    for (let i = 0; i < children.length; i++) {
      const c = children[i];
      if (!c) continue;
      const field = node.fieldNameForChild(i);
      if (c.type === 'variable_assignment' && !named) {
        const value = c.childForFieldName('value');
        env[c.childForFieldName('name')?.text ?? '?'] = value ? wordOf(value, true).value : '';
        nested.push(c);
      } else if (field === 'name') {
        named = true;
        const inner = c.namedChildren[0] ?? c;
        ShellWalker.push(words, wordOf(inner), f.src);
        nested.push(inner);
      } else if (field === 'redirect') {
        nested.push(c);
        // Words the parser hung on a redirection (`cat 2>/dev/null /etc/passwd`) are arguments to bash.
        for (const x of extraWords(c)) ShellWalker.push(words, wordOf(x), f.src);
      } else if (named && !c.isNamed) {
        // `$"..."` (locale translation) comes as a lone `$` glued to a string: the string is the word.
        const next = children[i + 1];
        if (c.type === '$' && next && next.startIndex === c.endIndex) {
          // Text glued before it (`-o$"1"`, the word `-o1` to bash) is folded into that `$` node,
          // where no quote removal or glob check reaches it: the word is not known.
          if (c.text !== '$') unread.push(`a word the parser split before $"…" (${c.text.slice(0, 20)})`);
        } else ShellWalker.push(words, { ...textWord(c.text), start: c.startIndex, end: c.endIndex }, f.src);
      } else if (named && c.type === 'regex') {
        // `=~`/`==` then text up to a `]` is a regular expression to the parser even outside
        // [[ ]], hiding what bash runs there (`echo =~ $(touch x) ]`): not a word the classifier knows.
        unread.push('a regular expression outside [[ ]], where bash sees words and code');
        ShellWalker.push(words, wordOf(c), f.src);
      } else if (named) {
        ShellWalker.push(words, wordOf(c), f.src);
        nested.push(c);
      } else nested.push(c);
    }
    for (const x of extra) ShellWalker.push(words, wordOf(x), f.src);
    // A redirection after the command sits beside it in a redirected_statement (`grep -e - 2>/dev/null x`).
    const span = node.parent?.type === 'redirected_statement' ? node.parent : node;
    if (words.some((w) => w.broken) || skipsText(span, f.src)) unread.push('words the parser split otherwise than bash (a bare blank inside one, or text it skipped)');
    const own = stdinOf(node.childrenForFieldName('redirect').filter((r): r is Node => r !== null));
    const [first, risks] = [this.commands.length, this.opaque.length];
    this.opaque.push(...unread);
    this.resolve(words, { ...f, env }, node.text, own ?? stdin);
    const last = this.commands.length;
    // Assignments' values and arguments may hold substitutions; redirect() records a redirection and walks its target.
    for (const c of nested) c.type === 'variable_assignment' ? this.walkChildren(c, f) : this.walk(c, f);
    // An argument bash evaluates as code (`$((x))`, `${!x}`, ...) makes the command itself opaque.
    if (this.opaque.length > risks) for (const c of this.commands.slice(first, last)) c.opaque = true;
  }

  /** Unwraps wrappers until the real program, then records it (or re-parses the script it runs). */
  private resolve(start: Word[], f: Frame, source: string, stdin?: Stdin): void {
    let words = start;
    const wrappers = [...f.wrappers];
    const env = { ...f.env };
    let via = f.via;
    const record = (prog: Word, args: Word[], flags: { opaque?: boolean; unknown?: boolean } = {}) => {
      const base = prog.value.slice(prog.value.lastIndexOf('/') + 1);
      const builtin = flags.unknown ? { assigns: [] } : builtinRisk(base, args);
      for (const a of builtin.assigns) this.assigned(a);
      builtin.risk ??= flags.unknown ? undefined : programRisk(base, args);
      if (builtin.risk) this.opaque.push(builtin.risk);
      const cmd: ShellCommand = {
        program: flags.unknown ? null : prog.value,
        args: args.map((a) => a.value),
        env: { ...env },
        wrappers: [...wrappers],
        opaque: flags.opaque === true || builtin.risk !== undefined,
        unknown: flags.unknown === true,
        globArgs: globIndexes(args),
        source,
      };
      if (via !== undefined) cmd.via = via;
      this.commands.push(cmd);
    };
    for (;;) {
      const prog = words[0];
      if (!prog) return;
      const args = words.slice(1);
      // A name from an expansion, a glob or brace expansion is only known when the command runs.
      if (!prog.literal || prog.glob) return record(prog, args, { unknown: true });
      // A reserved word where the parser saw a command name means the two grammars parted
      // (`coproc NAME [[ … ]]`, `time [[ … ]]`): what bash runs there is not what the facts say.
      if (RESERVED_WORDS.has(prog.value)) {
        this.opaque.push(`the reserved word ${prog.value} where the parser saw a command`);
        return record(prog, args, { opaque: true });
      }
      const base = prog.value.slice(prog.value.lastIndexOf('/') + 1);
      if (base === 'find') {
        record(prog, args);
        for (const inner of findExecs(args)) this.resolve(inner, { ...f, env, wrappers: [...wrappers, 'find'], via: 'find -exec' }, source);
        return;
      }
      const spec = Object.hasOwn(WRAPPERS, base) ? WRAPPERS[base] : undefined;
      if (!spec) return record(prog, args);
      const r = spec(args);
      if (r.unknown) {
        this.opaque.push(`${base}: ${r.unknown}`);
        return record(prog, args, { opaque: true });
      }
      if (r.env) Object.assign(env, r.env);
      if (r.inner) {
        wrappers.push(base);
        if (r.via) via = r.via;
        words = r.inner;
        continue;
      }
      const inner: Frame = { src: '', depth: f.depth + 1, wrappers: [...wrappers, base], env, via: r.via ?? `${base} stdin` };
      if (r.script) {
        const script = r.script.map((w) => w.value).join(' ');
        // The script is parsed with bash's grammar: one run by another shell is read only where
        // the two agree (dash has no $'…': a ' inside one ended the word and ran what followed).
        const other =
          r.shell === 'other'
            ? `${inner.via} runs a shell whose grammar is not bash's`
            : r.shell === 'posix' && BASH_ONLY.test(script)
              ? `${inner.via} runs sh, which reads bash-only syntax differently`
              : undefined;
        if (other) {
          this.opaque.push(other);
          return record(prog, args, { opaque: true });
        }
        if (r.script.every((w) => w.literal) && inner.depth <= MAX_DEPTH) {
          this.parse(script, inner, ` in a ${inner.via} script`);
          return;
        }
        return record(prog, args, { opaque: true });
      }
      if (r.readsStdin) {
        if (stdin && 'script' in stdin && inner.depth <= MAX_DEPTH) {
          this.parse(stdin.script, { ...inner, via: `${base} stdin` }, ` in the script ${base} reads`);
          return;
        }
        return record(prog, args, { opaque: true });
      }
      return record(prog, args, { opaque: r.runsFile === true });
    }
  }

  private declaration(node: Node, f: Frame): void {
    const keyword = node.child(0)?.text ?? '?';
    const args: string[] = [];
    const globArgs: number[] = [];
    // Words other than `name=value` nodes: options, bare names, and quoted `'name=value'` (still an assignment).
    const words: Word[] = [];
    const risks = this.opaque.length;
    let prevEnd = -1;
    for (const c of node.namedChildren) {
      if (!c) continue;
      if (c.type === 'variable_assignment') {
        const name = c.childForFieldName('name')?.text ?? '?';
        const value = c.childForFieldName('value');
        args.push(`${name}=${value ? wordOf(value, true).value : ''}`);
        // Under -i or -n the value is evaluated or followed: the options among `words` decide.
        words.push(textWord(`${name}=`));
      } else {
        const w = c.type === 'variable_name' ? { ...textWord(c.text), start: c.startIndex, end: c.endIndex } : wordOf(c);
        const prev = words[words.length - 1];
        // tree-sitter splits `unset a[3]` into `a` and `[3]`: bash sees one word.
        if (prev && c.startIndex === prevEnd && args.length) {
          words[words.length - 1] = { ...prev, value: prev.value + w.value, literal: prev.literal && w.literal, glob: prev.glob || w.glob, end: w.end };
          args[args.length - 1] += w.value;
          if (w.glob && globArgs[globArgs.length - 1] !== args.length - 1) globArgs.push(args.length - 1);
        } else {
          words.push(w);
          if (w.glob) globArgs.push(args.length);
          args.push(w.value);
        }
      }
      prevEnd = c.endIndex;
      this.walk(c, f); // records assignments, checks subscripts and walks substitutions in values
    }
    const d = declarationRisk(keyword, words);
    for (const a of d.assigns) this.assigned(a);
    if (d.risk) this.opaque.push(d.risk);
    const opaque = this.opaque.length > risks;
    const cmd: ShellCommand = { program: keyword, args, env: { ...f.env }, wrappers: [...f.wrappers], opaque, unknown: false, globArgs, source: node.text };
    if (f.via !== undefined) cmd.via = f.via;
    this.commands.push(cmd);
  }

  private redirected(node: Node, f: Frame): void {
    // Node objects are fresh wrappers on every access: compare by id, not identity.
    const body = node.childForFieldName('body');
    const redirects = node.namedChildren.filter((c): c is Node => c !== null && c.id !== body?.id);
    const stdin = stdinOf(redirects);
    // tree-sitter hangs the words after a redirection on it as further targets; bash passes them to
    // the command: `cat 2>/dev/null /etc/passwd` read /etc/passwd while the facts showed `cat` alone.
    const extra = redirects.flatMap(extraWords);
    if (body?.type === 'command') this.command(body, f, stdin, extra);
    else {
      if (extra.length > 0) this.opaque.push('words after the redirection of a compound command');
      if (body) this.walk(body, f);
    }
    for (const r of redirects) this.walk(r, f);
  }

  private redirect(node: Node, f: Frame): void {
    // `{name}>file` (and `{a[i]}>`) assigns the descriptor's number to a variable, evaluating a
    // subscript as arithmetic (`{a[_]}>&2` after an argument `+b[$(id)]` ran id); the parser reads
    // `{name}` as an ordinary word.
    if (/(^|[^$\w])\{[^\s{}]*\}$/.test(f.src.slice(Math.max(0, node.startIndex - 256), node.startIndex))) this.opaque.push('a {variable} redirection, which assigns and evaluates');
    const fdNode = node.childForFieldName('descriptor');
    const fd = fdNode ? Number(fdNode.text) : undefined;
    const rec = (r: Omit<ShellRedirection, 'fd'>) => this.redirections.push(fd === undefined || Number.isNaN(fd) ? r : { ...r, fd });
    if (node.type === 'heredoc_redirect') {
      this.structure.add('heredoc');
      const start = node.namedChildren.find((c) => c?.type === 'heredoc_start');
      const delimiter = unescapeUnquoted((start?.text ?? '').replace(/['"]/g, ''));
      const risk = heredocEndRisk(node, f.src, delimiter, redirectOp(node) === '<<-');
      if (risk) this.opaque.push(risk);
      rec({ op: redirectOp(node), target: delimiter, writes: false, reads: false, glob: false });
      for (const c of node.namedChildren) if (c && c.type !== 'heredoc_start' && c.type !== 'heredoc_end') this.walk(c, f);
      return;
    }
    if (node.type === 'herestring_redirect') {
      this.structure.add('herestring');
      const w = node.namedChildren.find((c) => c && c.type !== 'file_descriptor');
      rec({ op: '<<<', target: w ? wordOf(w).value : '', writes: false, reads: false, glob: false });
      this.walkChildren(node, f);
      return;
    }
    const op = redirectOp(node);
    const dest = node.childrenForFieldName('destination')[0];
    const word = dest ? wordOf(dest) : undefined;
    const target = word?.value ?? '';
    // `>&2`, `<&0`, `>&-` duplicate or close descriptors; `>& file` (csh style) writes the file.
    const dup = ((op === '>&' || op === '<&') && /^(\d+|-)$/.test(target)) || /^[<>]&-$/.test(op);
    const writes = (WRITE_OPS.has(op) || op === '>&') && !dup && op !== '>&-';
    const reads = (op === '<' || op === '<>' || op === '<&') && !dup;
    rec({ op, target, writes, reads, glob: word?.glob === true });
    this.walkChildren(node, f);
  }
}

const QUOTED = new Set(['raw_string', 'ansi_c_string', 'string_content', 'heredoc_body', 'heredoc_content']);
const CODE = new Set(['command_substitution', 'process_substitution']);

/**
 * Whether a \r, \f or \v of the text lies outside quotes: the innermost quoted text or
 * substitution around it decides (a substitution inside a string or here-document is code again).
 */
function unquotedControl(root: Node, text: string): boolean {
  const spans: Array<{ a: number; b: number; quoted: boolean }> = [];
  const visit = (n: Node) => {
    if (QUOTED.has(n.type)) spans.push({ a: n.startIndex, b: n.endIndex, quoted: true });
    else if (CODE.has(n.type)) spans.push({ a: n.startIndex, b: n.endIndex, quoted: false });
    for (const c of n.namedChildren) if (c) visit(c);
  };
  visit(root);
  for (let i = 0; i < text.length; i++) {
    if (!/[\r\f\v]/.test(text[i] as string)) continue;
    let best: { a: number; b: number; quoted: boolean } | undefined;
    for (const sp of spans) if (i >= sp.a && i < sp.b && (!best || sp.b - sp.a < best.b - best.a)) best = sp;
    if (!best?.quoted) return true;
  }
  return false;
}

const LOCALE_VARS = new Set(['LC_ALL', 'LC_CTYPE', 'LANG']);
/** A zone name (`Europe/Paris`, `UTC`, `EST5EDT,M3.2.0,M11.1.0`): no leading `/`, no `..`. */
const SAFE_TZ = /^:?(?!.*\.\.)[A-Za-z0-9_+,.<>-]+(\/[A-Za-z0-9_+,.<>-]+)*$/;
/** Colon-separated locale names, no path. */
const SAFE_LANGUAGE = /^(?!.*\.\.)[A-Za-z0-9_.@:-]*$/;
const SAFE_LOCALE = /^(C|POSIX|C\.(UTF-?8|utf-?8)|[A-Za-z]{2,3}(_[A-Za-z]{2})?\.(UTF-?8|utf-?8)(@[A-Za-z0-9]+)?)$/;

/**
 * Whether the parser left text of the command out of every token: between tokens bash allows
 * blanks and `\`-newlines alone, so anything else there was skipped by the parser's scanner
 * (`'uptime'\ ';touch M'` is one word to bash and two here; a `-` before `2>` went missing).
 */
function skipsText(node: Node, src: string): boolean {
  let pos = node.startIndex;
  const leaves: Node[] = [];
  // A here-document's body is text, walked on its own: one token here.
  const collect = (n: Node) => {
    if (n.childCount === 0 || n.type === 'heredoc_body') leaves.push(n);
    else for (const c of n.children) if (c) collect(c);
  };
  collect(node);
  leaves.sort((a, b) => a.startIndex - b.startIndex);
  for (const l of leaves) {
    // The body and its end line start after the newline that ends the command's line (and `<<-`'s tabs).
    const gap = l.type === 'heredoc_body' || l.type === 'heredoc_end' ? /^[ \t]*(\\\n)*\n?[\s]*$/ : /^([ \t]|\\\n)*$/;
    if (l.startIndex > pos && !gap.test(src.slice(pos, l.startIndex))) return true;
    pos = Math.max(pos, l.endIndex);
  }
  return false;
}

/** Node types of an argument word. */
const ARG_TYPES = new Set([
  'word',
  'string',
  'raw_string',
  'ansi_c_string',
  'translated_string',
  'concatenation',
  'simple_expansion',
  'expansion',
  'command_substitution',
  'process_substitution',
  'arithmetic_expansion',
  'number',
  'brace_expression',
]);

/** The words a redirection node carries past its own target: the command's arguments to bash. */
function extraWords(r: Node): Node[] {
  if (r.type === 'file_redirect') {
    const dest = r.childrenForFieldName('destination').filter((c): c is Node => c !== null);
    // `>&-` and `<&-` close a descriptor and take no target: every word after them is an argument.
    return /^[<>]&-$/.test(redirectOp(r)) ? dest : dest.slice(1);
  }
  if (r.type === 'heredoc_redirect') {
    // A redirection after the here-document's delimiter is nested in it, with its own extra words.
    return r.namedChildren.flatMap((c) => (c === null ? [] : ARG_TYPES.has(c.type) ? [c] : c.type === 'file_redirect' || c.type === 'herestring_redirect' ? extraWords(c) : []));
  }
  if (r.type === 'herestring_redirect') return r.namedChildren.filter((c): c is Node => c !== null && ARG_TYPES.has(c.type)).slice(1);
  return [];
}

/** bash's reserved words: never the name of a command bash runs. */
const RESERVED_WORDS = new Set(['!', 'case', 'coproc', 'do', 'done', 'elif', 'else', 'esac', 'fi', 'for', 'function', 'if', 'in', 'select', 'then', 'until', 'while', '{', '}', '[[', ']]']);

/** Syntax bash has and a POSIX sh (dash) reads otherwise; over-matching only refuses more. */
const BASH_ONLY = /\$'|\$"|\(\(|\[\[|[<>]\(|&>|\|&|;;&|;&|<<<|\bfunction\b|\bselect\b|\bcoproc\b|\{[^}\s]*(,|\.\.)[^}\s]*\}/;

/** Whether a # at `i` starts a word for bash: at the start, or after an unescaped blank or operator. */
function startsWord(src: string, i: number): boolean {
  if (i === 0) return true;
  if (!' \t\n;&|()<>'.includes(src[i - 1] as string)) return false;
  let slashes = 0;
  for (let k = i - 2; k >= 0 && src[k] === '\\'; k--) slashes++;
  return slashes % 2 === 0;
}

/**
 * bash ends a here-document at the first line that is exactly its delimiter (after leading tabs
 * with <<-). The parser also ended one at `EOF ` or `EOF\r`: the two then disagreed on where the
 * body ends, and a command bash ran was read as a second here-document's body.
 */
function heredocEndRisk(node: Node, src: string, delimiter: string, dash: boolean): string | undefined {
  const body = node.namedChildren.find((c) => c?.type === 'heredoc_body');
  const end = node.namedChildren.find((c) => c?.type === 'heredoc_end');
  if (!end) return 'a here-document without its end line';
  const from = body ? body.startIndex : end.startIndex;
  const lineStart = src.lastIndexOf('\n', end.startIndex - 1) + 1;
  const lineEnd = src.indexOf('\n', end.startIndex);
  const lines = src.slice(src.lastIndexOf('\n', from - 1) + 1, lineEnd < 0 ? undefined : lineEnd).split('\n');
  const norm = (l: string) => (dash ? l.replace(/^\t+/, '') : l);
  if (norm(src.slice(lineStart, lineEnd < 0 ? undefined : lineEnd)) !== delimiter) return 'a here-document whose end line bash reads differently';
  if (lines.slice(0, -1).some((l) => norm(l) === delimiter)) return 'a here-document that bash ends earlier than the parser';
  return undefined;
}

/** A here-document body is expanded unless its delimiter is quoted or escaped. */
function expandsBody(body: Node): boolean {
  const start = body.parent?.namedChildren.find((c) => c?.type === 'heredoc_start');
  return !/['"\\]/.test(start?.text ?? '');
}

/** Indexes of the words bash may replace with file names. */
function globIndexes(words: Word[]): number[] {
  return words.flatMap((w, i) => (w.glob ? [i] : []));
}

function failed(code: ShellErrorCode, message: string): ShellFacts {
  return { commands: [], redirections: [], filesWritten: [], filesRead: [], network: [], assignments: [], structure: [], error: { code, message } };
}

/** Classifies a shell command line. Never throws for bad input: the facts carry an error instead. */
export function classifyShell(text: string): ShellFacts {
  return classify(text, true);
}

function classify(text: string, checkJoined: boolean): ShellFacts {
  // bash cannot hold a NUL in a command string; what runs would differ from what was classified.
  if (text.includes('\u0000')) return failed('WRIT_SHELL_UNPARSEABLE', 'the command holds a NUL character');
  if (text.trim() === '') return failed('WRIT_SHELL_EMPTY', 'the command holds nothing to run');
  const w = new ShellWalker();
  try {
    w.parse(text, { src: text, depth: 0, wrappers: [], env: {} });
  } catch (e) {
    if (e instanceof WritError) throw e; // not initialised: a programming error
    if (e instanceof RangeError) return failed('WRIT_SHELL_UNPARSEABLE', 'the command is nested too deeply to classify');
    // A classifier bug must not let a command through unseen, nor take the caller down.
    return failed('WRIT_SHELL_UNKNOWN', 'the classifier failed on this command');
  }
  const facts: ShellFacts = {
    commands: w.commands,
    redirections: w.redirections,
    filesWritten: [...new Set(w.redirections.filter((r) => r.writes).map((r) => r.target))],
    filesRead: [...new Set(w.redirections.filter((r) => r.reads).map((r) => r.target))],
    network: [...new Set(w.redirections.map((r) => r.target).filter((t) => /^\/dev\/(tcp|udp)\//.test(t)))],
    assignments: [...w.assignments],
    structure: [...w.structure],
  };
  // Variables whose value bash runs or prompt-expands (PS4 under set -x, BASH_ENV, BASH_FUNC_x%%, ...).
  const envs = w.commands.flatMap((c) => Object.entries(c.env));
  const codeVar = [...w.assignments, ...envs.map(([k]) => k)].find(isCodeVariable) ?? [...w.assignedValues, ...envs.filter(([, v]) => !/^[0-9]+$/.test(v)).map(([k]) => k)].find(isIntegerVariable);
  if (codeVar !== undefined) w.opaque.push(`an assignment to ${codeVar.includes(EXPANSION_MARK) ? 'a computed name' : codeVar}, whose value bash runs`);
  // bash reads the bytes after a locale change in that locale: in GBK, BIG5 or SJIS a backslash
  // can be the second byte of a character, and `LC_ALL=zh_CN.GBK` then `cat /var/log/丁\'a' ;touch M #'`
  // ran touch. A child bash reads its script in the locale it is given. Only UTF-8 and C are read
  // as the classifier reads them.
  const locale =
    [...w.unsafeLocales][0] ?? envs.find(([k, v]) => (LOCALE_VARS.has(k) && !SAFE_LOCALE.test(v)) || (k === 'TZ' && !SAFE_TZ.test(v)) || (k === 'LANGUAGE' && !SAFE_LANGUAGE.test(v)))?.[0];
  // TZ names a file the program reads (`TZ=/etc/shadow date` opened it): a zone name only;
  // LANGUAGE names message catalogues by path (`LANGUAGE=../../tmp/x` loaded a planted one).
  if (locale !== undefined)
    w.opaque.push(locale === 'TZ' || locale === 'LANGUAGE' ? `a ${locale} that names a file` : `a locale (${locale}) whose bytes bash may read differently from the classifier`);
  const unknown = w.commands.find((c) => c.unknown || c.opaque);
  if (w.parseError) facts.error = { code: 'WRIT_SHELL_UNPARSEABLE', message: w.parseError };
  else if (w.statements === 0) {
    facts.error = { code: 'WRIT_SHELL_EMPTY', message: 'the command holds nothing to run' };
  } else if (w.unknownTypes.size) {
    facts.error = { code: 'WRIT_SHELL_UNKNOWN', message: `unknown shell construct: ${[...w.unknownTypes].join(', ')}` };
  } else if (w.opaque.length) {
    facts.error = { code: 'WRIT_SHELL_UNKNOWN', message: `${w.opaque[0]}: the line runs code that cannot be seen` };
  } else if (unknown) {
    facts.error = {
      code: 'WRIT_SHELL_UNKNOWN',
      message: unknown.unknown ? 'a program name comes from an expansion' : `${unknown.program ?? '?'} runs code that cannot be seen`,
    };
  }
  if (checkJoined && !facts.error && text.includes('\\\n') && readsDifferentlyJoined(text, facts)) {
    facts.error = { code: 'WRIT_SHELL_UNKNOWN', message: 'a line continuation inside a token, which bash joins before it parses' };
  }
  return facts;
}

/** What a parse says runs, for comparing two parses. */
function signature(f: ShellFacts): string {
  return JSON.stringify([f.error?.code, f.commands.map((c) => [c.program, c.args, c.env, c.wrappers, c.opaque, c.unknown]), f.redirections.map((r) => [r.op, r.target]), f.assignments]);
}

/**
 * Bash removes backslash-newline before it splits tokens (outside single quotes); tree-sitter does not, so
 * `$\<newline>[ x ]` is arithmetic to bash and text to the parser. Classifying the text with every
 * backslash-newline removed must give the same facts; where it does not (a continuation inside a token, or one
 * in single quotes, where it is literal), the line is refused.
 */
function readsDifferentlyJoined(text: string, facts: ShellFacts): boolean {
  return signature(classify(joinContinuations(text) ?? text.replace(/\\\n/g, ''), false)) !== signature(facts);
}

/**
 * Removes backslash-newline as bash does, keeping those in single quotes (literal there), so an argument
 * quoted by quoteShellArgs keeps its value. Undefined where the quoting is beyond this scanner (a substitution or
 * `${...}` inside double quotes, `$'...'`, a here-document, a comment): the caller then removes every one, which
 * can only refuse more.
 */
function joinContinuations(text: string): string | undefined {
  let out = '';
  let state: 'plain' | 'single' | 'double' = 'plain';
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    const next = text[i + 1];
    if (state === 'single') {
      if (c === "'") state = 'plain';
      out += c;
      continue;
    }
    if (c === '\\') {
      if (next === '\n') i += 1;
      else {
        out += c + (next ?? '');
        i += 1;
      }
      continue;
    }
    if (state === 'double') {
      if (c === '"') state = 'plain';
      else if (c === '`' || (c === '$' && (next === '(' || next === '{'))) return undefined; // quotes nest in there
      out += c;
      continue;
    }
    if (c === "'") state = 'single';
    else if (c === '"') state = 'double';
    else if ((c === '$' && next === "'") || (c === '<' && next === '<') || (c === '#' && /^$|[\s;&|()]$/.test(text[i - 1] ?? ''))) return undefined;
    out += c;
  }
  return out;
}
