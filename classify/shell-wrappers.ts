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
  /** Why what it runs is unknown (its options or arguments cannot be read as it reads them). */
  unknown?: string;
  /** The script is run by a shell other than bash: a POSIX sh (read where the grammars agree) or another one. */
  shell?: 'posix' | 'other';
}

/** Whether an option takes a value: none, required (attached or the next word), optional (attached or after `=` only). */
type Arg = 0 | 1 | 2;

interface OptionSpec {
  /**
   * getopt's short options: a letter, `:` after it when it takes a value, `::` when the value
   * is optional (attached only). Any other letter is an option the program refuses, or one
   * the classifier does not know: either way the command is not classified as it runs.
   */
  short?: string;
  /** Long options: name → [its value, the short letter it is the same option as]. */
  long?: Record<string, readonly [Arg, string?]>;
  /** Long options match whole (bash); otherwise an unambiguous prefix names one, as getopt_long does. */
  exactLong?: boolean;
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
  /** Options seen, by short letter (or long name when it has none), with their value (or true). */
  opts: Map<string, string | true>;
  /** Why the options cannot be read as the program reads them (an unknown or ambiguous option). */
  unknown?: string;
}

const HELP = { help: [0], version: [0] } as const satisfies Record<string, readonly [Arg, string?]>;

/** The short letters of a getopt string, with whether each takes a value. */
function shortTable(spec: string): Map<string, Arg> {
  const out = new Map<string, Arg>();
  for (let i = 0; i < spec.length; i++) {
    const ch = spec[i] as string;
    if (ch === ':' || ch === '+') continue;
    out.set(ch, spec[i + 1] === ':' ? (spec[i + 2] === ':' ? 2 : 1) : 0);
  }
  return out;
}

/**
 * A long option as getopt_long finds it: the exact name, or the one option all the names it
 * prefixes stand for (`env --s=…` is `--split-string`, which ran a hidden command when it was
 * read as an unknown flag). Undefined when it names none or several.
 */
function longOption(spec: OptionSpec, name: string): { key: string; arg: Arg } | undefined {
  const table = spec.long ?? {};
  const hit = (n: string) => ({ key: table[n]![1] ?? n, arg: table[n]![0] });
  if (Object.hasOwn(table, name)) return hit(name);
  if (spec.exactLong || name === '') return undefined;
  const found = Object.keys(table)
    .filter((n) => n.startsWith(name))
    .map(hit);
  const first = found[0];
  return first && found.every((f) => f.key === first.key && f.arg === first.arg) ? first : undefined;
}

/**
 * Reads leading options as the program's getopt does (options first, stopping at `--`, at the
 * first operand, or at a word holding an expansion, which is then the first operand). An
 * option the spec does not list, an ambiguous abbreviation, or a missing value sets `unknown`.
 */
function skipOptions(words: Word[], spec: OptionSpec): Options {
  const opts = new Map<string, string | true>();
  const shorts = shortTable(spec.short ?? '');
  let i = 0;
  const unknown = (why: string): Options => ({ index: i, opts, unknown: why });
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
    if (spec.numeric && /^-[-+]?\d+$/.test(a)) {
      opts.set('n', a.replace(/^-/, ''));
      continue;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
      const o = longOption(spec, name);
      if (!o) return unknown(`an option the classifier does not know (${a.slice(0, 40)})`);
      if (eq >= 0) {
        if (o.arg === 0) return unknown(`a value for an option that takes none (${a.slice(0, 40)})`);
        opts.set(o.key, a.slice(eq + 1));
      } else if (o.arg === 1) {
        const next = words[i + 1];
        if (!next?.literal) return unknown(`a value the classifier cannot see for ${a}`);
        opts.set(o.key, next.value);
        i += 1;
      } else opts.set(o.key, true);
      continue;
    }
    for (let j = 1; j < a.length; j++) {
      const ch = a[j] as string;
      const arg = shorts.get(ch);
      if (arg === undefined) return unknown(`an option the classifier does not know (-${ch})`);
      if (arg === 0) {
        opts.set(ch, true);
        continue;
      }
      if (j + 1 < a.length) opts.set(ch, a.slice(j + 1));
      else if (arg === 2) opts.set(ch, true);
      else {
        const next = words[i + 1];
        if (!next?.literal) return unknown(`a value the classifier cannot see for -${ch}`);
        opts.set(ch, next.value);
        i += 1;
      }
      break;
    }
  }
  return { index: i, opts };
}

