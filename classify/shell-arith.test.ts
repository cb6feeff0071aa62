/**
 * Code that bash runs without a visible substitution: arithmetic over values (array subscripts are
 * evaluated), test operators, indirection, prompt expansion, name operands of builtins, and variables whose
 * value bash runs. Every attack is run through the real /bin/bash (when present) with a harmless payload, to
 * prove it is a real attack, and must be refused by the classifier.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classifyShell, initClassifiers } from './index.ts';
import { title } from './testing.ts';

beforeAll(async () => {
  await initClassifiers();
});

const dir = mkdtempSync(join(tmpdir(), 'writ-shell-arith-'));
const hit = join(dir, 'hit');
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const haveBash = spawnSync('bash', ['-c', 'exit 0']).status === 0;

/** PAY: a value whose arithmetic evaluation runs the payload (no space, so word splitting keeps it whole); CMD: the payload. */
const PAY = `a[$(>${hit})]`;
const fill = (s: string) => s.replace(/\bPAY\b/g, PAY).replace(/\bCMD\b/g, `touch ${hit}`);

function bashRuns(script: string): boolean {
  rmSync(hit, { force: true });
  spawnSync('bash', ['-c', fill(script)], { cwd: dir, timeout: 5000, stdio: 'ignore' });
  return existsSync(hit);
}

/** Operand spellings that carry PAY into an arithmetic context (x and $1 hold it). */
const OPERANDS = ['x', '$x', '"$x"', '${x}', "'PAY'", '"PAY"', '$1', 'x+1', '(x)'];
/** Arithmetic contexts, OP standing for the operand. */
const CONTEXTS = [
  'echo $((OP))',
  'echo "$((OP))"',
  'echo $[OP]',
  '((OP))',
  'if ((OP)); then :; fi',
  'let OP',
  'let "y=OP"',
  'for ((i=OP; i<0; i++)); do :; done',
  'for ((;OP;)); do break; done',
  'while ((OP)); do break; done',
  '[[ OP -eq 1 ]]',
  '[[ 1 -ne OP ]]',
  '[[ OP -lt 1 ]]',
  '[[ OP -le 1 ]]',
  '[[ OP -gt 1 ]]',
  '[[ OP -ge 1 ]]',
  '[[ ! OP -eq 1 ]]',
  's=abc; echo ${s:OP}',
  's=abc; echo ${s:0:OP}',
  'b=(1 2); echo ${b[OP]}',
  'b=(1 2); echo ${#b[OP]}',
  'echo ${@:OP}',
  'b=(); b[OP]=1',
  'b=(); b=([OP]=1)',
  'declare -i y=OP',
  'y=1; y=$((y+OP))',
  'case 1 in $((OP))) ;; esac',
  'cat <<EOF\n$((OP))\nEOF',
];
/** Operand/context pairs bash rejects before evaluating (a syntax error, or the operand is a string there). */
const INERT = new Set([
  "echo $[OP]|'PAY'",
  'echo $[OP]|"PAY"',
  'let OP|(x)',
  ...['-eq 1', '-lt 1', '-le 1', '-gt 1', '-ge 1'].flatMap((t) => [`[[ OP ${t} ]]|(x)`, `[[ ! OP ${t} ]]|(x)`]),
  '[[ 1 -ne OP ]]|(x)',
]);

const generated = CONTEXTS.flatMap((c) => OPERANDS.filter((o) => !INERT.has(`${c}|${o}`)).map((o) => `set -- 'PAY'; x='PAY'; ${c.replaceAll('OP', o)}`));

