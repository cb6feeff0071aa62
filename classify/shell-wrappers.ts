/**
 * Programs that run another command: sudo, env, nohup, timeout, xargs, the
 * shells' -c, eval, ... Each spec skips the wrapper's own options and says
 * what it runs: an inner argv, a script to re-parse, stdin, or a file.
 */
import { textWord, type Word } from './shell-words.ts';
import { EXPANSION_MARK } from './types.ts';

/** What a wrapper runs. */
export interface Unwrapped {
  /** The argv it runs; undefined when it runs none (the wrapper is then the program itself). */
  inner?: Word[];
  /** Shell source it runs (`sh -c`, `eval`, `su -c`, `watch`, `env -S`): words joined by spaces. */
  script?: Word[];
  /** Reads commands from its standard input (`sh`, `bash -s`, `sudo -s` without a command). */
  readsStdin?: boolean;
  /** Runs commands from a file (`source f`, `bash f.sh`). */
  runsFile?: boolean;
  /** VAR=val given to the wrapper (env, sudo). */
  env?: Record<string, string>;
  /** How the inner command is reached, when it is worth naming. */
  via?: string;
}

interface OptionSpec {
  /** Short options that take a value (`u` for `-u root` / `-uroot`). */
  short?: string;
  /** Long options that take a value when not given with `=`. */
  long?: string[];
  /** `-10` style numeric options (nice). */
  numeric?: boolean;
  /** `+o`-style options too (shells). */
  plus?: boolean;
  /** `-` alone is an option (env). */
  dash?: boolean;
}

interface Options {
  /** Index of the first operand. */
  index: number;
  /** Options seen, short by letter and long by name, with their value (or true). */
  opts: Map<string, string | true>;
}

/** Skips leading options; stops at `--`, at the first operand, or at a word holding an expansion. */
function skipOptions(words: Word[], spec: OptionSpec): Options {
  const opts = new Map<string, string | true>();
  let i = 0;
  const takeNext = (): string => {
    i += 1;
    return words[i]?.value ?? '';
  };
  for (; i < words.length; i++) {
    const w = words[i] as Word;
    const a = w.value;
    if (!w.literal) break;
    if (a === '--') {
      i += 1;
      break;
    }
    if (a === '-' && spec.dash) {
      opts.set('-', true);
      continue;
    }
    const plus = spec.plus === true && a.startsWith('+') && a.length > 1;
    if ((!a.startsWith('-') && !plus) || a === '-') break;
    if (spec.numeric && /^-\d+$/.test(a)) {
      opts.set('n', a.slice(1));
      continue;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
      opts.set(name, eq >= 0 ? a.slice(eq + 1) : spec.long?.includes(name) ? takeNext() : true);
      continue;
    }
    for (let j = 1; j < a.length; j++) {
      const ch = a[j] as string;
      if (spec.short?.includes(ch)) {
        opts.set(ch, j + 1 < a.length ? a.slice(j + 1) : takeNext());
        break;
      }
      opts.set(ch, true);
    }
  }
  return { index: i, opts };
}

// env and sudo take any leading word holding `=` as an assignment, valid shell name or not
// (`env 'BASH_FUNC_ls%%=() { id; }' bash -c ls` defines a function in the child bash).
const ASSIGNMENT = /^[^=]+=/;

/** Leading NAME=value words (env, sudo), as an env record; returns the index after them. */
function assignments(words: Word[], from: number): { env: Record<string, string>; index: number } {
  const env: Record<string, string> = {};
  let i = from;
  for (; i < words.length; i++) {
    const w = words[i] as Word;
    const m = ASSIGNMENT.exec(w.value);
    if (!m) break;
    env[m[0].slice(0, -1)] = w.value.slice(m[0].length);
  }
  return { env, index: i };
}

const has = (o: Options, ...names: string[]) => names.some((n) => o.opts.has(n));

function sudo(words: Word[]): Unwrapped {
  const o = skipOptions(words, {
    short: 'CDghpRrtTUu',
    long: ['close-from', 'chdir', 'group', 'host', 'prompt', 'chroot', 'role', 'type', 'command-timeout', 'other-user', 'user'],
  });
  // -e edits files, -l lists, -v/-k/-K/-V manage credentials: none runs a command.
  if (has(o, 'e', 'edit', 'l', 'list', 'v', 'validate', 'k', 'K', 'reset-timestamp', 'remove-timestamp', 'V', 'version', 'h', 'help')) return {};
  const a = assignments(words, o.index);
  const inner = words.slice(a.index);
  if (inner.length === 0) return has(o, 's', 'shell', 'i', 'login') ? { readsStdin: true, env: a.env } : { env: a.env };
  return { inner, env: a.env };
}

