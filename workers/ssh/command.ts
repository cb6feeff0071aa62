/**
 * The command line sent to the remote shell.
 *
 * The grant's SHA-256 covers the exact approved text, and the policy matched rules on the
 * facts the classifier drew from it. When those facts are exactly one plain simple command
 * (no expansion, redirection, structure, wrapper, prefix assignment, glob or tilde), the
 * worker sends `quoteShellArgs([program, ...args])`: every word single-quoted, so the remote
 * shell runs exactly the argv the policy saw even where it would read the original text
 * differently from the classifier's bash grammar. Anything richer is sent as the exact
 * approved text: re-quoting would change its meaning (a pipeline, `$VAR`, `*.log`), and
 * the policy approved that whole tree. A text whose facts carry an error is refused here
 * too, although the broker already refused it.
 */
import { classifyShell, EXPANSION_MARK, initClassifiers, quoteShellArgs, type ShellFacts } from '../../classify/index.ts';
import { WritError } from '../../schemas/index.ts';

/** What runs, and whether it was rebuilt from the parsed words. */
export interface RemoteCommand {
  /** The line handed to the remote user's shell (`exec` request). */
  line: string;
  /** True when `line` is the re-quoted argv; false when it is the approved text itself. */
  requoted: boolean;
}

/**
 * Characters that mean something to the shell when unquoted, but survive quote removal
 * unchanged: from the facts alone `*.log` and `'*.log'` look the same, so such a word is
 * never re-quoted (that would turn a glob into a literal).
 */
const AMBIGUOUS = /[*?[~]/;

/** The single plain argv of these facts, or null when they hold anything more. */
function plainArgv(f: ShellFacts): string[] | null {
  if (f.commands.length !== 1 || f.redirections.length > 0 || f.structure.length > 0) return null;
  if ((f.assignments?.length ?? 0) > 0 || (f.network?.length ?? 0) > 0) return null;
  const c = f.commands[0]!;
  if (c.program === null || c.opaque || c.unknown || c.via !== undefined) return null;
  if (c.wrappers.length > 0 || Object.keys(c.env).length > 0) return null;
  const words = [c.program, ...c.args];
  if (words.some((w) => w.includes(EXPANSION_MARK) || AMBIGUOUS.test(w))) return null;
  return words;
}

/** Builds the remote command line for an approved shell text; throws the classifier's code for a text it refuses. */
export async function remoteCommand(text: string): Promise<RemoteCommand> {
  await initClassifiers();
  const facts = classifyShell(text);
  if (facts.error) throw new WritError(facts.error.code, facts.error.message);
  const argv = plainArgv(facts);
  return argv === null ? { line: text, requoted: false } : { line: quoteShellArgs(argv), requoted: true };
}