/** What a wrapper whose options cannot be read runs: unknown, so the command is refused. */
const opaque = (why: string): Unwrapped => ({ unknown: why });

/** The word in a fixed slot before the command (timeout's duration, chroot's root): an expansion there may be an option. */
const slot = (words: Word[], i: number): boolean => words[i]?.literal === true;

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

// The option tables below are the programs' own (getopt strings and long options of sudo 1.9,
// GNU coreutils 9, util-linux 2.38, findutils 4.9, procps 4, bash 5): an option outside them is
// refused, never skipped as a flag, since a value-taking option read as a flag shifts the
// command the classifier sees.

function sudo(words: Word[]): Unwrapped {
  const o = skipOptions(words, {
    short: '+Aa:BbC:c:D:Eeg:Hh::iKklNnPp:R:r:SsT:t:U:u:Vv',
    long: {
      askpass: [0, 'A'],
      'auth-type': [1, 'a'],
      background: [0, 'b'],
      bell: [0, 'B'],
      'close-from': [1, 'C'],
      'login-class': [1, 'c'],
      chdir: [1, 'D'],
      'preserve-env': [2, 'E'],
      edit: [0, 'e'],
      group: [1, 'g'],
      'set-home': [0, 'H'],
      help: [0],
      host: [1],
      login: [0, 'i'],
      'remove-timestamp': [0, 'K'],
      'reset-timestamp': [0, 'k'],
      list: [0, 'l'],
      'non-interactive': [0, 'n'],
      'no-update': [0, 'N'],
      'preserve-groups': [0, 'P'],
      prompt: [1, 'p'],
      chroot: [1, 'R'],
      role: [1, 'r'],
      stdin: [0, 'S'],
      shell: [0, 's'],
      type: [1, 't'],
      'command-timeout': [1, 'T'],
      'other-user': [1, 'U'],
      user: [1, 'u'],
      version: [0, 'V'],
      validate: [0, 'v'],
    },
  });
  if (o.unknown) return opaque(o.unknown);
  // -e edits files, -l lists, -v/-k/-K/-V manage credentials, -h alone is help: none runs a command.
  if (has(o, 'e', 'l', 'v', 'k', 'K', 'V', 'help') || o.opts.get('h') === true) return {};
  // A chroot changes what the command's name resolves to; a directory, what its relative paths name.
  if (has(o, 'R')) return opaque('sudo --chroot runs a program the classifier cannot see');
  if (has(o, 'D')) return opaque("sudo --chdir changes what the command's relative paths name");
  const a = assignments(words, o.index);
  const inner = words.slice(a.index);
  if (inner.length === 0) return has(o, 's', 'i') ? { readsStdin: true, env: a.env } : { env: a.env };
  return { inner, env: a.env };
}

function doas(words: Word[]): Unwrapped {
  const o = skipOptions(words, { short: '+a:C:Lnsu:' });
  if (o.unknown) return opaque(o.unknown);
  if (has(o, 'C', 'L')) return {};
  const inner = words.slice(o.index);
  if (inner.length === 0) return has(o, 's') ? { readsStdin: true } : {};
  return { inner };
}

