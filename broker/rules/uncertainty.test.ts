/**
 * Red-team classes on the rule side, with hand-built facts (so they hold whatever the
 * classifier reports today): grants need something to cover, unquoted globs are uncertain,
 * options match only option patterns, flags are tri-state, unknown functions must be named.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { classifyShell, initClassifiers, type ShellCommand, type ShellFacts, type SqlFacts, type SqlStatementFacts } from '../../classify/index.ts';
import type { PolicyInput } from '../policy.ts';
import { globCanMatchDotSegment } from './args.ts';
import { RulePolicy } from './index.ts';

const ops = { sub: 'olga', iss: 'https://idp', groups: ['ops'] };
const web = { name: 'web1', kind: 'ssh', tags: ['prod'] } as unknown as PolicyInput['target'];
const db = { name: 'wh', kind: 'postgres', tags: ['prod'] } as unknown as PolicyInput['target'];
const now = new Date('2025-03-04T10:00:00Z');

function cmd(program: string, args: string[], extra: Partial<ShellCommand> = {}): ShellCommand {
  return { program, args, env: {}, wrappers: [], opaque: false, unknown: false, globArgs: [], source: [program, ...args].join(' '), ...extra };
}
function shell(commands: ShellCommand[], extra: Partial<ShellFacts> = {}): PolicyInput {
  const facts: ShellFacts = { commands, redirections: [], filesWritten: [], filesRead: [], network: [], assignments: [], structure: [], ...extra };
  return { principal: ops, target: web, command: { kind: 'shell', command: commands.map((c) => c.source).join('; ') }, facts: { kind: 'shell', facts }, now };
}
function stmt(extra: Partial<SqlStatementFacts> = {}): SqlStatementFacts {
  return {
    kind: 'select',
    objectNames: [],
    text: 'SELECT …',
    tablesRead: [],
    tablesWritten: [],
    columns: [],
    columnsWritten: [],
    wholeRowTables: [],
    functions: [],
    dangerousFunctions: [],
    unknownFunctions: [],
    opaqueReads: false,
    modifyingCte: false,
    selectInto: false,
    rowLocks: false,
    requestsReadWrite: false,
    readOnly: true,
    ...extra,
  };
}
function sql(statements: SqlStatementFacts[]): PolicyInput {
  const facts: SqlFacts = { dialect: 'postgres', statements };
  return { principal: ops, target: db, command: { kind: 'sql', sql: '…' }, facts: { kind: 'sql', facts }, now };
}
const policy = (rules: string) => RulePolicy.fromText(`rules:\n${rules}`);

describe('a grant needs something to cover', () => {
  const p = policy(`
  - { id: diag, effect: allow, match: { shell: { programs: [uptime] } } }
  - { id: restart, effect: require_approval, match: { shell: { programs: [systemctl] } }, approval: { groups: [leads], timeoutSec: 60 } }
  - { id: anything, effect: allow, match: { principal: { sub: [root] } } }
  - { id: read, effect: allow, match: { sql: { kinds: [select] } } }
`);

  it('a line with zero commands satisfies no grant, with a shell section or none', () => {
    const zero = shell([], { structure: ['test'] });
    expect(p.decide(zero).effect).toBe('deny');
    expect(p.decide({ ...zero, principal: { ...ops, sub: 'root' } }).effect).toBe('deny');
    expect(p.explain({ ...zero, principal: { ...ops, sub: 'root' } }).considered.find((c) => c.id === 'anything')?.why).toMatch(/needs at least one/);
    expect(p.decide(shell([cmd('uptime', [])])).effect).toBe('allow');
  });

  it('a batch with zero statements satisfies no grant', () => {
    expect(p.decide(sql([])).effect).toBe('deny');
    expect(p.decide(sql([stmt()])).effect).toBe('allow');
  });
});

describe('unquoted globs are uncertain', () => {
  const p = policy(`
  - { id: no-shadow, effect: deny, match: { shell: { args: { cat: [/etc/shadow] } } } }
  - { id: no-shadow-redirect, effect: deny, match: { shell: { pathsRead: [/etc/shadow] } } }
  - { id: logs, effect: allow, match: { shell: { programs: [cat, ls], args: { cat: ["/var/log/**"], ls: ["*", "-l"] }, pathsRead: ["/var/log/**"] } } }
`);

  it('a glob that can match a dot segment never matches an allow, whatever the pattern', () => {
    for (const a of ['/var/log/.?/.?/etc/shadow', '/var/log/.[.]/.[.]/etc/shadow', '/var/log/.*/x', '/var/log/[.][.]/x', '/var/log/@(..)/x', '/var/log/..?(x)/x']) {
      expect(p.decide(shell([cmd('cat', [a], { globArgs: [0] })])).effect, a).toBe('deny');
    }
    expect(globCanMatchDotSegment('/var/log/a*/x.?')).toBe(false);
    expect(globCanMatchDotSegment('*.service')).toBe(true);
  });

  it('any glob under a path pattern is uncertain, also in redirections', () => {
    expect(p.decide(shell([cmd('cat', ['/var/log/syslog*'], { globArgs: [0] })])).effect).toBe('deny');
    const redir = (target: string, glob?: boolean) =>
      shell([cmd('cat', [])], { redirections: [{ op: '<', target, writes: false, reads: true, ...(glob === undefined ? {} : { glob }) }], filesRead: [target] });
    expect(p.decide(redir('/var/log/syslog')).effect).toBe('allow');
    expect(p.decide(redir('/var/log/.?/.?/etc/shadow', true)).effect).toBe('deny');
    expect(p.decide(redir('/var/log/sys*', true)).effect).toBe('deny');
  });

  it('the same text quoted is a literal and matches as one', () => {
    expect(p.decide(shell([cmd('cat', ['/var/log/.?'], { globArgs: [] })])).effect).toBe('allow');
  });

  it('facts without globArgs count every glob character as an unquoted glob', () => {
    const c = cmd('cat', ['/var/log/.?/.?/etc/shadow']);
    delete c.globArgs;
    expect(p.decide(shell([c])).effect).toBe('deny');
  });

  it('an uncertain glob matches a deny: it may expand to the denied path', () => {
    const d = p.decide(shell([cmd('cat', ['/etc/sh*dow'], { globArgs: [0] })]));
    expect(d).toMatchObject({ effect: 'deny', rules: ['no-shadow'] });
    const r = shell([cmd('cat', [])], { redirections: [{ op: '<', target: '/etc/sha?ow', writes: false, reads: true, glob: true }], filesRead: ['/etc/sha?ow'] });
    expect(p.decide(r).rules).toEqual(['no-shadow-redirect']);
  });

  it('a glob with a literal prefix is certain against *, one starting with a glob character is not', () => {
    expect(p.decide(shell([cmd('ls', ['-l', 'app*'], { globArgs: [1] })])).effect).toBe('allow');
    // `*` may expand to a file named `-rf` or `.x`.
    expect(p.decide(shell([cmd('ls', ['*'], { globArgs: [0] })])).effect).toBe('deny');
  });
});

