// The MariaDB helper against a real mariadbd: if this fails, every MariaDB test would.
import { existsSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mysql from 'mysql2/promise';
import { createTestMariadb, startMariadb, type MariadbServerHandle, type TestMariadb } from './index.ts';

function isAlive(pid: number): boolean {
  try {
    return !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

describe('startMariadb and createTestMariadb', () => {
  let server: MariadbServerHandle;
  let db: TestMariadb;

  beforeAll(async () => {
    server = await startMariadb();
    db = await createTestMariadb({ server });
    await db.admin(['CREATE TABLE t (id int primary key, v text)', "INSERT INTO t VALUES (1, 'a')"]);
  });
  afterAll(async () => {
    await db?.drop();
    await server?.stop();
  });

  const login = (mode: 'read' | 'write') => mysql.createConnection({ host: db.host, port: db.port, user: db.users[mode].user, password: db.users[mode].password, database: db.database });

  it('runs a MariaDB on a loopback port of its own, with its own socket', () => {
    expect(server.version).toMatch(/MariaDB/);
    expect(server.port).not.toBe(3306);
    expect(existsSync(server.socketPath)).toBe(true);
    expect(isAlive(server.pid)).toBe(true);
  });

  it('gives a read user that can read and not write, and a write user that can write', async () => {
    const ro = await login('read');
    const rw = await login('write');
    try {
      const [rows] = await ro.query('SELECT v FROM t');
      expect(rows).toEqual([{ v: 'a' }]);
      await expect(ro.query("INSERT INTO t VALUES (2, 'b')")).rejects.toMatchObject({ code: 'ER_TABLEACCESS_DENIED_ERROR' });
      await rw.query("INSERT INTO t VALUES (2, 'b')");
      await expect(rw.query('CREATE TABLE u (a int)')).rejects.toMatchObject({ code: 'ER_TABLEACCESS_DENIED_ERROR' });
      await expect(rw.query("SELECT LOAD_FILE('/etc/passwd') AS f")).resolves.toEqual([[{ f: null }], expect.anything()]);
      await expect(ro.query('SELECT user FROM mysql.user')).rejects.toMatchObject({ code: 'ER_TABLEACCESS_DENIED_ERROR' });
    } finally {
      await ro.end();
      await rw.end();
    }
  });

  it('stops by pid and removes its directory', async () => {
    const other = await startMariadb();
    const dir = dirname(other.socketPath);
    await other.stop();
    expect(isAlive(other.pid)).toBe(false);
    expect(existsSync(dir)).toBe(false);
  });
});
