/**
 * Matching shell arguments against rule patterns, with three outcomes: a certain match,
 * a certain miss, or uncertain (null). Uncertain is a miss under strict matching (grants)
 * and a match under loose matching (denials), so it never widens an allow.
 *
 * What makes an argument uncertain:
 * - it holds an expansion (`$x`, `$(…)`): its value, and for an unquoted one even the
 *   number of words, is unknown;
 * - it holds an unquoted glob: the shell replaces it with file names the broker cannot
 *   see. A glob that can match a `.` or `..` segment (`.?`, `.*`, `.[.]`, or a segment
 *   starting with a glob character: dash, and bash before 5.2, let `.?` match `..`) is
 *   uncertain against every pattern; any other glob is certain only against a pattern
 *   that matches every name it can expand to (`*` for one segment, `**`).
 *
 * And the option rule: an argument starting with `-` matches only option patterns (a
 * glob starting with `-`, or a regex whose source starts with `-` or `^-`), so
 * `--host=evil.service` does not pass as `*.service`.
 */
import { EXPANSION_MARK } from '../../classify/index.ts';
import { GlobSet } from './glob.ts';

function isExpanded(arg: string): boolean {
  return arg.includes(EXPANSION_MARK);
}

/** An argument pattern: a glob, or a JavaScript regular expression (anchor it yourself). */
export type ArgPattern = string | { regex: string };

/** True when a pattern is an option pattern: only these match arguments starting with `-`. */
function isOptionPattern(p: ArgPattern): boolean {
  if (typeof p === 'string') return p.startsWith('-');
  return p.regex.startsWith('-') || p.regex.startsWith('^-');
}

