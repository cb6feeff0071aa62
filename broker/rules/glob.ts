/**
 * Pattern sets for rule conditions: picomatch globs (with `dot: true`, so `*` also
 * matches names that start with a dot) compiled once, literal patterns answered by a
 * Set lookup (shell argument patterns are in args.ts). A glob is refused when picomatch
 * would silently turn it into a pattern that never matches (`{a,b`, a trailing `\`).
 */
import picomatch from 'picomatch';

const OPTS = { dot: true } as const;

// Compiled globs by source: large policies repeat the same patterns across many rules.
const regexCache = new Map<string, RegExp>();

function makeRe(p: string): RegExp {
  let re = regexCache.get(p);
  if (!re) {
    re = picomatch.makeRe(p, OPTS);
    if (regexCache.size >= 100_000) regexCache.clear();
    regexCache.set(p, re);
  }
  return re;
}

/** True when the pattern holds glob syntax; false for a literal. */
export function isGlob(p: string): boolean {
  return /[*?[\]{}\\]/.test(p) || /[!+@]\(/.test(p) || p.startsWith('!');
}

/** Why a glob is unusable, or null when it is fine. */
export function globProblem(p: string): string | null {
  if (p.length === 0) return 'empty pattern';
  if (!isGlob(p)) return null;
  let depthBrace = 0;
  let inBracket = false;
  for (let i = 0; i < p.length; i++) {
    const ch = p[i];
    if (ch === '\\') {
      if (i === p.length - 1) return 'ends with a lone backslash';
      i++;
      continue;
    }
    if (inBracket) {
      if (ch === ']') inBracket = false;
      continue;
    }
    if (ch === '[') inBracket = true;
    else if (ch === '{') depthBrace++;
    else if (ch === '}') depthBrace--;
    if (depthBrace < 0) return 'unbalanced "}"';
  }
  if (inBracket) return 'unclosed "["';
  if (depthBrace !== 0) return 'unclosed "{"';
  try {
    const re = makeRe(p);
    if (re.source === '$^') return 'picomatch cannot compile it';
  } catch (e) {
    return (e as Error).message;
  }
  return null;
}

/** Why a regular expression is unusable, or null. */
export function regexProblem(src: string): string | null {
  try {
    new RegExp(src, 'u');
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

/** A compiled list of globs: `test` is true when any pattern matches the value. */
export class GlobSet {
  readonly patterns: readonly string[];
  readonly #literals: Set<string>;
  readonly #regexes: RegExp[];
  /** True when some pattern is `*` or `**` (matches every value without a `/` resp. every value). */
  readonly matchesAll: boolean;

  constructor(patterns: readonly string[]) {
    this.patterns = patterns;
    this.#literals = new Set(patterns.filter((p) => !isGlob(p)));
    this.#regexes = patterns.filter(isGlob).map(makeRe);
    this.matchesAll = patterns.includes('**');
  }

  test(value: string): boolean {
    if (this.#literals.has(value)) return true;
    for (const re of this.#regexes) if (re.test(value)) return true;
    return false;
  }

  /** The literal patterns (usable as index keys) when every pattern is a literal; otherwise null. */
  literalKeys(): string[] | null {
    return this.#regexes.length === 0 ? [...this.#literals] : null;
  }

  toString(): string {
    return this.patterns.join(', ');
  }
}

/** Matches a glob against one literal string: used by the shadowing check on patterns. */
export function globMatchesLiteral(glob: string, literal: string): boolean {
  return glob === literal || (isGlob(glob) && makeRe(glob).test(literal));
}
