/**
 * Re-quotes an argv for a remote shell, so the exact approved command is what
 * runs: every word that is not plainly safe goes in single quotes, inside
 * which bash interprets nothing.
 */
import { WritError } from '../../schemas/errors.ts';

// Words made only of these need no quoting. `=` is left out so the program word is never read as an assignment.
const SAFE = /^[A-Za-z0-9_\/.,:@%+-]+$/;

/** Quotes one word. A single quote is written as '"'"' (tree-sitter-bash mis-parses the shorter '\'' form). */
export function quoteShellArg(arg: string): string {
  if (arg.includes('\u0000')) throw new WritError('WRIT_SHELL_UNPARSEABLE', 'an argument holds a NUL character, which a shell cannot pass');
  if (SAFE.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'"'"'`)}'`;
}

/** Quotes a program and its arguments into one command line for `sh -c` on the remote side. */
export function quoteShellArgs(args: string[]): string {
  if (args.length === 0) throw new WritError('WRIT_SHELL_EMPTY');
  return args.map(quoteShellArg).join(' ');
}
