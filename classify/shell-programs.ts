/**
 * Programs that are not wrappers but run code named in their arguments: awk's `system()` and
 * pipes, sed's `e` command, bash's `compgen -C`, and find's actions. A policy that allows
 * `awk` for text means text; what would run more than the program itself is reported as a
 * risk (the command is opaque, so refused), and what cannot be read is a risk too.
 */
import type { Word } from './shell-words.ts';

const AWKS = new Set(['awk', 'gawk', 'mawk', 'nawk', 'original-awk']);
const SEDS = new Set(['sed', 'gsed']);

/**
 * Programs whose purpose is to run another command (given in their arguments, or interactively
 * from a script) without being wrappers the classifier unwraps: `taskset 1 touch M` ran touch
 * while the facts showed taskset. What they run is unknown, so they are opaque.
 */
const RUNS_A_COMMAND = new Set([
  'taskset',
  'prlimit',
  'unshare',
  'chrt',
  'setpriv',
  'nsenter',
  'numactl',
  'cgexec',
  'firejail',
  'bwrap',
  'proot',
  'fakeroot',
  'faketime',
  'strace',
  'ltrace',
  'valgrind',
  'gdb',
  'catchsegv',
  'script',
  'expect',
  'parallel',
  'sem',
  'dtach',
  'screen',
  'tmux',
  'systemd-run',
  'dbus-launch',
  'dbus-run-session',
  'xvfb-run',
  'ssh-agent',
  'pkexec',
  'schedtool',
  'cpulimit',
  'run-parts',
  'start-stop-daemon',
  'daemonize',
  'vi',
  'vim',
  'nvim',
  'view',
  'ex',
  'ed',
  'less',
  'more',
  'most',
  'emacs',
  'nano',
  'at',
  'batch',
  'setarch',
  'linux32',
  'linux64',
  'i386',
  'x86_64',
  'uname26',
  'sg',
  'newgrp',
  'capsh',
  'runcon',
  'chpst',
  'systemd-inhibit',
  'ld.so',
  // Daemons that leave the run's session (fork and setsid), out of reach of its time limit and end-of-run kill.
  'dbus-daemon',
  'gpg-agent',
  'dirmngr',
  'keyboxd',
  'pulseaudio',
  'daemon',
]);
/** The dynamic loader run as a program runs the program it is given. */
const LOADER = /^ld-linux.*\.so(\.\d+)*$|^ld(64)?\.so(\.\d+)*$/;

/** Options of common programs that name a command they run (GNU getopt abbreviations included, as prefixes). */
const COMMAND_OPTIONS: Readonly<Record<string, RegExp>> = {
  // GNU getopt takes any unambiguous prefix: tar's --inf(o-script), --rs(h-command), --rm(t-command),
  // --new-(volume-script); sort's --co(mpress-program); man's --ht(ml); git grep's -O/--op(en-files-in-pager).
  tar: /^--(che|to|use|inf|new-|rs|rm)|^-[^-]*[IF]/,
  sort: /^--co/,
  git: /^-c$|^-c.|^--(config-env|exec-path|c$|co$|con$|conf|op)|^-O/,
  man: /^--(pag|ht|bro)|^-[^-]*[PH]/,
  rsync: /^--(rsh|rsync-p)|^-[^-]*e/,
  zip: /^-[^-]*TT|^--un/,
  ssh: /^-[^-]*[oFS]/,
  scp: /^-[^-]*[oFSP]/,
  sftp: /^-[^-]*[oFSD]/,
};

/** Why running `base` with `args` may run more than the program, or undefined. */
export function programRisk(base: string, args: Word[]): string | undefined {
  if (RUNS_A_COMMAND.has(base) || LOADER.test(base)) return `${base} runs a command the classifier cannot see`;
  // `ip netns exec NS cmd` runs cmd; `ip -b FILE` / `-batch` runs the commands in a file. iproute2
  // takes any prefix of a keyword (`ip netns ex`, `ip vrf e`) and of an option, with one dash or two (`-bat`, `--batch`).
  if (base === 'ip' && args.some((a) => !a.literal || /^e(x(ec?)?)?$/.test(a.value) || /^--?(b(a(t(ch?)?)?)?|fo(r(ce?)?)?)$/.test(a.value))) return 'ip runs a command or a batch file';
  const opts = Object.hasOwn(COMMAND_OPTIONS, base) ? COMMAND_OPTIONS[base] : undefined;
  if (opts) {
    const bad = args.find((a, i) => !a.literal || opts.test(a.value) || (base === 'tar' && i === 0 && /^[a-zA-Z]+$/.test(a.value) && /[IF]/.test(a.value)));
    if (bad) return `${base} ${bad.value.slice(0, 30)}: an option that runs a command (or one from an expansion)`;
  }
  if (AWKS.has(base)) return awkRisk(base, args);
  if (SEDS.has(base)) return sedRisk(base, args);
  if (base === 'find' && args.some((a) => !a.literal)) {
    // An expansion may be an action (`find /tmp ${U:--exec} touch M ';'`), which findExecs cannot see.
    return 'find with an argument from an expansion, which may be an action';
  }
  if (base === 'compgen' || base === 'complete') {
    // -C runs a command and -F a function to produce the completions.
    if (args.some((a) => !a.literal || /^-[^-]*[CF]/.test(a.value))) return `${base} with a command or function to run`;
  }
  return undefined;
}

