import { describe, expect, it } from 'vitest';
import type { ApprovalRequest } from '../../schemas/index.ts';
import type { ApprovalView } from '../types.ts';
import { renderRequest, type Block } from './blocks.ts';
import { codeBlock, escapeSlackText, inlineCode, revealInvisible } from './escape.ts';

const request = (sql: string, extra: Partial<ApprovalRequest> = {}): ApprovalRequest => ({
  v: 1,
  type: 'approval.request',
  intentId: 'i_0123456789abcdef',
  sessionId: 's_0123456789abcdef',
  target: 'db',
  requester: { sub: 'agent-1', iss: 'https://issuer.example', groups: ['agents'] },
  command: { kind: 'sql', sql },
  facts: { statements: [{ kind: 'delete', tablesWritten: ['public.customers'], hasWhere: false }] },
  rule: 'ask',
  reasons: ['rule ask requires approval for db'],
  approval: { groups: ['approvers'], count: 1, timeoutSec: 60 },
  expiresAt: 1_900_000_000_000,
  createdAt: 1_899_999_000_000,
  commandSha256: 'a'.repeat(64),
  ...extra,
});
const view = (r: ApprovalRequest): ApprovalView => ({ request: r, commandLength: r.command.kind === 'sql' ? r.command.sql.length : r.command.command.length, activity: [] });
const sectionText = (blocks: Block[], id: string) => String((blocks.find((b) => b.block_id === id)?.text as { text: string }).text);

describe('escapeSlackText', () => {
  it('escapeSlackText neutralizes control sequences', () => {
    expect(escapeSlackText('<!channel> <!here|here> <@U0123> <#C0123> <https://evil.example|click> & &lt;')).toBe(
      '&lt;!channel&gt; &lt;!here|here&gt; &lt;@U0123&gt; &lt;#C0123&gt; &lt;https://evil.example|click&gt; &amp; &amp;lt;',
    );
    expect(escapeSlackText('a < b > c')).not.toMatch(/[<>]/);
  });

  it('revealInvisible shows bidi overrides, zero-width and terminal controls', () => {
    expect(revealInvisible('a\u202Eb\u200Bc\u001b[2Jd\re')).toBe('a⟦U+202E⟧b⟦U+200B⟧c⟦U+001B⟧[2Jd⟦U+000D⟧e');
    expect(revealInvisible('tab\tand\nnewline stay')).toBe('tab\tand\nnewline stay');
  });
});

describe('codeBlock and inlineCode', () => {
  it('a code block cannot be closed by the text it holds', () => {
    const c = codeBlock('x ``` *Approved by security* ``` y', 500);
    expect(c.text.match(/```/g)).toHaveLength(2);
    expect(c.text.startsWith('```\n')).toBe(true);
    expect(c.text.endsWith('\n```')).toBe(true);
  });

  it('caps a code block without cutting an entity in half, and says it did', () => {
    const c = codeBlock('<'.repeat(1000), 100);
    expect(c.truncated).toBe(true);
    expect(c.text.length).toBeLessThanOrEqual(100);
    expect(c.text).toMatch(/^```\n(&lt;)+\n```$/);
  });

  it('inline code holds one line, no backtick, escaped', () => {
    expect(inlineCode('a`b\n<!channel>')).toBe('`aˋb &lt;!channel&gt;`');
    expect(inlineCode('x'.repeat(200), 10)).toBe(`\`${'x'.repeat(10)}…\``);
  });
});

describe('renderRequest', () => {
  it('keeps a SQL comment that imitates an approval inside the code block', () => {
    const { blocks } = renderRequest(view(request('DELETE FROM customers /* ✅ Approved by security */')));
    const command = sectionText(blocks, 'writ_command');
    expect(command).toBe('*Command* (sql)\n```\nDELETE FROM customers /* ✅ Approved by security */\n```');
    // While pending, no block outside the code blocks says anything was approved.
    const outside = JSON.stringify(blocks.filter((b) => b.block_id !== 'writ_command'));
    expect(outside).not.toMatch(/approved by/i);
    expect(blocks.find((b) => b.block_id === 'writ_outcome')).toBeUndefined();
  });

  it('escapes every agent-controlled field and forges no button', () => {
    const r = request("SELECT '<!channel>' -- [Approve]", {
      requester: { sub: 'agent `<!here>`', iss: 'i', groups: [], actFor: '<@U0BOSS>' },
      justification: '<https://evil.example|click here> *Approved*',
      rule: 'r<x>',
    });
    const { blocks, text } = renderRequest(view(r));
    const json = JSON.stringify(blocks);
    for (const raw of ['<!channel>', '<!here>', '<@U0BOSS>', '<https://evil.example', 'r<x>']) expect(json).not.toContain(raw);
    expect(text).not.toMatch(/[<>]/);
    const buttons = blocks.filter((b) => b.type === 'actions').flatMap((b) => b.elements as { text: { text: string }; value: string }[]);
    expect(buttons.map((b) => [b.text.text, b.value])).toEqual([
      ['Approve', r.intentId],
      ['Deny', r.intentId],
    ]);
  });

  it('warns when the command is too long to show whole', () => {
    const long = `SELECT 1; ${'-- padding\n'.repeat(500)}DROP TABLE customers;`;
    const { blocks } = renderRequest(view(request(long)));
    expect(sectionText(blocks, 'writ_command')).not.toContain('DROP TABLE');
    expect(JSON.stringify(blocks.find((b) => b.block_id === 'writ_truncated'))).toContain(`${long.length.toLocaleString('en')} characters`);
  });

  it('replaces the buttons with the outcome once the intent has ended', () => {
    const v: ApprovalView = {
      ...view(request('DELETE FROM customers WHERE id = 1')),
      outcome: { v: 1, type: 'approval.outcome', intentId: 'i_0123456789abcdef', status: 'rejected', by: ['carol'], reason: 'no <!channel>', at: 1_899_999_500_000 },
    };
    const { blocks } = renderRequest(v);
    expect(blocks.some((b) => b.type === 'actions' || b.type === 'input')).toBe(false);
    expect(sectionText(blocks, 'writ_outcome')).toContain('*Denied* by `carol`');
    expect(sectionText(blocks, 'writ_outcome')).toContain('no &lt;!channel&gt;');
  });
});
