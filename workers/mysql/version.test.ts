/** The server version check and what the worker sets per run on each flavor. */
import { describe, expect, it } from 'vitest';
import { settingsSql } from './session.ts';
import { serverFlavor } from './version.ts';

describe('serverFlavor', () => {
  it('accepts MariaDB 10.6+ and MySQL 8.0+', () => {
    expect(serverFlavor('10.11.19-MariaDB-0+deb12u1')).toMatchObject({ kind: 'mariadb', major: 10, minor: 11 });
    expect(serverFlavor('11.4.2-MariaDB')).toMatchObject({ kind: 'mariadb', major: 11 });
    expect(serverFlavor('8.0.36', 'MySQL Community Server - GPL')).toMatchObject({ kind: 'mysql', major: 8, minor: 0 });
    expect(serverFlavor('5.5.5-10.11.6-MariaDB')).toMatchObject({ kind: 'mariadb' });
  });

  it('refuses older servers and unreadable versions with WRIT_UNSUPPORTED', () => {
    for (const [v, c] of [
      ['10.5.23-MariaDB', ''],
      ['5.7.44', 'MySQL Community Server'],
      ['x', ''],
    ] as const) {
      expect(() => serverFlavor(v, c), v).toThrow(expect.objectContaining({ code: 'WRIT_UNSUPPORTED' }));
    }
  });
});

describe('settingsSql', () => {
  const s = { timeoutMs: 1500, selectLimit: 11, readOnly: true };
  it("uses MariaDB's max_statement_time (seconds) and tx_read_only", () => {
    const sql = settingsSql(serverFlavor('10.11.19-MariaDB'), s);
    expect(sql).toContain('SESSION max_statement_time = 1.500');
    expect(sql).toContain('SESSION tx_read_only = 1');
    expect(sql).toContain('SESSION sql_select_limit = 11');
    expect(sql).toMatch(/SESSION sql_mode = '[A-Z_,]+'/);
    expect(sql).not.toMatch(/ANSI_QUOTES|NO_BACKSLASH_ESCAPES/);
  });
  it("uses MySQL's max_execution_time (milliseconds) and transaction_read_only", () => {
    const sql = settingsSql(serverFlavor('8.0.36', 'MySQL'), s);
    expect(sql).toContain('SESSION max_execution_time = 1500');
    expect(sql).toContain('SESSION transaction_read_only = 1');
    expect(sql).not.toContain('NO_AUTO_CREATE_USER'); // removed in MySQL 8.0: setting it is an error
  });
});
