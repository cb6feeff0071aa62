// The helpers against real servers: if these fail, every integration test would.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { createHash } from 'node:crypto';
import pg from 'pg';
import { Client as SshClient } from 'ssh2';
import { createTestDatabase, freePort, startSshd, startNats, startNatsCluster, uniqueName, type NatsClusterHandle, type NatsServerHandle, type SshdHandle, type TestDatabase } from './index.ts';
import { requireBinary } from './process.ts';

/** True while `pid` exists and is not a zombie. */
function isAlive(pid: number): boolean {
  try {
    return !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

describe('requireBinary', () => {
  it('names the Debian package to install when a binary is missing', () => {
    expect(() => requireBinary('writ-no-such-binary', 'nats-server')).toThrow(/apt-get install nats-server/);
  });
});

describe('uniqueName and freePort', () => {
  it('gives distinct names made of safe characters', () => {
    const names = new Set(Array.from({ length: 100 }, () => uniqueName('orders')));
    expect(names.size).toBe(100);
    for (const name of names) expect(name).toMatch(/^orders_[a-z0-9]{10}$/);
  });

  it('gives a usable loopback port', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(0);
    expect(port).toBeLessThan(65536);
  });
});

describe('startNats', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;

  beforeAll(async () => {
    server = await startNats({ gomaxprocs: 1 });
    nc = await connect({ servers: server.url });
  });

  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  it('listens on a random loopback port', () => {
    expect(server.url).toBe(`nats://127.0.0.1:${server.port}`);
    expect(server.port).not.toBe(4222);
    expect(server.pid).toBeGreaterThan(0);
  });

  it('accepts a JetStream stream and a publish to it', async () => {
    const jsm = await jetstreamManager(nc);
    const stream = uniqueName('writ_test');
    await jsm.streams.add({ name: stream, subjects: [`${stream}.>`] });
    const ack = await jetstream(nc).publish(`${stream}.hello`, 'hi', { msgID: 'm1' });
    expect(ack.stream).toBe(stream);
    expect(ack.seq).toBe(1);
    const info = await jsm.streams.info(stream);
    expect(info.state.messages).toBe(1);
  });

  it('passes GOMAXPROCS to the child', () => {
    const environ = readFileSync(`/proc/${server.pid}/environ`, 'utf8').split('\0');
    expect(environ).toContain('GOMAXPROCS=1');
  });

  it('kill9() kills at once and stop() still cleans up', async () => {
    const other = await startNats();
    other.kill9();
    await expect.poll(() => isAlive(other.pid)).toBe(false);
    expect(existsSync(other.storeDir)).toBe(true);
    await other.stop();
    expect(existsSync(other.storeDir)).toBe(false);
  });

  it('restarts on a caller-owned storeDir after kill9() with the data intact', async () => {
    const storeDir = mkdtempSync(join(tmpdir(), 'writ-test-store-'));
    const stream = uniqueName('writ_restart');
    try {
      const first = await startNats({ storeDir });
      const nc1 = await connect({ servers: first.url });
      await (await jetstreamManager(nc1)).streams.add({ name: stream, subjects: [`${stream}.>`] });
      await jetstream(nc1).publish(`${stream}.a`, 'kept');
      await nc1.close();
      first.kill9();
      await first.stop();
      expect(existsSync(storeDir)).toBe(true);

      const second = await startNats({ storeDir });
      const nc2 = await connect({ servers: second.url });
      const info = await (await jetstreamManager(nc2)).streams.info(stream);
      expect(info.state.messages).toBe(1);
      await nc2.close();
      await second.stop();
    } finally {
      rmSync(storeDir, { recursive: true, force: true });
    }
  });

  it('stop() ends the process and removes its temp files', async () => {
    const other = await startNats({ jetstream: false });
    await other.stop();
    expect(isAlive(other.pid)).toBe(false);
    expect(existsSync(other.logFile)).toBe(false);
    expect(existsSync(other.storeDir)).toBe(false);
    await other.stop(); // idempotent
  });

  it('fails fast with the log when the config is invalid', async () => {
    await expect(startNats({ extraConfig: 'this is { not valid' })).rejects.toThrow(/exited .*before it was ready[\s\S]*nats-server.log/);
  });
});

describe('startNatsCluster', () => {
  let cluster: NatsClusterHandle;

  beforeAll(async () => {
    cluster = await startNatsCluster(3, { gomaxprocs: 1 });
  }, 90_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it('accepts an R3 stream', async () => {
    expect(cluster.urls).toHaveLength(3);
    const nc = await connect({ servers: cluster.urls });
    try {
      const jsm = await jetstreamManager(nc);
      const stream = uniqueName('writ_r3');
      const info = await jsm.streams.add({ name: stream, subjects: [`${stream}.>`], num_replicas: 3 });
      expect(info.config.num_replicas).toBe(3);
      const ack = await jetstream(nc).publish(`${stream}.x`, 'payload');
      expect(ack.seq).toBe(1);
    } finally {
      await nc.close();
    }
  });
});

/** Runs one query as `connectionString` and closes the connection. */
async function query(connectionString: string, sql: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    return await client.query(sql, params);
  } finally {
    await client.end();
  }
}

