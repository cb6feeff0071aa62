/**
 * Chooses the classifier for a target's kind and caches facts by the SHA-256 of the exact
 * text: parsing a large statement costs more than running it (PERFORMANCE.md). The cache is
 * bounded by the facts' estimated size, not by entry count: the facts of one huge statement
 * can be a hundred times its text (a 225 KB intent once grew the broker by 111 MB). A
 * statement longer than the limit is refused before it is parsed at all.
 */
import { LRUCache } from 'lru-cache';
import { classifyShell, classifySql, splitSql } from '../classify/index.ts';
import { commandText, sha256Hex, type Command, type Config, type TargetConfig } from '../schemas/index.ts';
import type { CommandFacts } from './policy.ts';

export interface ClassifyCommand {
  (target: TargetConfig, command: Command): CommandFacts;
  /** Estimated bytes the cache holds now (for tests and metrics). */
  readonly cachedBytes: number;
}

/** Rough bytes a value holds on the heap: its JSON length twice (UTF-16), plus object overhead. */
function approxBytes(v: unknown): number {
  return JSON.stringify(v).length * 2 + 256;
}

function refused(command: Command, code: 'WRIT_SQL_UNKNOWN' | 'WRIT_SHELL_UNKNOWN', message: string): CommandFacts {
  return command.kind === 'sql'
    ? { kind: 'sql', facts: { dialect: 'postgres', statements: [], error: { code: code as 'WRIT_SQL_UNKNOWN', message } } }
    : { kind: 'shell', facts: { commands: [], redirections: [], filesWritten: [], filesRead: [], structure: [], error: { code: code as 'WRIT_SHELL_UNKNOWN', message } } };
}

/** A classifier with its own size-bounded cache, configured from `limits`. */
export function createCommandClassifier(limits: Pick<Config['limits'], 'maxStatementBytes' | 'factsCacheBytes'>): ClassifyCommand {
  const cache = new LRUCache<string, CommandFacts>({ maxSize: limits.factsCacheBytes, sizeCalculation: approxBytes, max: 100_000 });
  const classify = (target: TargetConfig, command: Command): CommandFacts => {
    const text = commandText(command);
    const key = `${target.kind}:${command.kind}:${sha256Hex(text)}`;
    const hit = cache.get(key);
    if (hit) return hit;
    let facts: CommandFacts;
    if (target.kind === 'postgres' && command.kind === 'sql') {
      // splitSql only scans quotes and comments, so it is cheap; parsing is what the limit protects.
      const big = text.length > limits.maxStatementBytes ? splitSql(text).findIndex((st) => Buffer.byteLength(st) > limits.maxStatementBytes) : -1;
      facts = big >= 0
        ? refused(command, 'WRIT_SQL_UNKNOWN', `statement ${big + 1} is longer than the ${limits.maxStatementBytes}-byte limit for one statement`)
        : { kind: 'sql', facts: classifySql(text) };
    } else if (target.kind === 'ssh' && command.kind === 'shell') {
      facts = Buffer.byteLength(text) > limits.maxStatementBytes
        ? refused(command, 'WRIT_SHELL_UNKNOWN', `the command line is longer than the ${limits.maxStatementBytes}-byte limit`)
        : { kind: 'shell', facts: classifyShell(text) };
    } else {
      // A command of the wrong kind for its target is refused, not guessed at.
      facts = refused(command, command.kind === 'sql' ? 'WRIT_SQL_UNKNOWN' : 'WRIT_SHELL_UNKNOWN', `target ${target.name} does not take ${command.kind === 'sql' ? 'SQL' : 'shell commands'}`);
    }
    cache.set(key, facts);
    return facts;
  };
  return Object.defineProperty(classify, 'cachedBytes', { get: () => cache.calculatedSize }) as ClassifyCommand;
}