/** Further attacks, one per way in. */
const NAMED = [
  // the issue's own inputs
  "uptime; [[ 'a[$(CMD >&2)]' -eq 1 ]]",
  "for x in 'PAY'; do echo $((x)); done",
  "TZ='$(CMD)'; echo ${TZ@P}",
  // -v and test
  "[[ -v 'PAY' ]]",
  "x='PAY'; [[ -v $x ]]",
  "x='PAY'; [[ -v a[x] ]]",
  "[ -v 'PAY' ]",
  "test -v 'PAY'",
  "x='PAY'; test -v 'a[x]'",
  "command test -v 'PAY'",
  "builtin [ -v 'PAY' ]",
  // indirection and prompt expansion
  "y='PAY'; echo ${!y}",
  "y='a[$(CMD)]'; echo ${!y}",
  'x=\'$(CMD)\'; echo "${x@P}"',
  "x='`CMD`'; echo ${x@P}",
  'x=\'$(CMD)\'; b=("$x"); echo "${b[0]@P}"',
  "x='$(CMD)'; echo ${x@P}x",
  "PS4='$(CMD)'; set -x; true",
  "BASH_ENV='$(CMD)' bash -c true",
  "env 'BASH_FUNC_ls%%=() { CMD; }' bash -c ls",
  "ENV='$(CMD)' sh -i -c true",
  "export BASH_ENV='$(CMD)'; bash -c true",
  "env BASH_ENV='$(CMD)' bash -c true",
  // builtins that assign or evaluate through a name operand
  "printf -v 'PAY' x",
  "x='PAY'; printf -v 'b[x]' 1",
  "read 'PAY' <<< x",
  "x='PAY'; read 'b[x]' <<< 1",
  "b=(1 2); x='PAY'; unset 'b[x]'",
  "b=(1 2); x='PAY'; unset b[x]",
  "b=(1 2); x='PAY'; unset -v b[x]",
  "declare 'PAY'=1",
  "x='PAY'; declare b[x]=1",
  "x='PAY'; b[x]+=1",
  "declare -n r='PAY'; r=1",
  "declare -n r='PAY'; echo $r",
  "x='PAY'; declare -a 'b=([x]=1)'",
  "x='PAY'; b+=([x]=1)",
  "x='PAY'; : ${b[x]:=1}",
  "x='PAY'; : ${b[x]=1}",
  "mapfile -C 'CMD;:' -c 1 y <<< abc",
  "builtin printf -v 'PAY' 1",
  "x='PAY'; builtin let x",
  "x='PAY'; command let x",
  "x='PAY'; builtin declare -i y=x",
  "x='PAY'; command typeset -i y=x",
  "declare -i y; read y <<< 'PAY'",
  "declare -i y; printf -v y 'PAY'",
  "declare -i y; mapfile -t y <<< 'PAY'",
  "declare -i y; for y in 'PAY'; do :; done",
  "declare -i y; export y='PAY'",
  "declare -ai y; y=('PAY')",
  "typeset -i y='PAY'",
  "f(){ local -i y='PAY'; }; f",
  "x='PAY'; declare -gi y=x",
  "x='PAY'; declare -l -i y=x",
  "x='PAY'; declare -ia b=(x)",
  // variables whose assignment is arithmetic
  "RANDOM='PAY'",
  "OPTIND='PAY'",
  "SRANDOM='PAY'",
  "HISTCMD='PAY'; echo",
  "read OPTIND <<< 'PAY'",
  "export RANDOM='PAY'",
  // through eval, sh -c, trap and nested substitutions (the same checks in re-parsed text)
  "x='PAY'; eval 'echo $((x))'",
  "x='PAY'; bash -c 'x=$0; echo $((x))' 'PAY'",
  "x='PAY'; trap 'echo $((x))' EXIT",
  'echo $(echo $(( $(echo "\'PAY\'") )))',
  "x='PAY'; s=abc; echo ${y:-${s:x}}",
  'x=\'PAY\'; echo "${y:-$((x))}"',
  "x='PAY'; (let x)",
  "x='PAY'; { let x; }",
  "x='PAY'; ! let x",
  "x='PAY'; time let x",
  "x='PAY'; cat <<EOF\n${b[x]}\nEOF",
  // forms tree-sitter leaves as text: spaced `$[ ]` in a here-document, and backslash-newline inside a token
  "x='PAY'; cat <<EOF\n$[ x ]\nEOF",
  "x='PAY'; cat <<-EOF\n\t$[ x + 1 ]\n\tEOF",
  "x='PAY'; cat <<EOF\n$\\\n[ x ]\nEOF",
  "x='PAY'; echo $\\\n[ x ]",
  "x='PAY'; echo $(\\\n( x ))",
  "x='PAY'; (\\\n( x ))",
  'x=\'PAY\'; echo "$\\\n[ x ]"',
  "x='PAY'; s=abc; echo ${s:\\\nx}",
  "x='PAY'; b=(1); echo ${b[\\\nx]}",
  "x='PAY'; [\\\n[ x -eq 1 ]]",
  "y='PAY'; echo ${\\\n!y}",
  "x='PAY'; l\\\net x",
  "x='PAY'; b=(); b[\\\nx]=1",
  'x=\'PAY\'; echo "${x:-"\'"}" $\\\n[ x ]',
  "x='PAY'; echo '\\\n' $\\\n[ x ]",
  'x=\'PAY\'; echo "$(echo "\'")" $\\\n[ x ]',
];

/** Refused on principle though this bash does not run them (other shells or versions may). */
const FAIL_CLOSED = [
  "[ 'PAY' -eq 1 ]",
  "test 'PAY' -eq 1",
  'x=\'PAY\'; [ "$x" -lt 1 ]',
  "export 'PAY'=1",
  "getopts a 'PAY' -a",
  "mapfile 'PAY' <<< x",
  "PS3='$(CMD)'; select x in a; do break; done",
  "x='PAY'; echo ${!x*}",
  'enable -f /nonexistent x',
  "x='PAY'; local -n y=x",
  "x='$(CMD)'; y=x; echo ${!y}",
  "LINENO='PAY'",
  "SECONDS='PAY'",
  'echo $(( $(echo 1) ))',
  'echo $((a[1]))',
  'hash -p /tmp/x ls; ls',
  'BASH_ENV=1 bash -c true',
  'TEXTDOMAINDIR=/tmp echo $"x"',
  'PS4=1; set -x',
  'env BASH_ALIASES=x bash -c true',
  'BASH_CMDS[ls]=/tmp/x; ls',
  'OPTIND=$1',
  'for RANDOM in 1; do :; done',
  'x=\'PAY\'; env "$x=1" true',
  "x='PAY'; coproc let x",
  "sudo BASH_ENV='$(CMD)' bash -c true",
];

