/**
 * The agents' side on a real stack (nats-server, PostgreSQL, sshd, broker, workers):
 * the Writ MCP server driven by the official MCP client over in-memory, Streamable HTTP
 * (both protocol eras) and stdio, and the planner SDK (sessions, typed errors,
 * idempotent steps, cancellation).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, InMemoryTransport, ProtocolError, StreamableHTTPClientTransport, type CallToolResult } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { createWritMcpServer, runMcp, type ExplainOut, type IntentOut, type TargetsOut } from '../cmd/mcp/index.ts';
import { Session, WritApprovalRequiredError, WritDeniedError, WritIntentError, intentIdFor, refreshingToken } from '../client/sdk-extras.ts';
import { startSshd, type SshdHandle } from './helpers/index.ts';
import { startStack, type Stack } from './fixture.ts';

/** The HTTP transport always requires a bearer secret (loopback is no boundary). */
const BEARER = 'mcp-test-secret';
let s: Stack;
let sshd: SshdHandle;
const toClose: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  sshd = await startSshd();
  s = await startStack({
    config: {
      targets: [
        { name: 'db', kind: 'postgres', tags: ['test'], description: 'the test database' },
        { name: 'host', kind: 'ssh', tags: ['test'] },
      ],
      policy: {
        rules: [
          { id: 'analysts-read', effect: 'allow', groups: ['analysts'], targets: ['db'], mode: 'read' },
          // Approval beats allow, and a write rule covers reads too: everything agents do waits for approval.
          { id: 'agents-write-approved', effect: 'require_approval', groups: ['agents'], targets: ['db'], mode: 'write', approval: { groups: ['approvers'], count: 1, timeoutSec: 120 } },
          { id: 'dba-write', effect: 'allow', groups: ['dba'], targets: ['db'], mode: 'write' },
          { id: 'ops-shell', effect: 'allow', groups: ['ops'], targets: ['host'], mode: 'write', limits: { seconds: 20 } },
          { id: 'no-interns', effect: 'deny', groups: ['interns'], targets: ['*'] },
        ],
        masking: { columns: [{ column: 'public.customers.email' }], detectors: ['email'] },
      },
    },
    workersSsh: [
      {
        target: 'host',
        host: sshd.host,
        port: sshd.port,
        hostKeys: { fingerprints: [sshd.hostKeyFingerprint] },
        credentials: {
          read: { user: { value: sshd.user }, privateKeyFile: sshd.clientKeyPath },
          write: { user: { value: sshd.user }, privateKeyFile: sshd.clientKeyPath },
        },
      },
    ],
  });
}, 120_000);

afterAll(async () => {
  for (const c of toClose.reverse()) await c().catch(() => undefined);
  await s?.stop();
  await sshd?.stop();
});

type Via = 'memory' | 'http' | 'http-2025';
const rows = async (note: string) => Number((await s.admin.query('SELECT count(*)::int AS n FROM events WHERE note = $1', [note])).rows[0].n);
const approver = async (sub = 'carol') => s.client(await s.approverToken(sub, ['approvers']));

/** An MCP client connected to a Writ MCP server that acts as `sub` in `groups`. */
async function mcpAs(sub: string, groups: string[], via: Via = 'memory'): Promise<Client> {
  const writ = s.client(await s.token(sub, groups));
  const mcp = new Client({ name: 'planner-test', version: '1.0.0' }, via === 'http' ? { versionNegotiation: { mode: 'auto' } } : {});
  if (via === 'memory') {
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    const server = createWritMcpServer({ client: writ, progressIntervalMs: 300 });
    await server.connect(serverSide);
    await mcp.connect(clientSide);
    toClose.push(() => server.close());
  } else {
    const running = await runMcp({ transport: 'http', client: writ, progressIntervalMs: 300, bearer: BEARER });
    await mcp.connect(new StreamableHTTPClientTransport(new URL(running.url!), { requestInit: { headers: { authorization: `Bearer ${BEARER}` } } }));
    toClose.push(() => running.close());
    expect(mcp.getProtocolEra()).toBe(via === 'http' ? 'modern' : 'legacy');
  }
  expect(mcp.getInstructions()).toContain('list_targets');
  toClose.push(() => mcp.close());
  return mcp;
}