function env(words: Word[]): Unwrapped {
  const o = skipOptions(words, {
    short: '+a:C:iS:u:v0',
    long: {
      argv0: [1, 'a'],
      chdir: [1, 'C'],
      'ignore-environment': [0, 'i'],
      'split-string': [1, 'S'],
      unset: [1, 'u'],
      debug: [0, 'v'],
      null: [0, '0'],
      'default-signal': [2],
      'ignore-signal': [2],
      'block-signal': [2],
      'list-signal-handling': [0],
      ...HELP,
    },
    dash: true,
  });
  if (o.unknown) return opaque(o.unknown);
  if (has(o, 'help', 'version')) return {};
  // `env -C /etc grep root passwd` read /etc/passwd through a relative name the policy took for a pattern.
  if (has(o, 'C')) return opaque("env --chdir changes what the command's relative paths name");
  const a = assignments(words, o.index);
  const rest = words.slice(a.index);
  const split = o.opts.get('S');
  if (typeof split === 'string') {
    // env splits the string itself (no shell reads it) and runs its words followed by the rest
    // of the command line as they are. Its own quotes, escapes (`\_`, `\c`), `${VAR}` and `#`
    // comments (`env -S'cat #' /etc/passwd` ran `cat /etc/passwd`: the comment ends with the
    // string) are not read here: only words of plain text separated by blanks.
    if (/[\\$`'"#]|[^\S \t]/.test(split)) return opaque('env -S with quotes, escapes, variables or comments of its own');
    const head = split.split(/[ \t]+/).filter((w) => w.length > 0);
    if (head.length === 0) return rest.length ? { inner: rest, env: a.env } : { env: a.env };
    return { inner: [...head.map(textWord), ...rest], env: a.env, via: 'env -S' };
  }
  return rest.length ? { inner: rest, env: a.env } : { env: a.env };
}

/** A wrapper whose options are all known and whose operands are the command. */
const simple =
  (spec: OptionSpec, noRun: string[] = []): ((words: Word[]) => Unwrapped) =>
  (words) => {
    const o = skipOptions(words, spec);
    if (o.unknown) return opaque(o.unknown);
    if (has(o, ...noRun, 'help', 'version')) return {};
    const inner = words.slice(o.index);
    return inner.length ? { inner } : {};
  };

function timeout(words: Word[]): Unwrapped {
  const o = skipOptions(words, { short: '+fk:ps:v', long: { foreground: [0, 'f'], 'kill-after': [1, 'k'], 'preserve-status': [0, 'p'], signal: [1, 's'], verbose: [0, 'v'], ...HELP } });
  if (o.unknown) return opaque(o.unknown);
  if (has(o, 'help', 'version')) return {};
  if (o.index < words.length && !slot(words, o.index)) return opaque("timeout's duration comes from an expansion, which may be an option");
  const inner = words.slice(o.index + 1); // the duration comes first
  return inner.length ? { inner } : {};
}

/** What xargs puts into a command from its input: known only when it runs, so never a literal. */
const XARGS_INPUT = `${EXPANSION_MARK}xargs input${EXPANSION_MARK}`;

function xargs(words: Word[]): Unwrapped {
  const o = skipOptions(words, {
    short: '+0a:E:e::I:i::l::L:n:oprs:txP:d:',
    long: {
      null: [0, '0'],
      'arg-file': [1, 'a'],
      delimiter: [1, 'd'],
      eof: [2, 'e'],
      replace: [2, 'i'],
      'max-lines': [2, 'l'],
      'max-args': [1, 'n'],
      'open-tty': [0, 'o'],
      interactive: [0, 'p'],
      'no-run-if-empty': [0, 'r'],
      'max-chars': [1, 's'],
      verbose: [0, 't'],
      'show-limits': [0],
      exit: [0, 'x'],
      'max-procs': [1, 'P'],
      'process-slot-var': [1],
      ...HELP,
    },
  });
  if (o.unknown) return opaque(o.unknown);
  if (has(o, 'help', 'version')) return {};
  // -a reads its input from a file the policy never sees (`xargs -a /etc/passwd id` printed it in id's errors).
  if (has(o, 'a')) return opaque('xargs --arg-file reads a file');
  const rest = words.slice(o.index);
  // With no command xargs runs echo.
  const command = rest.length ? rest : [textWord('echo')];
  // -I R, and -i[R] / --replace[=R] (R defaults to {}).
  const legacy = o.opts.get('i');
  const replace = o.opts.get('I') ?? (legacy === undefined ? undefined : legacy === true ? '{}' : legacy);
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
  const o = skipOptions(words, {
    short: '+bCcd::eghn:pq:rtvwx',
    long: {
      beep: [0, 'b'],
      color: [0, 'c'],
      'no-color': [0, 'C'],
      differences: [2, 'd'],
      errexit: [0, 'e'],
      chgexit: [0, 'g'],
      interval: [1, 'n'],
      precise: [0, 'p'],
      equexit: [1, 'q'],
      'no-rerun': [0, 'r'],
      'no-title': [0, 't'],
      'no-wrap': [0, 'w'],
      exec: [0, 'x'],
      help: [0, 'h'],
      version: [0, 'v'],
    },
  });
  if (o.unknown) return opaque(o.unknown);
  if (has(o, 'h', 'v')) return {};
  const rest = words.slice(o.index);
  if (!rest.length) return {};
  // watch runs its arguments through `sh -c` unless -x/--exec.
  return has(o, 'x') ? { inner: rest, via: 'watch' } : { script: rest, via: 'watch', shell: 'posix' };
}

/** bash's options (the other shells take fewer; one they do not is refused by them or by this). */
const SHELL_OPTIONS: OptionSpec = {
  short: 'abefhkmnptuvxBCEHPTcilrsDo:O:',
  long: {
    debug: [0],
    debugger: [0],
    'dump-po-strings': [0],
    'dump-strings': [0],
    help: [0],
    'init-file': [1],
    login: [0],
    noediting: [0],
    noprofile: [0],
    norc: [0],
    posix: [0],
    'pretty-print': [0],
    rcfile: [1],
    restricted: [0],
    verbose: [0],
    version: [0],
  },
  exactLong: true,
  plus: true,
};

/** sh, bash, dash, zsh, ksh...: `-c script`, a script file, or commands from stdin. */
function shell(name: string): (words: Word[]) => Unwrapped {
  return (words) => {
    const o = skipOptions(words, SHELL_OPTIONS);
    if (o.unknown) return opaque(o.unknown);
    if (has(o, 'help', 'version')) return {};
    const operands = words.slice(o.index);
    if (has(o, 'c')) {
      const script = operands[0];
      const grammar = name === 'bash' ? {} : { shell: POSIX_SHELLS.has(name) ? ('posix' as const) : ('other' as const) };
      return script ? { script: [script], via: `${name} -c`, ...grammar } : {};
    }
    if (operands.length === 0 || has(o, 's')) return { readsStdin: true };
    return { runsFile: true };
  };
}

/** su's and runuser's options; they permute, so an option may come after the user. */
const SU_LONG = {
  command: [1, 'c'],
  'session-command': [1],
  fast: [0, 'f'],
  group: [1, 'g'],
  'supp-group': [1, 'G'],
  login: [0, 'l'],
  'preserve-environment': [0, 'p'],
  pty: [0, 'P'],
  shell: [1, 's'],
  user: [1, 'u'],
  'whitelist-environment': [1, 'w'],
  help: [0, 'h'],
  version: [0, 'V'],
} as const satisfies Record<string, readonly [Arg, string?]>;

/**
 * `su [options] [-] [user [argument...]]`, options anywhere (GNU getopt permutes). Arguments
 * after the user go to the user's shell (`su root -- -c 'rm x'` runs rm), and `-s` picks the
 * program that runs: both are opaque. Otherwise `-c` is the script, or the shell reads stdin.
 */
function su(words: Word[], runuser = false): Unwrapped {
  const opts = new Map<string, string | true>();
  const operands: Word[] = [];
  const spec: OptionSpec = { short: runuser ? 'c:fg:G:lmpPs:u:w:hV' : 'c:fg:G:lmpPs:w:hV', long: SU_LONG };
  for (let i = 0; i < words.length; i++) {
    const w = words[i] as Word;
    if (!w.literal) return opaque(`${runuser ? 'runuser' : 'su'} with an argument from an expansion, which may be an option`);
    if (w.value === '--') {
      operands.push(...words.slice(i + 1));
      break;
    }
    if (w.value === '-' || !w.value.startsWith('-')) {
      if (w.value === '-') opts.set('l', true);
      else operands.push(w);
      continue;
    }
    const o = skipOptions(words.slice(i), spec);
    if (o.unknown) return opaque(o.unknown);
    for (const [k, v] of o.opts) opts.set(k === 'session-command' ? 'c' : k === 'm' ? 'p' : k, v);
    if (words[i + o.index - 1]?.value === '--') {
      operands.push(...words.slice(i + o.index));
      break;
    }
    i += o.index - 1;
  }
  const name = runuser ? 'runuser' : 'su';
  if (opts.has('h') || opts.has('V')) return {};
  if (opts.has('s')) return opaque(`${name} -s runs a program the classifier cannot see`);
  // runuser -u USER runs the command given after it, as is.
  if (runuser && opts.has('u') && !opts.has('c')) return operands.length ? { inner: operands } : { readsStdin: true };
  if (operands.length > 1) return opaque(`${name} passes arguments after the user to the user's shell`);
  const script = opts.get('c');
  // The user's login shell runs it: read where bash and a POSIX sh agree.
  if (typeof script === 'string') return { script: [textWord(script)], via: `${name} -c`, shell: 'posix' };
  return { readsStdin: true };
}

/** `trap 'code' SIGNAL...`: the code runs when the signal (or EXIT) comes. */
function trap(words: Word[]): Unwrapped {
  const o = skipOptions(words, { short: 'lpP' });
  if (o.unknown) return opaque(o.unknown);
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
  const o = skipOptions(words, { long: { userspec: [1], groups: [1], 'skip-chdir': [0], ...HELP } });
  if (o.unknown) return opaque(o.unknown);
  if (has(o, 'help', 'version')) return {};
  if (o.index < words.length && !slot(words, o.index)) return opaque("chroot's directory comes from an expansion, which may be an option");
  const inner = words.slice(o.index + 1);
  return inner.length ? { inner } : { readsStdin: true };
}

/** GNU time: -o/-a write a file of the output's choosing (`time -f TEXT -o FILE cmd` wrote TEXT to FILE). */
function timeCmd(words: Word[]): Unwrapped {
  const o = skipOptions(words, { short: '+agqvVo:f:p', long: { append: [0, 'a'], format: [1, 'f'], output: [1, 'o'], portability: [0, 'p'], quiet: [0, 'q'], verbose: [0, 'v'], ...HELP } });
  if (o.unknown) return opaque(o.unknown);
  if (has(o, 'V', 'help', 'version')) return {};
  if (has(o, 'o', 'a')) return opaque('time --output writes a file');
  const inner = words.slice(o.index);
  return inner.length ? { inner } : {};
}

const SHELLS = ['sh', 'bash', 'dash', 'zsh', 'ksh', 'ash', 'mksh', 'yash', 'fish'];
/** Shells whose grammar is POSIX sh's: bash's where bash-only syntax is absent (shell.ts BASH_ONLY). */
const POSIX_SHELLS = new Set(['sh', 'dash', 'ash']);

/** Wrapper specs by program base name. */
export const WRAPPERS: Record<string, (words: Word[]) => Unwrapped> = {
  sudo,
  doas,
  env,
  nohup: simple({ short: '+', long: HELP }),
  // A new session is out of the worker's reach: the time limit and the end-of-run kill act on the run's session.
  setsid: () => opaque('setsid starts the command in a new session, which outlives the run and its time limit'),
  builtin: simple({}),
  busybox: simple({ long: { list: [0], 'list-full': [0], install: [0] } }, ['list', 'list-full', 'install']),
  // bash reads `coproc NAME compound` where the parser sees a command named NAME.
  coproc: () => opaque('coproc, whose name and command the parser does not tell apart'),
  time: timeCmd,
  command: simple({ short: 'pvV' }, ['v', 'V']),
  exec: simple({ short: 'cla:' }),
  nice: simple({ short: '+n:', long: { adjustment: [1, 'n'], ...HELP }, numeric: true }),
  ionice: simple({ short: '+c:n:p:P:tu:hV', long: { class: [1, 'c'], classdata: [1, 'n'], pid: [1, 'p'], pgid: [1, 'P'], ignore: [0, 't'], uid: [1, 'u'], help: [0, 'h'], version: [0, 'V'] } }, [
    'p',
    'P',
    'u',
    'h',
    'V',
  ]),
  stdbuf: simple({ short: '+i:o:e:', long: { input: [1, 'i'], output: [1, 'o'], error: [1, 'e'], ...HELP } }),
  timeout,
  xargs,
  watch,
  su: (words) => su(words),
  runuser: (words) => su(words, true),
  trap,
  alias,
  chroot,
  // flock creates the file it locks, and -c runs sh: a write and a script the policy does not see.
  flock: (words) => (words.some((w) => w.value === '--help' || w.value === '-h' || w.value === '--version' || w.value === '-V') ? {} : opaque('flock creates its lock file')),
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
