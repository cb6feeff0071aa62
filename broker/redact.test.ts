/** What approvers and the audit log see of a command: secrets masked, structure never changed. */
import { beforeAll, describe, expect, it } from 'vitest';
import { classifyShell, classifySql, initClassifiers } from '../classify/index.ts';
import { redactShell, redactSql } from './redact.ts';

const GH = `ghp_${'a1B2c3D4e5'.repeat(3)}abcdef`;

beforeAll(async () => {
  await initClassifiers();
});

/** The statement kinds, tables and WHERE flags of a text: what an approver judges by. */
function sqlShape(sql: string) {
  return classifySql(sql).statements.map((s) => ({ kind: s.kind, tables: s.tablesRead, written: s.tablesWritten, where: s.hasWhere, trivial: s.whereTriviallyTrue }));
}

describe('masking a command for humans never changes its structure', () => {
  const sqlAttacks = [
    `UPDATE customers SET plan = 'x' WHERE id = 2 AND name <> '{"private_key": "' OR id > 0 OR name = '"}'`,
    `DELETE FROM t WHERE id = 1 AND note = 'ghp_' OR true OR note = '${GH.slice(4)}'`,
    `UPDATE t SET a = 1 WHERE b = '-----BEGIN RSA PRIVATE KEY-----' OR 1 = 1 OR c = '-----END RSA PRIVATE KEY-----'`,
    `UPDATE t SET a = 1 WHERE id = 1 /* "private_key": " */ OR true -- "}`,
    `UPDATE t SET a = 1 WHERE b = $$ {"private_key": " $$ OR true OR c = $$ "} $$`,
    `UPDATE t SET a = E'x\\' OR true OR \\'' WHERE id = 1`,
  ];
  for (const sql of sqlAttacks) {
    it(`keeps the statement an approver is shown: ${sql.slice(0, 60)}`, () => {
      const shown = redactSql(sql);
      if (shown.startsWith('[withheld')) return expect(shown).toMatch(/SHA-256 is recorded/);
      expect(sqlShape(shown)).toEqual(sqlShape(sql));
    });
  }

  it('still masks a secret inside a literal, keeping the quotes', () => {
    const shown = redactSql(`UPDATE t SET token = '${GH}' WHERE id = 7`);
    expect(shown).not.toContain(GH);
    expect(shown).toMatch(/^UPDATE t SET token = '\[MASKED:[a-z_,]+\]' WHERE id = 7$/);
    expect(sqlShape(shown)).toEqual(sqlShape(`UPDATE t SET token = 'x' WHERE id = 7`));
  });

  it('masks a secret in a comment without swallowing what follows it', () => {
    const shown = redactSql(`SELECT 1 -- ${GH}\n; DELETE FROM t`);
    expect(shown).not.toContain(GH);
    expect(sqlShape(shown).map((s) => s.kind)).toEqual(['select', 'delete']);
  });

  it('withholds rather than show a secret in an identifier', () => {
    expect(redactSql(`SELECT "${GH}" FROM t`)).toMatch(/^\[withheld/);
  });

  const shellCases = [
    `echo '{"private_key": "' ; rm -rf /tmp/x ; echo '"}'`,
    `curl -H "Authorization: Bearer ${GH}" https://example.com; echo ${GH}`,
    `echo "-----BEGIN OPENSSH PRIVATE KEY-----" && cat /etc/shadow && echo "-----END OPENSSH PRIVATE KEY-----"`,
  ];
  for (const cmd of shellCases) {
    it(`keeps the commands an approver is shown: ${cmd.slice(0, 60)}`, () => {
      const shown = redactShell(cmd);
      expect(shown).not.toContain(GH);
      const a = classifyShell(cmd).commands.map((c) => c.program);
      const b = classifyShell(shown).commands.map((c) => c.program);
      expect(b).toEqual(a);
    });
  }
});