function doas(words: Word[]): Unwrapped {
  const o = skipOptions(words, { short: 'uC' });
  if (has(o, 'C')) return {};
  const inner = words.slice(o.index);
  if (inner.length === 0) return has(o, 's') ? { readsStdin: true } : {};
  return { inner };
}

function env(words: Word[]): Unwrapped {
  const o = skipOptions(words, { short: 'uCPS', long: ['unset', 'chdir', 'split-string'], dash: true });
  const a = assignments(words, o.index);
  const rest = words.slice(a.index);
  const split = o.opts.get('S') ?? o.opts.get('split-string');
  if (typeof split === 'string') {
    return { script: [textWord(split), ...rest], env: a.env, via: 'env -S' };
  }
  return rest.length ? { inner: rest, env: a.env } : { env: a.env };
}

/** A wrapper whose options are all known and whose operands are the command. */
const simple =
  (spec: OptionSpec, noRun: string[] = []): ((words: Word[]) => Unwrapped) =>
  (words) => {
    const o = skipOptions(words, spec);
    if (has(o, ...noRun)) return {};
    const inner = words.slice(o.index);
    return inner.length ? { inner } : {};
  };

function timeout(words: Word[]): Unwrapped {
  const o = skipOptions(words, { short: 'sk', long: ['signal', 'kill-after'] });
  const inner = words.slice(o.index + 1); // the duration comes first
  return inner.length ? { inner } : {};
}

/** What xargs puts into a command from its input: known only when it runs, so never a literal. */
const XARGS_INPUT = `${EXPANSION_MARK}xargs input${EXPANSION_MARK}`;

function xargs(words: Word[]): Unwrapped {
  const o = skipOptions(words, {
    short: 'aEdILnPs',
    long: ['arg-file', 'delimiter', 'max-args', 'max-procs', 'max-chars', 'process-slot-var', 'replace'],
  });
  const rest = words.slice(o.index);
  // With no command xargs runs echo.
  const command = rest.length ? rest : [textWord('echo')];
  // -I R, --replace[=R], and the old -i[R] (R defaults to {}), also inside a cluster (-0iX).
  const cluster = words.slice(0, o.index).find((w) => /^-[^-]*i/.test(w.value));
  const legacy = cluster ? cluster.value.slice(cluster.value.indexOf('i') + 1) || '{}' : undefined;
  const long = o.opts.get('replace');
  const replace = o.opts.get('I') ?? (typeof long === 'string' ? long : o.opts.has('replace') ? '{}' : legacy);
  // `-I X`: every X in the command is an input line (`cat /var/log/X/X/etc/passwd` with X = `..`
  // passed a /var/log/** rule and read /etc/passwd). Without it the input lines are appended as
  // arguments (`echo -exec touch M ';' | xargs find /tmp` ran touch). Either way those arguments
  // are not what the text shows: they are expansions to the policy.
  if (typeof replace === 'string' && replace !== '') {
    const inner = command.map((w) => (w.value.includes(replace) ? { ...w, value: w.value.split(replace).join(XARGS_INPUT), literal: false, glob: true } : w));
    return { inner, via: 'xargs' };
  }
  return { inner: [...command, { value: XARGS_INPUT, literal: false, glob: true, start: -1, end: -1 }], via: 'xargs' };
}

function watch(words: Word[]): Unwrapped {
  const o = skipOptions(words, { short: 'nq', long: ['interval', 'equexit'] });
  const rest = words.slice(o.index);
  if (!rest.length) return {};
  // watch runs its arguments through `sh -c` unless -x/--exec.
  return has(o, 'x', 'exec') ? { inner: rest, via: 'watch' } : { script: rest, via: 'watch' };
}

/** sh, bash, dash, zsh, ksh...: `-c script`, a script file, or commands from stdin. */
function shell(name: string): (words: Word[]) => Unwrapped {
  return (words) => {
    const o = skipOptions(words, { short: 'oO', long: ['rcfile', 'init-file'], plus: true });
    if (has(o, 'help', 'version')) return {};
    const operands = words.slice(o.index);
    if (has(o, 'c')) {
      const script = operands[0];
      return script ? { script: [script], via: `${name} -c` } : {};
    }
    if (operands.length === 0 || has(o, 's')) return { readsStdin: true };
    return { runsFile: true };
  };
}