describe('options match only option patterns', () => {
  const p = policy(`
  - id: status
    effect: allow
    match: { shell: { programs: [systemctl, tail], args: { systemctl: [status, "*.service", "--no-pager"], tail: ["-n", { regex: '^[0-9]+$' }, { regex: '^-[0-9]+$' }, "/var/log/**"] } } }
`);

  it('an argument starting with - does not pass as a positional pattern', () => {
    expect(p.decide(shell([cmd('systemctl', ['status', 'nginx.service', '--no-pager'])])).effect).toBe('allow');
    expect(p.decide(shell([cmd('systemctl', ['status', '--host=evil.service'])])).effect).toBe('deny');
    expect(p.decide(shell([cmd('systemctl', ['status', '-Hevil.service'])])).effect).toBe('deny');
  });

  it('a regex is an option pattern when its source starts with - or ^-', () => {
    expect(p.decide(shell([cmd('tail', ['-n', '20', '/var/log/syslog'])])).effect).toBe('allow');
    expect(p.decide(shell([cmd('tail', ['-20', '/var/log/syslog'])])).effect).toBe('allow');
    expect(p.decide(shell([cmd('tail', ['--follow=/etc/shadow'])])).effect).toBe('deny');
  });
});

describe('argv: positional forms', () => {
  const p = policy(`
  - id: no-stop
    effect: deny
    match: { shell: { argv: { systemctl: [[stop, { rest: ["**", { regex: "^-" }] }], [disable, { rest: true }]] } } }
  - id: status
    effect: allow
    match:
      shell:
        programs: [systemctl, uptime, journalctl]
        argv:
          systemctl: [[status, { regex: '^[a-z0-9@._-]+\\.service$' }], [is-active, { rest: ["*.service"] }]]
          uptime: []
          journalctl: ["-u", "*.service", { rest: ["-n", { regex: '^[0-9]{1,4}$' }, "--no-pager"] }]
`);
  const run = (...argv: string[]) => p.decide(shell([cmd(argv[0]!, argv.slice(1))])).effect;

  it('"systemctl status UNIT" and nothing else', () => {
    expect(run('systemctl', 'status', 'nginx.service')).toBe('allow');
    expect(run('systemctl', 'status')).toBe('deny');
    expect(run('systemctl', 'status', 'nginx.service', 'x.service')).toBe('deny');
    expect(run('systemctl', 'restart', 'nginx.service')).toBe('deny');
    expect(run('systemctl', 'nginx.service', 'status')).toBe('deny');
    expect(run('uptime')).toBe('allow');
    expect(run('uptime', '-p')).toBe('deny');
  });

  it('the rest marker admits further arguments, options only where it lists option patterns', () => {
    expect(run('systemctl', 'is-active', 'a.service', 'b.service')).toBe('allow');
    expect(run('systemctl', 'is-active')).toBe('allow');
    expect(run('systemctl', 'is-active', '--host=x.service')).toBe('deny');
    expect(run('journalctl', '-u', 'nginx.service', '-n', '50', '--no-pager')).toBe('allow');
    expect(run('journalctl', '-u', 'nginx.service', '--file=/etc/shadow')).toBe('deny');
  });

  it('an expansion or a glob at a fixed position never matches a grant, and matches a deny', () => {
    const x = '\u0000$x\u0000';
    expect(p.decide(shell([cmd('systemctl', ['status', x])])).effect).toBe('deny');
    expect(p.decide(shell([cmd('systemctl', ['status', 'ngi*.service'], { globArgs: [1] })])).effect).toBe('deny');
    expect(p.decide(shell([cmd('systemctl', [x, 'nginx.service'])])).rules).toEqual(['no-stop']);
    expect(p.decide(shell([cmd('systemctl', ['st*p', 'nginx.service'], { globArgs: [0] })])).rules).toEqual(['no-stop']);
    expect(p.decide(shell([cmd('systemctl', ['stop', '--now', 'nginx.service'])])).rules).toEqual(['no-stop']);
    expect(p.decide(shell([cmd('systemctl', ['disable', 'nginx.service'])])).rules).toEqual(['no-stop']);
  });

  it('are validated with paths to each problem', () => {
    const bad = (argv: string) => {
      try {
        policy(`  - { id: r, effect: allow, match: { shell: { argv: ${argv} } } }`);
        return '';
      } catch (e) {
        return (e as Error).message;
      }
    };
    expect(bad('{ systemctl: [{ rest: true }, status] }')).toContain('rules[0].match.shell.argv.systemctl[0]: { rest } must be the last element');
    expect(bad('{ systemctl: [status, { rest: false }] }')).toContain('rules[0].match.shell.argv.systemctl[1].rest: expected true');
    expect(bad('{ systemctl: [[status, "a{b"]] }')).toContain('rules[0].match.shell.argv.systemctl[0][1]: invalid glob');
    expect(bad('{ systemctl: [status, { regex: "(" }] }')).toContain('rules[0].match.shell.argv.systemctl[1].regex: invalid regex');
    expect(bad('{ systemctl: [status, { rest: true, x: 1 }] }')).toContain('rules[0].match.shell.argv.systemctl[1].x: unknown key');
    expect(bad('{ systemctl: [status, 3] }')).toContain('rules[0].match.shell.argv.systemctl[1]: expected a glob');
    expect(bad('{ systemctl: [status, { rest: ["*"] }] }')).toBe('');
  });
});

