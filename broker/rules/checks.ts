/**
 * Building blocks of compiled conditions. A condition over a list of facts follows the
 * rule's scope: under `all` (grants) every item must match, matched strictly; under
 * `any` (denials) one item is enough, matched loosely. Where a fact is uncertain (a
 * program reached by an expansion, an argument holding `$x`, a column whose table is
 * ambiguous) strict matching says no and loose matching says yes, so uncertainty never
 * widens an allow and never narrows a deny. Negative conditions (`not…`) flip this.
 */
import type { ColumnFact } from '../../classify/index.ts';
import { globCanMatchDotSegment } from './args.ts';
import { GlobSet } from './glob.ts';
import { isExpanded } from './view.ts';

export type Scope = 'all' | 'any';

/** One compiled condition with the label explain() reports when it fails. */
export interface Check<T> {
  readonly label: string;
  test(x: T): boolean;
}

/** How one value matches a pattern set, strictly (`loose` false) or loosely. */
export type ValueMatcher<V> = (value: V, loose: boolean) => boolean;

/**
 * A condition over a list of values. Positive: under `all`, every value matches strictly
 * (an empty list passes); under `any`, some value matches loosely. Negative: no value
 * matches, loosely under `all` and strictly under `any`.
 */
export function listCheck<T, V>(label: string, get: (x: T) => readonly V[], match: ValueMatcher<V>, scope: Scope, negative = false): Check<T> {
  // Plain loops: these run on every decision, and closures made per call cost more than the test.
  if (negative) {
    const loose = scope === 'all';
    return {
      label,
      test(x) {
        for (const v of get(x)) if (match(v, loose)) return false;
        return true;
      },
    };
  }
  if (scope === 'all') {
    return {
      label,
      test(x) {
        for (const v of get(x)) if (!match(v, false)) return false;
        return true;
      },
    };
  }
  return {
    label,
    test(x) {
      for (const v of get(x)) if (match(v, true)) return true;
      return false;
    },
  };
}

/** A condition on a boolean fact. */
export function boolCheck<T>(label: string, get: (x: T) => boolean, want: boolean): Check<T> {
  return { label, test: (x) => get(x) === want };
}

/** Plain strings against globs; uncertainty does not arise. */
export function globMatcher(set: GlobSet): ValueMatcher<string> {
  return (v) => set.test(v);
}

/**
 * Redirection targets: one holding an expansion, or an unquoted glob (`< /var/log/.?/x`,
 * `> /tmp/*`), is unknown: a miss under strict matching, a match under loose. A glob is
 * certain only against `**` when it cannot match a dot segment.
 */
export function pathMatcher(set: GlobSet, globs: (v: string) => boolean): ValueMatcher<string> {
  return (v, loose) => {
    if (isExpanded(v)) return loose;
    if (globs(v)) return loose || (set.matchesAll && !globCanMatchDotSegment(v));
    return set.test(v);
  };
}

/** Program names: strict matches the name as written; loose also its basename; an unknown program matches only loosely. */
export function programMatcher(set: GlobSet): ValueMatcher<string | null> {
  return (v, loose) => {
    if (v === null) return loose;
    if (set.test(v)) return true;
    if (!loose) return false;
    const base = v.slice(v.lastIndexOf('/') + 1);
    return base !== v && set.test(base);
  };
}

/** Function names: loose also tries the unqualified name of a schema-qualified call. */
export function functionMatcher(set: GlobSet): ValueMatcher<string> {
  return (v, loose) => {
    if (set.test(v)) return true;
    if (!loose) return false;
    const dot = v.lastIndexOf('.');
    return dot >= 0 && set.test(v.slice(dot + 1));
  };
}

/**
 * Column patterns are `schema.table.column` globs (or a bare column glob, any table).
 * A column whose table is unknown, or a star, matches only loosely.
 */
export function columnMatcher(patterns: readonly string[]): ValueMatcher<ColumnFact> {
  const parts = patterns.map((p) => {
    const dot = p.lastIndexOf('.');
    return {
      full: new GlobSet([p]),
      table: dot < 0 ? null : new GlobSet([p.slice(0, dot)]),
      column: new GlobSet([dot < 0 ? p : p.slice(dot + 1)]),
      everyColumn: ['*', '**'].includes(dot < 0 ? p : p.slice(dot + 1)),
    };
  });
  return (c, loose) => {
    for (const p of parts) {
      if (c.table !== null && c.column !== '*' && (p.table ? p.full.test(`${c.table}.${c.column}`) : p.column.test(c.column))) return true;
      if (!loose) {
        // A star is covered only by a pattern whose column part covers every column.
        if (c.column === '*' && c.table !== null && p.everyColumn && (p.table === null || p.table.test(c.table))) return true;
        continue;
      }
      const tableOk = c.table === null || p.table === null || p.table.test(c.table);
      if (tableOk && (c.column === '*' || p.column.test(c.column))) return true;
    }
    return false;
  };
}