describe.each(['auto', 'private'] as const)('createTestDatabase (server: %s)', (server) => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase({ server });
    // Created after the roles, by the admin: only default privileges can cover it.
    await query(db.adminUrl, 'CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)');
    await query(db.adminUrl, "INSERT INTO notes (body) VALUES ('seed')");
  }, 120_000);

  afterAll(async () => {
    await db?.drop();
  });

  it('names the database and roles uniquely', () => {
    expect(db.database).toMatch(/^writ_test_[a-z0-9]{10}$/);
    expect(db.roles.read.user).toMatch(/^writ_ro_[a-z0-9]{10}$/);
    expect(db.roles.write.user).toMatch(/^writ_rw_[a-z0-9]{10}$/);
    expect(db.connectionString('admin')).toBe(db.adminUrl);
    if (server === 'private') expect(db.server).toBe('private');
  });

  it('read role can SELECT but not INSERT (42501)', async () => {
    const rows = await query(db.connectionString('read'), 'SELECT body FROM notes');
    expect(rows.rows).toEqual([{ body: 'seed' }]);
    await expect(query(db.connectionString('read'), "INSERT INTO notes (body) VALUES ('x')")).rejects.toMatchObject({
      code: '42501',
    });
  });

  it('write role can INSERT, UPDATE and DELETE but not CREATE TABLE (42501)', async () => {
    const rw = db.connectionString('write');
    const inserted = await query(rw, "INSERT INTO notes (body) VALUES ('by writer') RETURNING id");
    expect(inserted.rowCount).toBe(1);
    await query(rw, "UPDATE notes SET body = 'edited' WHERE id = $1", [inserted.rows[0].id]);
    await query(rw, 'DELETE FROM notes WHERE id = $1', [inserted.rows[0].id]);
    await expect(query(rw, 'CREATE TABLE nope (id int)')).rejects.toMatchObject({ code: '42501' });
  });

  it('drop() removes the database and both roles', async () => {
    const other = await createTestDatabase({ server });
    await other.drop();
    const admin = db.adminUrl;
    const dbs = await query(admin, 'SELECT 1 FROM pg_database WHERE datname = $1', [other.database]);
    expect(dbs.rowCount).toBe(0);
    const roles = await query(admin, 'SELECT 1 FROM pg_roles WHERE rolname = ANY($1)', [[other.roles.read.user, other.roles.write.user]]);
    expect(roles.rowCount).toBe(0);
    await other.drop(); // idempotent
  });
});

interface ExecResult {
  stdout: string;
  stderr: string;
  code: number | null;
}

/** Connects with ssh2, accepting only the host key whose blob is `pinned`, and runs `command`. */
function sshExec(sshd: SshdHandle, pinned: Buffer, command: string): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const conn = new SshClient();
    conn.once('error', reject);
    conn.once('ready', () => {
      conn.exec(command, (err, stream) => {
        if (err) {
          conn.end();
          reject(err);
          return;
        }
        let stdout = '';
        let stderr = '';
        stream.on('data', (d: Buffer) => (stdout += d.toString()));
        stream.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        stream.once('close', (code: number | null) => {
          conn.end();
          resolve({ stdout, stderr, code });
        });
      });
    });
    conn.connect({
      host: sshd.host,
      port: sshd.port,
      username: sshd.user,
      privateKey: sshd.clientPrivateKey,
      hostVerifier: (key: Buffer) => key.equals(pinned),
      readyTimeout: 10_000,
    });
  });
}

const keyBlob = (publicKey: string): Buffer => Buffer.from(publicKey.split(' ')[1] ?? '', 'base64');

describe('startSshd', () => {
  let sshd: SshdHandle;

  beforeAll(async () => {
    sshd = await startSshd();
  });

  afterAll(async () => {
    await sshd?.stop();
  });

  it('describes its host key in the usual formats', () => {
    expect(sshd.hostPublicKey).toMatch(/^ssh-ed25519 AAAA[A-Za-z0-9+/=]+$/);
    expect(sshd.knownHostsLine).toBe(`[127.0.0.1]:${sshd.port} ${sshd.hostPublicKey}`);
    const digest = createHash('sha256').update(keyBlob(sshd.hostPublicKey)).digest('base64').replace(/=+$/, '');
    expect(sshd.hostKeyFingerprint).toBe(`SHA256:${digest}`);
  });

  it('runs a command over ssh2 with a pinned host key: stdout, stderr and exit code', async () => {
    const result = await sshExec(sshd, keyBlob(sshd.hostPublicKey), 'echo hi; echo err >&2; exit 3');
    expect(result).toEqual({ stdout: 'hi\n', stderr: 'err\n', code: 3 });
  });

  it('refuses the connection when the verifier pins another key', async () => {
    const otherKey = readFileSync(`${sshd.clientKeyPath}.pub`, 'utf8'); // an ed25519 key, not the host's
    await expect(sshExec(sshd, keyBlob(otherKey), 'true')).rejects.toThrow(/verification failed/i);
  });
});