/** awk's options the classifier reads (gawk's and POSIX's); any other one is a risk. */
const AWK_VALUE = new Set(['F', 'v', 'e']);
const AWK_FLAGS = new Set(['b', 'c', 'C', 'n', 'N', 'P', 'r', 's', 'S', 't', 'V']);
const AWK_LONG = /^--(field-separator|assign|source)=|^--(posix|traditional|sandbox|characters-as-bytes|re-interval|version)$/;

function awkRisk(base: string, args: Word[]): string | undefined {
  const programs: string[] = [];
  let i = 0;
  for (; i < args.length; i++) {
    const w = args[i] as Word;
    if (!w.literal) return `${base} with an argument from an expansion`;
    const a = w.value;
    if (a === '--') {
      i += 1;
      break;
    }
    if (!a.startsWith('-') || a === '-') break;
    if (a.startsWith('--')) {
      if (!AWK_LONG.test(a)) return `${base} ${a.slice(0, 40)}: an option the classifier does not read`;
      if (a.startsWith('--source=')) programs.push(a.slice('--source='.length));
      continue;
    }
    const opt = a[1] as string;
    if (AWK_VALUE.has(opt)) {
      const value = a.length > 2 ? a.slice(2) : args[++i];
      const text = typeof value === 'string' ? value : value?.literal ? value.value : undefined;
      if (text === undefined) return `${base} -${opt} with a value the classifier cannot see`;
      if (opt === 'e') programs.push(text);
      continue;
    }
    if (![...a.slice(1)].every((c) => AWK_FLAGS.has(c))) return `${base} ${a.slice(0, 40)}: an option the classifier does not read (-f runs a program file)`;
  }
  if (programs.length === 0) {
    const program = args[i];
    if (!program) return undefined; // awk without a program only reports its usage
    if (!program.literal) return `${base} with a program from an expansion`;
    programs.push(program.value);
  }
  for (const p of programs) {
    const risk = awkProgramRisk(p);
    if (risk) return `${base} ${risk}`;
  }
  return undefined;
}

/**
 * awk code that runs commands or opens files: `system()`, `|` (to or from a command), `getline`
 * (from a file or a command), `print > file`, and gawk's `@load`/`@include`. The whole text is
 * searched, strings and regular expressions included: whether a `/` starts a regex or divides
 * depends on awk's grammar, and a reader that guessed wrong would take code for a string. So
 * `/error|warn/` is refused too (grep -E does that).
 */
function awkProgramRisk(program: string): string | undefined {
  const bare = program.replace(/\|\|/g, ' ');
  if (/system/.test(bare)) return 'runs system()';
  if (bare.includes('|')) return 'pipes to or from a command (or holds a | the classifier cannot place)';
  if (/getline/.test(bare)) return 'reads with getline';
  // Output redirection exists only inside an action: any `>` after the first `{` may be one (a
  // `;` or `}` inside a string hid `print ";" > "/tmp/x"` from a per-statement reading).
  if (program.includes('{') && program.slice(program.indexOf('{')).includes('>')) return 'may print to a file (a > inside an action)';
  // ARGV and ARGC name the files awk reads (`ARGV[1]="/etc/hostname"; ARGC=2` read it).
  if (/ARGV|ARGC/.test(bare)) return 'changes the files it reads (ARGV/ARGC)';
  if (bare.includes('@')) return 'uses a gawk directive or an indirect call';
  return undefined;
}

/** sed's options (GNU sed permutes: they may come after the script and the files). */
const SED_FLAGS = new Set(['n', 'E', 'r', 's', 'u', 'z', 'i']);
const SED_LONG = /^--(quiet|silent|regexp-extended|separate|unbuffered|null-data|zero-terminated|posix|debug|sandbox|follow-symlinks|in-place(=.*)?|line-length=\d+|expression=.*|version|help)$/s;

