/**
 * A MariaDB target end to end from the two doors agents use: `writ exec` (the command, as a
 * child process) and the MCP server (the official MCP client), against a real mariadbd.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client, InMemoryTransport, type CallToolResult } from '@modelcontextprotocol/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWritMcpServer, type IntentOut } from '../cmd/mcp/index.ts';
import { startMariaStack, type MariaStack } from './fixture-mysql.ts';

const run = promisify(execFile);
const CLI = join(import.meta.dirname, '..', 'cmd', 'cli.ts');
let t: MariaStack;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  t = await startMariaStack();
  const configFile = join(t.s.dir, 'cli.yaml');
  writeFileSync(configFile, JSON.stringify({ prefix: t.s.names.prefix, identity: { devIssuer: { enabled: true, dir: t.s.config.identity.devIssuer.dir } } }));
  env = { ...process.env, NATS_URL: t.s.nats.url, WRIT_PREFIX: t.s.names.prefix, WRIT_CONFIG: configFile, WRIT_LOG_LEVEL: 'silent' };
});
afterAll(async () => {
  await t?.stop();
});

async function writ(args: string[], extraEnv: NodeJS.ProcessEnv = {}) {
  try {
    const r = await run(process.execPath, ['--import', 'tsx', CLI, ...args], { env: { ...env, ...extraEnv }, timeout: 30_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

describe('a MariaDB target from writ exec', () => {
  it('runs an allowed read masked, and answers a denied write with its code', async () => {
    const token = (await writ(['token', '--sub', 'cli-user', '--groups', 'analysts', '--ttl', '5m'])).stdout.trim();
    const ok = await writ(['exec', '--target', 'maria', '--sql', 'SELECT id, email AS contact FROM customers ORDER BY id LIMIT 2', '--json'], { WRIT_TOKEN: token });
    expect(ok.code, ok.stderr).toBe(0);
    const o = JSON.parse(ok.stdout) as { status: string; result: { columns: unknown[]; rowCount: number } };
    expect(o.status).toBe('succeeded');
    expect(o.result.columns).toEqual([{ name: 'id', masked: false }, expect.objectContaining({ name: 'contact', masked: true })]);
    expect(o.result.rowCount).toBe(2);
    expect(ok.stdout).not.toMatch(/@example\.(com|org)/);
    const denied = await writ(['exec', '--target', 'maria', '--sql', 'DELETE FROM customers', '--json'], { WRIT_TOKEN: token });
    expect(denied.code).toBe(1);
    expect((JSON.parse(denied.stdout) as { status: string }).status).toBe('denied');
    const [rows] = (await t.m.admin(['SELECT count(*) AS n FROM customers'])) as Array<Array<{ n: number }>>;
    expect(Number(rows![0]!.n)).toBe(3);
  });
});

describe('a MariaDB target from MCP', () => {
  it('lists the target, runs sql_query masked through a view, and refuses a versioned comment', async () => {
    const writ = t.s.client(await t.s.token('alice', ['analysts']));
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    const server = createWritMcpServer({ client: writ, progressIntervalMs: 300 });
    const mcp = new Client({ name: 'planner-test', version: '1.0.0' });
    await server.connect(serverSide);
    await mcp.connect(clientSide);
    try {
      const call = async (name: string, args: Record<string, unknown>) => {
        const r = (await mcp.callTool({ name, arguments: args })) as CallToolResult;
        return { r, isError: r.isError === true, out: r.structuredContent as IntentOut };
      };
      const targets = (await call('list_targets', {})).out as unknown as { targets: Array<{ name: string; kind: string }> };
      expect(targets.targets.map((x) => [x.name, x.kind])).toEqual([['maria', 'mysql']]);
      // No ORDER BY: a filter or ordering on a view's column counts as one on every base column the
      // view draws on, the masked one included (WRIT_MASKED_FILTER; views are not traced column by column).
      const q = await call('sql_query', { target: 'maria', sql: 'SELECT name, contact FROM customer_contacts' });
      expect(q.isError).toBe(false);
      expect(q.out.outcome).toBe('succeeded');
      expect(q.out.result!.columns.map((c) => [c.name, c.masked])).toEqual([
        ['name', true],
        ['contact', true],
      ]);
      expect(JSON.stringify(q.r)).not.toMatch(/@example\.(com|org|net)/);
      const v = await call('sql_query', { target: 'maria', sql: 'SELECT name FROM customers /*!50000 UNION SELECT email FROM customers */' });
      expect(v.isError).toBe(true);
      expect(JSON.stringify(v.r)).toContain('WRIT_SQL_UNPARSEABLE');
      expect(JSON.stringify(v.r)).not.toMatch(/@example\.(com|org|net)/);
    } finally {
      await mcp.close();
      await server.close();
    }
  });
});