const GLOB_CHAR = /[*?[]|[+@!]\(/;

/** True when a word holds glob syntax the shell would expand if it were unquoted. */
export function hasGlobChars(word: string): boolean {
  return GLOB_CHAR.test(word);
}

/**
 * True when an unquoted glob can match a `.` or `..` path segment: some segment has a glob
 * whose literal prefix is empty or only dots. A segment with a literal prefix holding any
 * other character (`a*`, `x.?`) can only expand to names starting with it. Every glob
 * character counts as active, quoted or not: that only adds uncertainty.
 */
export function globCanMatchDotSegment(word: string): boolean {
  for (const seg of word.split('/')) {
    const m = GLOB_CHAR.exec(seg);
    if (m && /^\.*$/.test(seg.slice(0, m.index))) return true;
  }
  return false;
}

/** One argument as the rules see it. */
export interface Arg {
  readonly text: string;
  /** Holds an unquoted glob. */
  readonly glob: boolean;
}

/** Uncertain: an expansion, or a glob that can match a dot segment (or expand to an option). */
function argUncertain(a: Arg): boolean {
  return isExpanded(a.text) || (a.glob && globCanMatchDotSegment(a.text));
}

/** Argument patterns of one program (or one position): globs and regexes, split by the option rule. */
class ArgSet {
  readonly #all: Matcher;
  readonly #options: Matcher;
  readonly text: string;

  constructor(patterns: readonly ArgPattern[]) {
    this.#all = new Matcher(patterns, false);
    this.#options = new Matcher(patterns.filter(isOptionPattern), true);
    this.text = patterns.map((p) => (typeof p === 'string' ? p : `/${p.regex}/`)).join(', ');
  }

  /** true: certainly matches; false: certainly not; null: uncertain. */
  test(a: Arg): boolean | null {
    if (argUncertain(a)) return null;
    const m = a.text.startsWith('-') ? this.#options : this.#all;
    if (!a.glob) return m.test(a.text);
    // The expansion is certain to match only a pattern every possible expansion matches.
    return m.coversGlob(a.text) ? true : null;
  }
}

class Matcher {
  readonly #globs: GlobSet;
  readonly #regexes: RegExp[];
  /** `*` (every single-segment name) or `**` (every path), with their option forms. */
  readonly #star: boolean;
  readonly #starStar: boolean;

  constructor(patterns: readonly ArgPattern[], options: boolean) {
    const globs = patterns.filter((p): p is string => typeof p === 'string');
    this.#globs = new GlobSet(globs);
    this.#regexes = patterns.filter((p): p is { regex: string } => typeof p !== 'string').map((p) => new RegExp(p.regex, 'u'));
    const dash = options ? '-' : '';
    this.#star = globs.includes(`${dash}*`);
    this.#starStar = globs.includes(`${dash}**`);
  }

  test(v: string): boolean {
    if (this.#globs.test(v)) return true;
    for (const re of this.#regexes) if (re.test(v)) return true;
    return false;
  }

  /** A glob that cannot match a dot segment, against `*` / `**`: its expansions have its literal prefix. */
  coversGlob(v: string): boolean {
    if (this.#starStar) return true;
    return this.#star && !v.slice(v.startsWith('-') ? 1 : 0).includes('/');
  }
}

/** An element of an argv form: a pattern for one position, or the rest marker (last only). */
type ArgvElement = ArgPattern | { rest: true | ArgPattern[] };
/** One form: the arguments position by position. */
type ArgvForm = ArgvElement[];
/** Per program: one form, or a list of alternative forms. */
export type ArgvSpec = Record<string, ArgvForm | ArgvForm[]>;

/** True when the value is a list of forms rather than one form (`[]` is one form: no arguments). */
function isFormList(v: ArgvForm | ArgvForm[]): v is ArgvForm[] {
  return v.length > 0 && v.every((e) => Array.isArray(e));
}

interface CompiledForm {
  readonly fixed: readonly ArgSet[];
  /** null: no further argument; 'operands': any further non-option argument; else patterns. */
  readonly rest: null | 'operands' | ArgSet;
}

function compileForm(form: ArgvForm): CompiledForm {
  const fixed: ArgSet[] = [];
  let rest: CompiledForm['rest'] = null;
  for (const e of form) {
    if (typeof e === 'object' && 'rest' in e) rest = e.rest === true ? 'operands' : new ArgSet(e.rest);
    else fixed.push(new ArgSet([e]));
  }
  return { fixed, rest };
}

/**
 * Strict: every fixed position certainly matches its pattern (a glob there may expand to
 * several words and shift the rest, so it never does), and the further arguments are
 * exactly what the rest marker admits.
 */
function formStrict(f: CompiledForm, args: readonly Arg[]): boolean {
  if (args.length < f.fixed.length) return false;
  for (let i = 0; i < f.fixed.length; i++) {
    const a = args[i]!;
    if (a.glob || f.fixed[i]!.test(a) !== true) return false;
  }
  if (args.length === f.fixed.length) return true;
  const rest = f.rest;
  if (rest === null) return false;
  for (let i = f.fixed.length; i < args.length; i++) {
    const a = args[i]!;
    if (rest === 'operands' ? argUncertain(a) || a.text.startsWith('-') : rest.test(a) !== true) return false;
  }
  return true;
}

/** Loose: could the command match? An expansion or glob makes every later position unknown. */
function formLoose(f: CompiledForm, args: readonly Arg[]): boolean {
  for (let i = 0; i < f.fixed.length; i++) {
    const a = args[i];
    if (!a) return false;
    if (a.glob || isExpanded(a.text)) return true;
    if (f.fixed[i]!.test(a) === false) return false;
  }
  const rest = f.rest;
  for (let i = f.fixed.length; i < args.length; i++) {
    const a = args[i]!;
    // An unquoted expansion may expand to no word at all.
    if (rest === null) {
      if (isExpanded(a.text)) return true;
      else continue;
    }
    if (rest === 'operands' ? !argUncertain(a) && a.text.startsWith('-') : rest.test(a) === false) return false;
  }
  return rest !== null || args.length === f.fixed.length || args.slice(f.fixed.length).some((a) => isExpanded(a.text));
}

/** Looks up what applies to a program: its own entry (loose: or its basename's), and the `*` entry. */
function byProgram<S>(spec: ReadonlyMap<string, S>): (p: string | null, loose: boolean) => S[] {
  const star = spec.get('*');
  const all = [...spec.values()];
  const memo = [new Map<string, S[]>(), new Map<string, S[]>()];
  return (p, loose) => {
    if (p === null) return loose ? all : star ? [star] : [];
    const m = memo[loose ? 1 : 0]!;
    let out = m.get(p);
    if (out) return out;
    out = [];
    if (star) out.push(star);
    const own = spec.get(p);
    if (own && own !== star) out.push(own);
    if (loose) {
      const base = spec.get(p.slice(p.lastIndexOf('/') + 1));
      if (base && base !== own && base !== star) out.push(base);
    }
    if (m.size < 10_000) m.set(p, out);
    return out;
  };
}

interface Cmd {
  program: string | null;
  args: readonly Arg[];
}

/**
 * Per-program argument patterns (key: a program as written, or `*`). Under `all`, every
 * argument of a command whose program has patterns must certainly match one of them (a
 * program without patterns is unconstrained here); under `any`, one argument that may
 * match is enough.
 */
export function argsCheck<T>(label: string, spec: Record<string, readonly ArgPattern[]>, get: (x: T) => Cmd, scope: 'all' | 'any'): { label: string; test(x: T): boolean } {
  const sets = byProgram(new Map(Object.entries(spec).map(([k, v]) => [k, new ArgSet(v)])));
  if (scope === 'all') {
    return {
      label,
      test(x) {
        const { program, args } = get(x);
        const own = sets(program, false);
        if (own.length === 0) return program !== null;
        for (const a of args) if (!own.some((s) => s.test(a) === true)) return false;
        return true;
      },
    };
  }
  return {
    label,
    test(x) {
      const { program, args } = get(x);
      const own = sets(program, true);
      for (const a of args) if (own.some((s) => s.test(a) !== false)) return true;
      return false;
    },
  };
}

/**
 * Positional forms per program (key: a program as written, or `*`). Under `all`, a command
 * whose program has forms must match one of them exactly; under `any`, one form that may
 * match is enough. A program with an entry of its own is held to it, not to `*`'s.
 */
export function argvCheck<T>(label: string, spec: ArgvSpec, get: (x: T) => Cmd, scope: 'all' | 'any'): { label: string; test(x: T): boolean } {
  const compiled = new Map(Object.entries(spec).map(([k, v]) => [k, (isFormList(v) ? v : [v]).map(compileForm)]));
  const forms = byProgram(compiled);
  const star = compiled.get('*');
  if (scope === 'all') {
    return {
      label,
      test(x) {
        const { program, args } = get(x);
        const found = forms(program, false);
        if (found.length === 0) return program !== null;
        const own = found.length > 1 || found[0] !== star ? found.filter((f) => f !== star) : found;
        return own.some((fs) => fs.some((f) => formStrict(f, args)));
      },
    };
  }
  return {
    label,
    test(x) {
      const { program, args } = get(x);
      return forms(program, true).some((fs) => fs.some((f) => formLoose(f, args)));
    },
  };
}
