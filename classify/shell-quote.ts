/**
 * Re-quotes an argv for a remote shell, so the exact approved command is what
 * runs: every word that is not plainly safe goes in single quotes, inside
 * which bash interprets nothing.
 */
import { WritError } from '../schemas/errors.ts';

// Arguments made only of these need no quoting.
const SAFE_ARG = /^[A-Za-z0-9_\/.,:@%+=-]+$/;
// A program word is held to less: `=` would make it an assignment, and tree-sitter-bash misreads a
// command name holding `%` or `@` (bash does not), so the classifier would refuse the command.
const SAFE_PROGRAM = /^[A-Za-z0-9_\/.-]+$/;

function quote(word: string, safe: RegExp): string {
  if (word.includes('\u0000')) throw new WritError('WRIT_SHELL_UNPARSEABLE', 'an argument holds a NUL character, which a shell cannot pass');
  if (safe.test(word)) return word;
  // A single quote is written as '"'"' (tree-sitter-bash misreads the shorter '\'' in some places).
  return `'${word.replace(/'/g, `'"'"'`)}'`;
}

/** Quotes one argument (not the program word: see quoteShellArgs). */
export function quoteShellArg(arg: string): string {
  return quote(arg, SAFE_ARG);
}

/** Quotes a program and its arguments into one command line for `sh -c` on the remote side. */
export function quoteShellArgs(args: string[]): string {
  if (args.length === 0) throw new WritError('WRIT_SHELL_EMPTY');
  return args.map((a, i) => quote(a, i === 0 ? SAFE_PROGRAM : SAFE_ARG)).join(' ');
}