function sedRisk(base: string, args: Word[]): string | undefined {
  const scripts: string[] = [];
  const operands: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const w = args[i] as Word;
    if (!w.literal) return `${base} with an argument from an expansion, which may be an option or a script`;
    const a = w.value;
    if (a === '--') {
      operands.push(...args.slice(i + 1).map((x) => x.value));
      if (args.slice(i + 1).some((x) => !x.literal)) return `${base} with an argument from an expansion`;
      break;
    }
    if (!a.startsWith('-') || a === '-') {
      operands.push(a);
      continue;
    }
    if (a.startsWith('--')) {
      if (!SED_LONG.test(a)) return `${base} ${a.slice(0, 40)}: an option the classifier does not read (--file runs a script file)`;
      if (a.startsWith('--expression=')) scripts.push(a.slice('--expression='.length));
      continue;
    }
    for (let j = 1; j < a.length; j++) {
      const c = a[j] as string;
      if (c === 'i') break; // -i[SUFFIX]: the rest is the suffix
      if (c === 'e' || c === 'l') {
        const value = j + 1 < a.length ? a.slice(j + 1) : args[++i];
        const text = typeof value === 'string' ? value : value?.literal ? value.value : undefined;
        if (text === undefined) return `${base} -${c} with a value the classifier cannot see`;
        if (c === 'e') scripts.push(text);
        break;
      }
      if (!SED_FLAGS.has(c)) return `${base} -${c}: an option the classifier does not read (-f runs a script file)`;
    }
  }
  if (scripts.length === 0) {
    const script = operands[0];
    if (script === undefined) return undefined;
    scripts.push(script);
  }
  for (const s of scripts) {
    const risk = sedScriptRisk(s);
    if (risk) return `${base} ${risk}`;
  }
  return undefined;
}

/** Commands that take no argument, or an optional number (l, q, Q, L). */
const SED_PLAIN = new Set(['=', 'd', 'D', 'g', 'G', 'h', 'H', 'n', 'N', 'p', 'P', 'x', 'z', 'F', 'l', 'q', 'Q', 'L']);

/**
 * Reads a sed script command by command (GNU sed's syntax). `e`, `s///e` run the pattern
 * space as a command; `w`, `W`, `s///w` write files; `r`, `R` read them. Those, and anything
 * the reader does not know, are a risk.
 */
function sedScriptRisk(script: string): string | undefined {
  const n = script.length;
  let i = 0;
  const skipSpace = () => {
    while (i < n && /[ \t]/.test(script[i] as string)) i++;
  };
  /** Past a delimited part (`/re/`, or the two parts of s and y); false when it is unterminated. */
  const delimited = (d: string): boolean => {
    for (; i < n; i++) {
      const c = script[i] as string;
      if (c === '\\') i++;
      else if (c === d) {
        i++;
        return true;
      } else if (c === '\n' && d !== '\n') return false;
    }
    return false;
  };
  const address = (): boolean => {
    const c = script[i];
    if (c === undefined) return true;
    if (/[0-9]/.test(c)) {
      while (i < n && /[0-9~]/.test(script[i] as string)) i++;
      return true;
    }
    if (c === '$') {
      i++;
      return true;
    }
    if (c === '/' || c === '\\') {
      const d = c === '\\' ? script[i + 1] : '/';
      i += c === '\\' ? 2 : 1;
      if (d === undefined || d === '\n' || !delimited(d)) return false;
      while (i < n && /[IM]/.test(script[i] as string)) i++;
    }
    return true;
  };
  while (i < n) {
    const c0 = script[i] as string;
    if (/[\s;]/.test(c0)) {
      i++;
      continue;
    }
    if (c0 === '#') {
      while (i < n && script[i] !== '\n') i++;
      continue;
    }
    if (!address()) return 'with an unterminated address';
    skipSpace();
    if (script[i] === ',') {
      i++;
      skipSpace();
      if (script[i] === '+' || script[i] === '~') i++;
      if (!address()) return 'with an unterminated address';
    }
    skipSpace();
    while (script[i] === '!') {
      i++;
      skipSpace();
    }
    const cmd = script[i];
    if (cmd === undefined) return 'with an address and no command';
    i++;
    if (cmd === '{' || cmd === '}') continue;
    if (SED_PLAIN.has(cmd)) {
      skipSpace();
      while (i < n && /[0-9]/.test(script[i] as string)) i++;
      continue;
    }
    if (cmd === ':' || cmd === 'b' || cmd === 't' || cmd === 'T' || cmd === 'v') {
      while (i < n && script[i] !== ';' && script[i] !== '\n') i++;
      continue;
    }
    if (cmd === 'a' || cmd === 'i' || cmd === 'c') {
      // Text to the end of the line; a trailing backslash continues it.
      while (i < n) {
        if (script[i] === '\\') i += 2;
        else if (script[i] === '\n') break;
        else i++;
      }
      continue;
    }
    if (cmd === 's' || cmd === 'y') {
      const d = script[i];
      if (d === undefined || d === '\n' || d === '\\') return `with a ${cmd} command the classifier cannot read`;
      i++;
      if (!delimited(d) || !delimited(d)) return `with an unterminated ${cmd} command`;
      if (cmd === 's') {
        while (i < n && /[gpiImM0-9]/.test(script[i] as string)) i++;
        if (script[i] === 'e') return 'runs the pattern space as a command (s///e)';
        if (script[i] === 'w') return 'writes a file (s///w)';
      }
      skipSpace();
      if (i < n && !/[;\n}#]/.test(script[i] as string)) return `with a ${cmd} command the classifier cannot read`;
      continue;
    }
    if (cmd === 'e') return 'runs a command (e)';
    if (cmd === 'w' || cmd === 'W') return 'writes a file (w)';
    if (cmd === 'r' || cmd === 'R') return 'reads a file (r)';
    return `with a command the classifier does not know (${cmd})`;
  }
  return undefined;
}