describe('flags are tri-state', () => {
  const plain = stmt();
  const sleepy = stmt({ functions: ['pg_sleep'], dangerousFunctions: ['pg_sleep'], unknownFunctions: ['pg_sleep'], readOnly: false });
  const cte = stmt({ modifyingCte: true, readOnly: false });

  it('true matches only statements with the flag set, false only without, any either', () => {
    const p = (v: string) => policy(`  - { id: r, effect: allow, match: { sql: { functions: ["*", pg_sleep], dangerousFunctions: ${v}, modifyingCte: ${v} } } }`);
    expect([p('true').decide(sql([plain])).effect, p('true').decide(sql([sleepy])).effect]).toEqual(['deny', 'deny']);
    expect(p('true').decide(sql([stmt({ ...sleepy, modifyingCte: true })])).effect).toBe('allow');
    expect([p('false').decide(sql([plain])).effect, p('false').decide(sql([sleepy])).effect, p('false').decide(sql([cte])).effect]).toEqual(['allow', 'deny', 'deny']);
    expect([p('any').decide(sql([plain])).effect, p('any').decide(sql([sleepy])).effect, p('any').decide(sql([cte])).effect]).toEqual(['allow', 'allow', 'allow']);
  });

  it('any lifts a grant default on shell flags too', () => {
    const net = shell([cmd('cat', ['/var/log/x'])], {
      network: ['/dev/tcp/1.2.3.4/80'],
      redirections: [{ op: '>', target: '/dev/tcp/1.2.3.4/80', writes: true, reads: false }],
      filesWritten: ['/dev/tcp/1.2.3.4/80'],
    });
    expect(policy(`  - { id: r, effect: allow, match: { shell: { programs: [cat], pathsWritten: ["/dev/**"] } } }`).decide(net).effect).toBe('deny');
    expect(policy(`  - { id: r, effect: allow, match: { shell: { programs: [cat], pathsWritten: ["/dev/**"], network: any } } }`).decide(net).effect).toBe('allow');
  });
});

