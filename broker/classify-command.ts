/**
 * Chooses the classifier for a target's kind and caches facts by the SHA-256 of the exact
 * text: parsing a large statement costs more than running it (PERFORMANCE.md). The cache is
 * bounded by the heap its entries take (heapBytes), not by entry count: the facts of one huge
 * statement can be a hundred times its text (a 225 KB intent once grew the broker by 111 MB).
 * With distinct texts it fills to its bound and stays there (docs/operations.md, Memory). A
 * statement longer than the limit is refused before it is parsed at all.
 */
import { LRUCache } from 'lru-cache';
import { Budgets } from '../lib/index.ts';
import { classifyMysql, classifyShell, classifySql, splitMysql, splitSql } from '../classify/index.ts';
import { commandText, sha256Hex, WritError, type Command, type Config, type TargetConfig } from '../schemas/index.ts';
import type { CommandFacts } from './policy.ts';

export interface ClassifyCommand {
  /**
   * `who`: the principal asking (lib/records.ts principalKey), charged the time classifying takes
   * against its budget (`limits.classifyMsPerSec`); throws WRIT_BUSY while that is spent. Without
   * it (the broker's own re-decisions of a stored command), nothing is charged.
   */
  (target: TargetConfig, command: Command, who?: string): CommandFacts;
  /** Bytes the cache holds now, as counted by heapBytes (for tests and metrics). */
  readonly cachedBytes: number;
  /** Entries the cache holds now. */
  readonly cachedEntries: number;
}

/**
 * Bytes a cache entry holds on V8's heap, counted from its shape: the key, the LRU's slots, and
 * for the facts every object (header + a slot per property), array (header + backing store) and
 * string (header + one or two bytes per character) they own. Measured against heap snapshots
 * (classify-command.test.ts): 0.8-1.5× the real footprint for SQL and shell facts alike,
 * erring high, where twice the facts' JSON length was 0.66-1.9× (it counts an empty array as
 * 4 bytes; V8 holds 32). Node's default x64 build: 8-byte slots, no pointer compression.
 */
function heapBytes(v: unknown, strings = new Set<string>()): number {
  switch (typeof v) {
    case 'string':
      // The classifiers hand out one string object for a name they meet many times (a table in
      // each of its columns): a value is counted once per entry.
      if (strings.has(v)) return 0;
      strings.add(v);
      // Header (map, hash, length) plus the characters, rounded up to the 8-byte allocation unit.
      return 16 + (((/[^\u0000-\u00ff]/.test(v) ? 2 : 1) * v.length + 7) & ~7);
    case 'number':
      // Small integers live in the slot; any other number is a boxed 16-byte HeapNumber.
      return Number.isInteger(v) && Math.abs(v) < 2 ** 30 ? 0 : 16;
    case 'object': {
      if (v === null) return 0;
      if (Array.isArray(v)) {
        // JSArray (map, properties, elements, length) plus its FixedArray (header + a slot per
        // element of its capacity): an array filled by push() grows 0 → 17 → 41 → 77 …, and
        // nothing tells a filled one from an exactly sized one, so the capacity is assumed.
        let cap = 0;
        while (cap < v.length) cap += (cap >> 1) + 16 + (cap === 0 ? 1 : 0);
        let n = 32 + (cap > 0 ? 16 + 8 * cap : 0);
        for (const x of v) n += heapBytes(x, strings);
        return n;
      }
      // JSObject (map, properties, elements) plus a slot per property; a literal `{}` reserves four.
      const values = Object.values(v);
      let n = 24 + 8 * Math.max(4, values.length);
      for (const x of values) n += heapBytes(x, strings);
      return n;
    }
    default:
      // Booleans, undefined: shared oddballs.
      return 0;
  }
}

/**
 * Per entry beyond the facts: the key (a cons string over the prefix and a 64-character hex
 * digest), its hash-table entry in the LRU's Map, and the LRU's slots (key, value, next, prev, size).
 */
const ENTRY_OVERHEAD_BYTES = 256;

function refused(command: Command, code: 'WRIT_SQL_UNKNOWN' | 'WRIT_SHELL_UNKNOWN', message: string): CommandFacts {
  return command.kind === 'sql'
    ? { kind: 'sql', facts: { dialect: 'postgres', statements: [], error: { code: code as 'WRIT_SQL_UNKNOWN', message } } }
    : { kind: 'shell', facts: { commands: [], redirections: [], filesWritten: [], filesRead: [], structure: [], error: { code: code as 'WRIT_SHELL_UNKNOWN', message } } };
}