async function call(mcp: Client, name: string, args: Record<string, unknown>, onprogress?: (p: { progress: number }) => void) {
  const r = (await mcp.callTool({ name, arguments: args }, onprogress ? { onprogress } : {})) as CallToolResult;
  const text = r.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');
  return { r, text, isError: r.isError === true, out: r.structuredContent as IntentOut };
}

describe('the Writ MCP server', () => {
  it('lists its seven tools, each with a description and input and output schemas', async () => {
    const mcp = await mcpAs('alice', ['analysts']);
    const { tools } = await mcp.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(['cancel_intent', 'explain', 'intent_status', 'list_targets', 'shell_command', 'sql_query', 'wait_for_intent']);
    for (const t of tools) {
      expect(t.description!.length, t.name).toBeGreaterThan(80);
      expect(t.inputSchema.type).toBe('object');
      expect(t.outputSchema?.type).toBe('object');
    }
    const sql = tools.find((t) => t.name === 'sql_query')!;
    expect(sql.inputSchema.required).toEqual(['target', 'sql']);
    expect(Object.keys(sql.inputSchema.properties!)).toEqual(expect.arrayContaining(['justification', 'session_id', 'intent_id', 'timeout_seconds']));
    expect(tools.find((t) => t.name === 'list_targets')!.annotations?.readOnlyHint).toBe(true);
  });

  it('lists the targets this principal may use, and for what', async () => {
    const { out, isError } = await call(await mcpAs('alice', ['analysts']), 'list_targets', {});
    const v = out as unknown as TargetsOut;
    expect(isError).toBe(false);
    expect(v.targets.map((t) => t.name)).toEqual(['db']);
    expect(v.targets[0]!.access.map((a) => a.rule)).toEqual(['analysts-read']);
    const ops = (await call(await mcpAs('olga', ['ops']), 'list_targets', {})).out as unknown as TargetsOut;
    expect(ops.targets.map((t) => [t.name, t.kind])).toEqual([['host', 'ssh']]);
  });

  it('explains allow, require_approval and deny with the rules and reasons, and runs nothing', async () => {
    const mcp = await mcpAs('agent-x', ['agents']);
    const before = await rows('explained');
    const read = (await call(await mcpAs('alice', ['analysts']), 'explain', { target: 'db', sql: 'SELECT name FROM customers' })).out as unknown as ExplainOut;
    expect(read).toMatchObject({ allowed: true, decision: { effect: 'allow', rules: ['analysts-read'], mode: 'read' } });
    const write = await call(mcp, 'explain', { target: 'db', sql: "INSERT INTO events (note) VALUES ('explained')" });
    const w = write.out as unknown as ExplainOut;
    expect(write.isError).toBe(false);
    expect(w).toMatchObject({ allowed: false, decision: { effect: 'require_approval', rules: ['agents-write-approved'] }, approval: { groups: ['approvers'], count: 1 } });
    expect(write.text).toContain('needs approval');
    const intern = (await call(await mcpAs('ivan', ['interns']), 'explain', { target: 'db', sql: 'SELECT 1' })).out as unknown as ExplainOut;
    expect(intern).toMatchObject({ allowed: false, decision: { effect: 'deny', rules: ['no-interns'] } });
    expect(intern.decision.reasons.length).toBeGreaterThan(0);
    expect(await rows('explained')).toBe(before);
  });

  it('returns an allowed query masked: the e-mail column is flagged and no address appears anywhere in the result', async () => {
    const { r, out, isError, text } = await call(await mcpAs('alice', ['analysts']), 'sql_query', { target: 'db', sql: 'SELECT name, email AS contact, plan FROM customers ORDER BY id' });
    expect(isError).toBe(false);
    expect(out.outcome).toBe('succeeded');
    expect(out.result!.columns.map((c) => [c.name, c.masked])).toEqual([
      ['name', false],
      ['contact', true],
      ['plan', false],
    ]);
    expect(out.result!.rows.map((row) => row[0])).toEqual(['Alice Example', 'Bob Example', 'Carol Example']);
    expect(JSON.stringify(r)).not.toMatch(/@example\.(com|org|net)/);
    expect(text).toContain('contact*');
    expect(text).toContain('(3 rows; * = masked by policy)');
  });

  it('answers a denial with isError, the stable code, the rule and the reasons, and a next step', async () => {
    const analyst = await mcpAs('alice', ['analysts']);
    const before = await rows('denied-write');
    const d = await call(analyst, 'sql_query', { target: 'db', sql: "INSERT INTO events (note) VALUES ('denied-write')" });
    expect(d.isError).toBe(true);
    expect(d.out).toMatchObject({ outcome: 'denied', status: 'denied', error: { code: 'WRIT_POLICY_DENIED', retryable: false } });
    expect(d.out.decision!.effect).toBe('deny');
    expect(d.out.decision!.reasons.join(' ')).toMatch(/write/);
    expect(d.out.next).toMatch(/denied again/);
    expect(d.text).toContain('WRIT_POLICY_DENIED');
    const intern = await call(await mcpAs('ivan', ['analysts', 'interns']), 'sql_query', { target: 'db', sql: 'SELECT 1' });
    expect(intern.isError).toBe(true);
    expect(intern.out.decision!.rules).toEqual(['no-interns']);
    const garbled = await call(analyst, 'sql_query', { target: 'db', sql: 'SELEC name FROM customers' });
    expect(garbled.out.error!.code).toBe('WRIT_SQL_UNPARSEABLE');
    expect(garbled.out.next).toMatch(/syntax/);
    expect(await rows('denied-write')).toBe(before);
  });

  for (const via of ['memory', 'http', 'http-2025'] as const) {
    it(`completes a pending approval with wait_for_intent once an approver approves (${via})`, async () => {
      const mcp = await mcpAs(`agent-${via}`, ['agents'], via);
      const note = `approved-${via}`;
      const p = await call(mcp, 'sql_query', { target: 'db', sql: `INSERT INTO events (note) VALUES ('${note}')`, justification: 'ticket 7' });
      expect(p.isError).toBe(false);
      expect(p.out).toMatchObject({
        outcome: 'pending_approval',
        status: 'pending',
        error: { code: 'WRIT_APPROVAL_REQUIRED' },
        decision: { effect: 'require_approval', rules: ['agents-write-approved'] },
      });
      expect(p.out.next).toContain('wait_for_intent');
      const id = p.out.intentId!;
      expect((await call(mcp, 'intent_status', { intent_id: id })).out.outcome).toBe('pending_approval');

      const progress: number[] = [];
      const waiting = call(mcp, 'wait_for_intent', { intent_id: id, timeout_seconds: 60 }, (x) => progress.push(x.progress));
      await new Promise((r) => setTimeout(r, 1_000));
      expect(await rows(note)).toBe(0);
      expect(await (await approver()).decide(id, 'approve', { reason: 'fine' })).toBe('dispatched');
      const done = await waiting;
      expect(done.isError).toBe(false);
      expect(done.out).toMatchObject({ outcome: 'succeeded', intentId: id, result: { rowCount: 1 } });
      expect(progress.length).toBeGreaterThan(0);
      expect(await rows(note)).toBe(1);
      expect((await call(mcp, 'intent_status', { intent_id: id })).out.outcome).toBe('succeeded');
    });
  }

  it('reports a wait that ends first as timedOut, and cancel_intent withdraws the intent for good', async () => {
    const mcp = await mcpAs('agent-c', ['agents'], 'http');
    const p = await call(mcp, 'sql_query', { target: 'db', sql: "INSERT INTO events (note) VALUES ('withdrawn')" });
    const id = p.out.intentId!;
    const waited = await call(mcp, 'wait_for_intent', { intent_id: id, timeout_seconds: 1 });
    expect(waited.isError).toBe(false);
    expect(waited.out).toMatchObject({ outcome: 'pending_approval', timedOut: true });
    const c = await call(mcp, 'cancel_intent', { intent_id: id });
    expect(c.isError).toBe(false);
    expect(c.out).toMatchObject({ outcome: 'cancelled', status: 'cancelled' });
    expect((await call(mcp, 'intent_status', { intent_id: id })).out.outcome).toBe('cancelled');
    const again = await call(mcp, 'cancel_intent', { intent_id: id });
    expect(again.isError).toBe(true);
    expect(again.out.error!.code).toBe('WRIT_NOT_PENDING');
    await expect((await approver()).decide(id, 'approve')).rejects.toMatchObject({ code: 'WRIT_NOT_PENDING' });
    const other = await call(await mcpAs('mallory', ['agents']), 'intent_status', { intent_id: id });
    expect(other.out.error!.code).toBe('WRIT_NOT_FOUND');
    expect(await rows('withdrawn')).toBe(0);
  });

  it('runs a resubmitted intent_id once and answers both calls with the same outcome', async () => {
    const mcp = await mcpAs('dana', ['dba']);
    const args = { target: 'db', sql: "INSERT INTO events (note) VALUES ('mcp-once')", intent_id: 'mcp-once-0001' };
    const [a, b] = [await call(mcp, 'sql_query', args), await call(mcp, 'sql_query', args)];
    expect([a.out.outcome, b.out.outcome]).toEqual(['succeeded', 'succeeded']);
    expect(b.out.intentId).toBe('mcp-once-0001');
    expect(await rows('mcp-once')).toBe(1);
  });

  it('answers a later resubmission with the first outcome, without running it again', async () => {
    // Every resubmission meets the intent's record at the broker, however late it comes.
    const dba = await mcpAs('dana', ['dba']);
    const args = { target: 'db', sql: "INSERT INTO events (note) VALUES ('late-retry')", intent_id: 'late-retry-0001' };
    expect((await call(dba, 'sql_query', args)).out.outcome).toBe('succeeded');
    const agent = await mcpAs('agent-late', ['agents']);
    const pending = { target: 'db', sql: "INSERT INTO events (note) VALUES ('late-pending')", intent_id: 'late-pending-0001' };
    expect((await call(agent, 'sql_query', pending)).out.outcome).toBe('pending_approval');
    await new Promise((r) => setTimeout(r, 800));
    const started = Date.now();
    expect((await call(dba, 'sql_query', args)).out).toMatchObject({ outcome: 'succeeded', intentId: 'late-retry-0001', result: { rowCount: 1 } });
    expect((await call(agent, 'sql_query', pending)).out).toMatchObject({ outcome: 'pending_approval', intentId: 'late-pending-0001' });
    const session = new Session(s.client(await s.token('dana', ['dba'])), { id: 's_late_retry_session' });
    await session.query('db', "INSERT INTO events (note) VALUES ('late-key')", { key: 'k' });
    await new Promise((r) => setTimeout(r, 800));
    expect((await session.query('db', "INSERT INTO events (note) VALUES ('late-key')", { key: 'k' })).rowCount).toBe(1);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect([await rows('late-retry'), await rows('late-pending'), await rows('late-key')]).toEqual([1, 0, 1]);
  });

  it('runs a shell command on an SSH target with masked output, and denies it to others', async () => {
    const ok = await call(await mcpAs('olga', ['ops']), 'shell_command', { target: 'host', command: 'echo hello from mcp; echo "mail bob@corp.example"; exit 2', timeout_seconds: 60 });
    expect(ok.isError).toBe(false);
    expect(ok.out.outcome).toBe('succeeded');
    expect(ok.out.result).toMatchObject({ exitCode: 2 });
    expect(ok.out.result!.stdout).toContain('hello from mcp');
    expect(JSON.stringify(ok.r)).not.toContain('bob@corp.example');
    const no = await call(await mcpAs('alice', ['analysts']), 'shell_command', { target: 'host', command: 'id' });
    expect(no.isError).toBe(true);
    expect(no.out.error!.code).toBe('WRIT_POLICY_DENIED');
  }, 60_000);

  for (const via of ['memory', 'http'] as const) {
    it(`answers bad arguments with a tool error (isError, WRIT_BAD_REQUEST, the reason) the model sees, not a protocol error (${via})`, async () => {
      const mcp = await mcpAs('alice', ['analysts'], via);
      const bad: Array<[string, Record<string, unknown>, RegExp]> = [
        ['sql_query', { target: 'db' }, /sql/],
        ['sql_query', { target: 'db.*', sql: 'SELECT 1' }, /target name/],
        ['sql_query', { target: 'db', sql: 'SELECT 1', timeout_seconds: 0 }, /timeout_seconds/],
        ['sql_query', { target: 'db', sql: 'SELECT 1', justificaton: 'typo' }, /justificaton/],
        ['explain', { target: 'db', sql: 'SELECT 1', command: 'ls' }, /exactly one of sql or command/],
        ['explain', { target: 'db' }, /exactly one of sql or command/],
        ['list_targets', { extra: 1 }, /extra/],
        ['wait_for_intent', { intent_id: 'short' }, /intent id/],
        ['wait_for_intent', { intent_id: 'i_abcdefgh', timeout_seconds: 601 }, /timeout_seconds/],
        ['cancel_intent', {}, /intent_id/],
      ];
      for (const [name, args, reason] of bad) {
        const what = `${name} ${JSON.stringify(args)}`;
        // The client validates structured content against the tool's output schema: it passes.
        const { r, text, isError } = await call(mcp, name, args);
        expect(isError, what).toBe(true);
        expect(text, what).toMatch(reason);
        expect(text.match(/WRIT_BAD_REQUEST/g), what).toHaveLength(1);
        expect(text, what).toContain('next: Nothing was submitted.');
        if (r.structuredContent) expect(r.structuredContent, what).toMatchObject({ outcome: 'error', error: { code: 'WRIT_BAD_REQUEST', retryable: false } });
      }
      // An unknown tool is still a protocol error, as the specification says.
      const err = await mcp.callTool({ name: 'no_such_tool', arguments: {} }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ProtocolError);
      expect((err as ProtocolError).code).toBe(-32602);
    });
  }

  it('shows each error code once: a classifier code carried into the message is not repeated', async () => {
    const analyst = await mcpAs('alice', ['analysts']);
    const garbled = await call(analyst, 'sql_query', { target: 'db', sql: 'SELEC name FROM customers' });
    expect(garbled.isError).toBe(true);
    expect(garbled.out.error!.code).toBe('WRIT_SQL_UNPARSEABLE');
    expect(garbled.out.error!.message).not.toContain('WRIT_SQL_UNPARSEABLE');
    expect(garbled.text.match(/WRIT_SQL_UNPARSEABLE/g)).toHaveLength(1);
    const x = await call(analyst, 'explain', { target: 'db', sql: 'SELEC name FROM customers' });
    expect(x.text.match(/WRIT_SQL_UNPARSEABLE/g)).toHaveLength(1);
  });

  it('serves over stdio as its own process (writ mcp), with the agent token from the environment', async () => {
    const token = await s.token('alice', ['analysts']);
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: ['--import', 'tsx', join(import.meta.dirname, '..', 'cmd', 'mcp', 'main.ts')],
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', NATS_URL: s.nats.url, WRIT_PREFIX: s.names.prefix, WRIT_TOKEN: token },
      stderr: 'pipe',
    });
    const mcp = new Client({ name: 'stdio-test', version: '1.0.0' });
    await mcp.connect(transport);
    try {
      expect((await mcp.listTools()).tools).toHaveLength(7);
      const { out } = await call(mcp, 'sql_query', { target: 'db', sql: 'SELECT email FROM customers WHERE id = 1' });
      expect(out.outcome).toBe('succeeded');
      expect(out.result!.columns[0]!.masked).toBe(true);
      expect(JSON.stringify(out)).not.toContain('alice@example.com');
    } finally {
      await mcp.close();
    }
  }, 60_000);

  it('refuses a cross-origin request to the loopback endpoint (no DNS rebinding from a web page)', async () => {
    const running = await runMcp({ transport: 'http', client: s.client(await s.token('alice', ['analysts'])), bearer: BEARER });
    toClose.push(() => running.close());
    const r = await fetch(running.url!, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', origin: 'http://evil.example', authorization: `Bearer ${BEARER}` },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    expect(r.status).toBe(403);
    expect((await fetch(running.url!.replace('/mcp', '/other'), { headers: { authorization: `Bearer ${BEARER}` } })).status).toBe(404);
  });

  it('refuses to serve HTTP off loopback without a bearer secret, and checks the secret when given', async () => {
    const writ = s.client(await s.token('alice', ['analysts']));
    await expect(runMcp({ transport: 'http', client: writ, host: '0.0.0.0' })).rejects.toMatchObject({ code: 'WRIT_CONFIG_INVALID' });
    // Loopback too: any local user could otherwise act with the agent's token.
    await expect(runMcp({ transport: 'http', client: writ })).rejects.toMatchObject({ code: 'WRIT_CONFIG_INVALID' });
    const running = await runMcp({ transport: 'http', client: writ, bearer: 's3cret-for-test' });
    toClose.push(() => running.close());
    const post = (auth?: string) =>
      fetch(running.url!, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...(auth ? { authorization: auth } : {}) },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
      });
    expect((await post()).status).toBe(401);
    expect((await post('Bearer wrong')).status).toBe(401);
    const mcp = new Client({ name: 'bearer-test', version: '1.0.0' });
    await mcp.connect(new StreamableHTTPClientTransport(new URL(running.url!), { requestInit: { headers: { authorization: 'Bearer s3cret-for-test' } } }));
    toClose.push(() => mcp.close());
    expect((await mcp.listTools()).tools).toHaveLength(7);
  });
});