describe('unknown and dangerous functions must be named', () => {
  const f = (name: string, dangerous = false) => stmt({ functions: [name], unknownFunctions: [name], dangerousFunctions: dangerous ? [name] : [], readOnly: !dangerous });

  it('a glob does not name an unknown function; an exact name does, pg_catalog aside', () => {
    expect(policy(`  - { id: r, effect: allow, match: { sql: { functions: ["*"] } } }`).decide(sql([f('ts_stat')])).effect).toBe('deny');
    expect(policy(`  - { id: r, effect: allow, match: { sql: { functions: ["ts_*"] } } }`).decide(sql([f('ts_stat')])).effect).toBe('deny');
    expect(policy(`  - { id: r, effect: allow, match: { sql: { functions: ["*", ts_stat] } } }`).decide(sql([f('ts_stat')])).effect).toBe('allow');
    expect(policy(`  - { id: r, effect: allow, match: { sql: { functions: [pg_catalog.ts_stat] } } }`).decide(sql([f('ts_stat')])).effect).toBe('allow');
    expect(policy(`  - { id: r, effect: allow, match: { sql: { functions: [ts_stat] } } }`).decide(sql([f('pg_catalog.ts_stat')])).effect).toBe('allow');
    // A schema-qualified name is another function than the unqualified one.
    expect(policy(`  - { id: r, effect: allow, match: { sql: { functions: [app.f] } } }`).decide(sql([f('f')])).effect).toBe('deny');
    expect(policy(`  - { id: r, effect: allow, match: { sql: { functions: [app.f] } } }`).decide(sql([f('app.f')])).effect).toBe('allow');
  });

  it('no grant without a functions list covers them: not one naming no SQL condition, not dangerousFunctions: any', () => {
    for (const r of ['match: { sql: { kinds: [select] } }', 'match: {}', 'mode: write, match: { sql: { dangerousFunctions: any } }']) {
      const p = policy(`  - { id: r, effect: allow, ${r} }`);
      expect(p.decide(sql([f('query_to_xml')])).effect, r).toBe('deny');
      expect(p.decide(sql([f('pg_sleep', true)])).effect, r).toBe('deny');
      expect(p.decide(sql([stmt({ functions: ['now'] })])).effect, r).toBe('allow');
    }
  });

  it('a dangerous function is covered when named, and a statement without unknownFunctions has none', () => {
    const p = policy(`  - { id: r, effect: allow, match: { sql: { functions: [now, nextval] } } }`);
    expect(p.decide(sql([stmt({ functions: ['nextval'], dangerousFunctions: ['nextval'], unknownFunctions: [] })])).effect).toBe('allow');
    const old = stmt({ functions: ['now'] });
    delete old.unknownFunctions;
    expect(p.decide(sql([old])).effect).toBe('allow');
  });

  it('deny rules still match by glob', () => {
    const p = policy(`
  - { id: no-xml, effect: deny, match: { sql: { functions: ["*_to_xml"] } } }
  - { id: r, effect: allow, match: { sql: { functions: [query_to_xml] } } }`);
    expect(p.decide(sql([f('query_to_xml')])).rules).toEqual(['no-xml']);
  });
});

describe('a tilde-prefix is a home directory the rules cannot see (real classifier)', () => {
  beforeAll(() => initClassifiers());
  const p = policy(`
  - { id: no-root, effect: deny, match: { shell: { programs: [cat], args: { cat: ["/root/**"] } } } }
  - { id: read-any, effect: allow, match: { shell: { programs: [cat] } } }
`);
  const decide = (line: string) => {
    const facts = classifyShell(line);
    return p.decide({ principal: ops, target: web, command: { kind: 'shell', command: line }, facts: { kind: 'shell', facts }, now }).effect;
  };

  it('denies `cat ~/.ssh/id_rsa` under a deny on /root/** (bash reads /root/.ssh/id_rsa as root), and still allows what the deny does not name', () => {
    expect(decide('cat /root/.ssh/id_rsa')).toBe('deny');
    expect(decide('cat ~/.ssh/id_rsa')).toBe('deny');
    expect(decide('cat ~root/.ssh/id_rsa')).toBe('deny');
    expect(decide('cat /etc/hostname')).toBe('allow');
    expect(decide("cat '~/notes'")).toBe('allow'); // quoted: a file named ~ in the current directory
  });
});