/** A classifier with its own size-bounded cache, configured from `limits`. */
export function createCommandClassifier(limits: Pick<Config['limits'], 'maxStatementBytes' | 'factsCacheBytes'> & Partial<Pick<Config['limits'], 'classifyMsPerSec'>>): ClassifyCommand {
  const cache = new LRUCache<string, CommandFacts>({ maxSize: limits.factsCacheBytes, sizeCalculation: (facts) => heapBytes(facts) + ENTRY_OVERHEAD_BYTES, max: 100_000 });
  const classify = (target: TargetConfig, command: Command): CommandFacts => {
    const text = commandText(command);
    // A mysql target's facts depend on its default database too (unqualified names are placed in it).
    const key = `${target.kind}:${command.kind}:${target.kind === 'mysql' ? `${JSON.stringify(target.database ?? null)}:` : ''}${sha256Hex(text)}`;
    const hit = cache.get(key);
    if (hit) return hit;
    let facts: CommandFacts;
    if (target.kind === 'postgres' && command.kind === 'sql') {
      // Splitting a long text parses it once (libpg-query's scanner); what the limit protects is the
      // classifier's walk of each statement. A text that does not split is refused here whole: its
      // parse error quotes the text (a literal, a secret), and is never let out as an exception.
      let big = -1;
      let unsplit = false;
      if (text.length > limits.maxStatementBytes) {
        try {
          big = splitSql(text).findIndex((st) => Buffer.byteLength(st) > limits.maxStatementBytes);
        } catch {
          unsplit = true;
        }
      }
      facts = unsplit
        ? refused(
            command,
            'WRIT_SQL_UNKNOWN',
            `the text does not parse, and it is longer than the ${limits.maxStatementBytes}-byte limit for one statement (its parse error quotes the text and is not shown)`,
          )
        : big >= 0
          ? refused(command, 'WRIT_SQL_UNKNOWN', `statement ${big + 1} is longer than the ${limits.maxStatementBytes}-byte limit for one statement`)
          : { kind: 'sql', facts: classifySql(text) };
    } else if (target.kind === 'mysql' && command.kind === 'sql') {
      // The MySQL grammar for MySQL and MariaDB targets; a text the scanner refuses is classified (and refused) whole.
      // Unqualified names go to the target's default database; where that is unknown, they are refused.
      let big = -1;
      if (text.length > limits.maxStatementBytes) {
        try {
          big = splitMysql(text).findIndex((st) => Buffer.byteLength(st) > limits.maxStatementBytes);
        } catch {
          big = Buffer.byteLength(text) > limits.maxStatementBytes ? 0 : -1;
        }
      }
      facts =
        big >= 0
          ? refused(command, 'WRIT_SQL_UNKNOWN', `statement ${big + 1} is longer than the ${limits.maxStatementBytes}-byte limit for one statement`)
          : { kind: 'sql', facts: classifyMysql(text, target.database ?? null) };
    } else if (target.kind === 'ssh' && command.kind === 'shell') {
      facts =
        Buffer.byteLength(text) > limits.maxStatementBytes
          ? refused(command, 'WRIT_SHELL_UNKNOWN', `the command line is longer than the ${limits.maxStatementBytes}-byte limit`)
          : { kind: 'shell', facts: classifyShell(text) };
    } else {
      // A command of the wrong kind for its target is refused, not guessed at.
      facts = refused(command, command.kind === 'sql' ? 'WRIT_SQL_UNKNOWN' : 'WRIT_SHELL_UNKNOWN', `target ${target.name} does not take ${command.kind === 'sql' ? 'SQL' : 'shell commands'}`);
    }
    cache.set(key, facts);
    return facts;
  };
  // Whatever a classifier throws is refused as unknown, with a message that quotes nothing of the
  // command: an exception's text (a parser's "syntax error at or near '…'") went into the log and
  // the audit log unmasked, where a fact's reasons are masked (withRedactedReasons).
  // Classifying is synchronous work on the event loop, bounded per command but not per sender:
  // one principal's explains of 240 KB of tiny statements, two a second, kept a broker from
  // answering anyone (an attack helper's finding). Each principal has a budget of milliseconds.
  const rate = limits.classifyMsPerSec;
  const budgets = rate === undefined ? undefined : new Budgets(rate, rate * 10);
  const guarded = (target: TargetConfig, command: Command, who?: string): CommandFacts => {
    const charged = budgets && who !== undefined ? budgets.of(who) : undefined;
    if (charged && charged.tokens <= 0) {
      throw new WritError(
        'WRIT_BUSY',
        `this principal has used its share of classification on this broker (limits.classifyMsPerSec ${rate}); ask again in ${Math.ceil((1 - charged.tokens) / rate!)} s`,
      );
    }
    const started = performance.now();
    try {
      return classify(target, command);
    } catch {
      return refused(command, command.kind === 'sql' ? 'WRIT_SQL_UNKNOWN' : 'WRIT_SHELL_UNKNOWN', 'the command could not be classified');
    } finally {
      if (charged) charged.tokens -= performance.now() - started;
    }
  };
  return Object.defineProperties(guarded, {
    cachedBytes: { get: () => cache.calculatedSize },
    cachedEntries: { get: () => cache.size },
  }) as ClassifyCommand;
}
