/**
 * Chooses the classifier for a target's kind and caches facts by the SHA-256 of the
 * exact text: parsing a large statement costs more than running it (PERFORMANCE.md).
 */
import { commandText, sha256Hex, type Command, type TargetConfig } from '../schemas/index.ts';
import { classifyShell, classifySql } from '../classify/index.ts';
import type { CommandFacts } from './policy.ts';

const MAX = 10_000;
const cache = new Map<string, CommandFacts>();

export function classifyCommand(target: TargetConfig, command: Command): CommandFacts {
  const text = commandText(command);
  const key = `${target.kind}:${command.kind}:${sha256Hex(text)}`;
  const hit = cache.get(key);
  if (hit) return hit;
  let facts: CommandFacts;
  if (target.kind === 'postgres' && command.kind === 'sql') facts = { kind: 'sql', facts: classifySql(text) };
  else if (target.kind === 'ssh' && command.kind === 'shell') facts = { kind: 'shell', facts: classifyShell(text) };
  else {
    // A command of the wrong kind for its target is refused, not guessed at.
    facts = command.kind === 'sql'
      ? { kind: 'sql', facts: { dialect: 'postgres', statements: [], error: { code: 'WRIT_SQL_UNKNOWN', message: `target ${target.name} does not take SQL` } } }
      : { kind: 'shell', facts: { commands: [], redirections: [], filesWritten: [], filesRead: [], structure: [], error: { code: 'WRIT_SHELL_UNKNOWN', message: `target ${target.name} does not take shell commands` } } };
  }
  if (cache.size >= MAX) cache.delete(cache.keys().next().value!);
  cache.set(key, facts);
  return facts;
}