/** su permutes its arguments (`su root -c cmd`), so -c is looked for everywhere. */
function su(words: Word[]): Unwrapped {
  for (let i = 0; i < words.length; i++) {
    const a = (words[i] as Word).value;
    if (a === '--') break;
    const long = /^--(session-)?command(=|$)/.exec(a);
    let script: Word | undefined;
    if (long) script = long[2] === '=' ? textWord(a.slice(long[0].length)) : words[i + 1];
    else if (/^-[a-zA-Z]*c$/.test(a)) script = words[i + 1];
    else if (/^-[a-zA-Z]*c./.test(a) && !a.startsWith('--')) script = textWord(a.slice(a.indexOf('c') + 1));
    if (script) return { script: [script], via: 'su -c' };
  }
  return { readsStdin: true };
}

/** `trap 'code' SIGNAL...`: the code runs when the signal (or EXIT) comes. */
function trap(words: Word[]): Unwrapped {
  const o = skipOptions(words, {});
  if (has(o, 'p', 'l', 'P')) return {};
  const operands = words.slice(o.index);
  const action = operands[0];
  if (operands.length < 2 || !action || action.value === '-' || action.value === '') return {};
  return { script: [action], via: 'trap' };
}

/** `alias name='code'`: the code runs wherever the alias is used later. */
function alias(words: Word[]): Unwrapped {
  const bodies = words.filter((w) => !w.value.startsWith('-') && w.value.includes('='));
  if (!bodies.length) return {};
  const code = bodies.map((w) => w.value.slice(w.value.indexOf('=') + 1)).join('\n');
  return { script: [{ ...textWord(code), literal: bodies.every((w) => w.literal) }], via: 'alias' };
}

/** `chroot [opts] DIR [cmd...]`: without a command it starts an interactive shell. */
function chroot(words: Word[]): Unwrapped {
  const o = skipOptions(words, {});
  const inner = words.slice(o.index + 1);
  return inner.length ? { inner } : { readsStdin: true };
}

/** `flock [opts] FILE cmd...` or `flock [opts] FILE -c 'code'`. */
function flock(words: Word[]): Unwrapped {
  const o = skipOptions(words, { short: 'wE', long: ['timeout', 'wait', 'conflict-exit-code'] });
  const after = words.slice(o.index + 1);
  const first = after[0]?.value;
  if (first === '-c' || first === '--command') return after[1] ? { script: [after[1]], via: 'flock -c' } : {};
  return after.length ? { inner: after } : {};
}

/** runuser: `-c 'code'` like su, or `-u user [--] cmd...`. */
function runuser(words: Word[]): Unwrapped {
  const viaC = su(words);
  if (viaC.script) return { ...viaC, via: 'runuser -c' };
  const o = skipOptions(words, { short: 'ugGsw', long: ['user', 'group', 'supp-group', 'shell', 'whitelist-environment'] });
  const inner = words.slice(o.index);
  return has(o, 'u', 'user') && inner.length ? { inner } : { readsStdin: true };
}

const SHELLS = ['sh', 'bash', 'dash', 'zsh', 'ksh', 'ash', 'mksh', 'yash', 'fish'];

/** Wrapper specs by program base name. */
export const WRAPPERS: Record<string, (words: Word[]) => Unwrapped> = {
  sudo,
  doas,
  env,
  nohup: simple({}),
  setsid: simple({}),
  builtin: simple({}),
  busybox: simple({}),
  coproc: simple({}),
  time: simple({ short: 'fo', long: ['format', 'output'] }),
  command: simple({}, ['v', 'V']),
  exec: simple({ short: 'a' }),
  nice: simple({ short: 'n', long: ['adjustment'], numeric: true }),
  ionice: simple({ short: 'cnp', long: ['class', 'classdata', 'pid', 'pgid', 'uid'] }, ['p', 'P', 'u', 'pid', 'pgid', 'uid']),
  stdbuf: simple({ short: 'ioe', long: ['input', 'output', 'error'] }),
  timeout,
  xargs,
  watch,
  su,
  runuser,
  trap,
  alias,
  chroot,
  flock,
  eval: (words) => (words.length ? { script: words, via: 'eval' } : {}),
  source: (words) => (words.length ? { runsFile: true } : {}),
  '.': (words) => (words.length ? { runsFile: true } : {}),
  ...Object.fromEntries(SHELLS.map((s) => [s, shell(s)])),
};

/** find's actions that run a command: `-exec cmd ... ;` / `+`, `-execdir`, `-ok`, `-okdir`. */
export function findExecs(args: Word[]): Word[][] {
  const out: Word[][] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]?.value;
    if (a !== '-exec' && a !== '-execdir' && a !== '-ok' && a !== '-okdir') continue;
    const inner: Word[] = [];
    let j = i + 1;
    for (; j < args.length; j++) {
      const v = (args[j] as Word).value;
      if (v === ';' || (v === '+' && inner[inner.length - 1]?.value === '{}')) break;
      inner.push(args[j] as Word);
    }
    if (inner.length) out.push(inner);
    i = j;
  }
  return out;
}