describe('code in arithmetic, test and indirect contexts makes the line opaque', () => {
  it.each([...generated, ...NAMED].map((c) => [title(c), c] as const))('%s', (_, c) => {
    const f = classifyShell(fill(c));
    // Refused (tree-sitter rejecting a form bash accepts is a refusal too), and a real attack on this bash.
    expect({ refused: f.error?.code, runs: haveBash ? bashRuns(c) : true }, f.error?.message).toEqual({
      refused: expect.stringMatching(/^WRIT_SHELL_(UNKNOWN|UNPARSEABLE)$/),
      runs: true,
    });
  });

  it.each(FAIL_CLOSED.map((c) => [title(c), c] as const))('refuses on principle: %s', (_, c) => {
    expect(classifyShell(fill(c)).error?.code).toBe('WRIT_SHELL_UNKNOWN');
  });

  it('marks the command whose argument holds the construct opaque', () => {
    const f = classifyShell('echo $((x)) ok; ls');
    expect(f.commands.map((c) => [c.program, c.opaque])).toEqual([
      ['echo', true],
      ['ls', false],
    ]);
    expect(classifyShell("let 'x+1'").commands[0]?.opaque).toBe(true);
  });
});

/** Literal arithmetic and plain names stay classified: the rules are not "refuse all arithmetic". */
const LITERAL = [
  'echo $((1 + 2 * (3 - 1)))',
  'echo $[4 / 2]',
  '(( 2 > 1 ))',
  'for ((;0;)); do :; done',
  '[[ 1 -eq 1 ]]',
  '[[ $# -eq 0 ]]',
  'echo ${s:1:2} ${s: -1}',
  'echo ${a[0]} ${a[@]} ${#a[*]} ${#x}',
  'echo ${x@Q} ${x:-d} ${x#p}',
  'a[1]=2',
  'let 1+1',
  '[ -v HOME ]',
  '[[ -v a[2] ]]',
  'read -r line',
  'printf -v out %s x',
  'declare -r x=1',
  'local y',
  'unset x a[3]',
  'OPTIND=1; getopts ab opt',
  'RANDOM=42 cmd',
  'echo $(( $# + $? ))',
  'mapfile -t lines',
  "cat <<'EOF'\n$[ x ] ${!x} $((x))\nEOF",
  'ls \\\n  -l',
  'getopts ab opt',
  'export PATH=/usr/bin',
  '[ "$x" = 1 ]',
  'test -f x',
];

describe('literal arithmetic and plain names stay classified', () => {
  it.each(LITERAL.map((c) => [title(c), c] as const))('%s', (_, c) => {
    const f = classifyShell(c);
    expect(f.error, f.error?.message).toBeUndefined();
  });
});

describe('for, select, read and other ways to set a variable are assignments', () => {
  const cases: Array<[string, string[]]> = [
    ['for f in a b; do :; done', ['f']],
    ['select s in a b; do break; done', ['s']],
    ['read -r a b', ['a', 'b']],
    ['read', ['REPLY']],
    ['read -a arr -p prompt', ['arr']],
    ['printf -v out %s x', ['out']],
    ['mapfile -t lines', ['lines']],
    ['readarray', ['MAPFILE']],
    ['getopts ab opt', ['opt', 'OPTARG']],
    ['wait -n -p pid', ['pid']],
    ['echo ${x:=1} ${y=2}', ['x', 'y']],
    ['a[1]=2', ['a']],
    ['declare x=1; local y', ['x', 'y']],
    ['command read -r z', ['z']],
  ];
  it.each(cases)('%s', (cmd, names) => {
    const f = classifyShell(cmd);
    expect(f.error, f.error?.message).toBeUndefined();
    expect(f.assignments).toEqual(names);
  });
});

describe('a line with no command still carries an error when it holds a construct the classifier cannot see into', () => {
  it.each(["[[ 'a[$(id)]' -eq 1 ]]", '(( x ))', '[[ -v $x ]]', 'X=$((y))', 'a[i]=1', 'b=([k]=1)', '[ -v "$n" ]', 'PS4=$x', '[[ $x -gt 0 ]] && (( 1 ))'])('%s', (cmd) => {
    const f = classifyShell(cmd);
    expect(f.commands).toEqual([]);
    expect(f.error?.code, f.error?.message).toBe('WRIT_SHELL_UNKNOWN');
  });

  it.each(['[[ a == b ]]', '(( 1 + 1 ))', 'X=1', '[ -f /etc/hosts ]'])('stays visible (no command, no error; the rules want a command): %s', (cmd) => {
    const f = classifyShell(cmd);
    expect(f.commands).toEqual([]);
    expect(f.error).toBeUndefined();
  });
});