describe('the planner SDK', () => {
  it('throws typed errors that carry the code, the rules and the reasons', async () => {
    const session = new Session(s.client(await s.token('alice', ['analysts'])));
    const err = await session.query('db', "DELETE FROM events WHERE note = 'x'").then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WritDeniedError);
    expect(err).toBeInstanceOf(WritIntentError);
    const denied = err as WritDeniedError;
    expect(denied.code).toBe('WRIT_POLICY_DENIED');
    expect(denied.retryable).toBe(false);
    expect(denied.reasons.join(' ')).toMatch(/write/);
    expect(session.intents.get(denied.intentId)).toMatchObject({ status: 'denied', target: 'db' });
    const typed = await session.query<{ name: string; email: string }>('db', 'SELECT name, email FROM customers ORDER BY id');
    expect(typed.rows[0]!.name).toBe('Alice Example');
    expect(typed.masked).toEqual(['email']);
    expect(typed.rows[0]!.email).not.toContain('@example.com');
    const explained = await session.explain({ target: 'db', sql: 'SELECT 1' });
    expect(explained.allowed).toBe(true);
  });

  it('waits for approval within a session, and the same step key never runs twice', async () => {
    const seen: string[] = [];
    const session = new Session(s.client(await s.token('agent-sdk', ['agents'])), { onPending: (o) => void seen.push(o.intentId) });
    const a = await approver('erin');
    const step = session.query('db', "INSERT INTO events (note) VALUES ('sdk-approved')", { key: 'load-1', justification: 'sdk test' });
    const id = session.intentId('load-1');
    expect(id).toBe(intentIdFor(session.id, 'load-1'));
    for (let i = 0; i < 50 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(seen).toEqual([id]);
    expect(await a.decide(id, 'approve')).toBe('dispatched');
    const done = await step;
    expect(done.intentId).toBe(id);
    expect(done.rowCount).toBe(1);
    // A planner restarted mid-run repeats its step with the same key: same intent, same outcome, one row.
    const again = await session.query('db', "INSERT INTO events (note) VALUES ('sdk-approved')", { key: 'load-1' });
    expect(again.intentId).toBe(id);
    expect(await rows('sdk-approved')).toBe(1);
  });

  it('stops waiting on abort, throws WritApprovalRequiredError when asked not to wait, and close() cancels what is pending', async () => {
    const ac = new AbortController();
    const session = new Session(s.client(await s.token('agent-abort', ['agents'])), { signal: ac.signal });
    const noWait = await session.query('db', "INSERT INTO events (note) VALUES ('sdk-abort')", { approval: 'throw' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(noWait).toBeInstanceOf(WritApprovalRequiredError);
    const pendingId = (noWait as WritApprovalRequiredError).intentId;
    const started = Date.now();
    const waiting = session.wait(pendingId, { timeoutMs: 60_000 }).then(
      () => 'resolved',
      (e: unknown) => (e as Error).name,
    );
    setTimeout(() => ac.abort(), 300);
    expect(await waiting).toBe('AbortError');
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(await session.close()).toEqual([pendingId]);
    expect(await session.client.status(pendingId)).toBe('cancelled');
    expect(await rows('sdk-abort')).toBe(0);
  });

  it('renews a token shortly before it expires, sharing one renewal between callers', async () => {
    let minted = 0;
    const source = refreshingToken(
      async () => {
        minted++;
        return s.token('renew', ['analysts'], { ttlSec: 61 });
      },
      { renewBeforeSec: 60 },
    );
    const [t1, t2] = await Promise.all([source(), source()]);
    expect(t1).toBe(t2);
    expect(minted).toBe(1);
    await new Promise((r) => setTimeout(r, 1_100));
    expect(await source()).not.toBe(t1);
    expect(minted).toBe(2);
  });
});
