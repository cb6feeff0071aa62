/**
 * Block Kit for one approval request. Every agent-controlled text goes through
 * escape.ts; the only mrkdwn formatting, emoji, mentions and dates come from here. While
 * the intent is pending the message carries a reason box (an input block, read from the
 * interaction's `state.values`) and Approve/Deny buttons whose `value` is the intent id;
 * once it has ended they are replaced by the outcome.
 */
import { commandText } from '../../schemas/index.ts';
import { factsLines } from '../text.ts';
import type { Activity, ApprovalView } from '../types.ts';
import { codeBlock, escapeSlackText, inlineCode, plainText } from './escape.ts';

export const ACTION_APPROVE = 'writ_approve';
/** Approve and grant the access window the message describes (its `writ_window` section). */
export const ACTION_APPROVE_WINDOW = 'writ_approve_window';
export const ACTION_DENY = 'writ_deny';
export const REASON_BLOCK = 'writ_reason';
export const REASON_ACTION = 'writ_reason';
export const ACTIONS_BLOCK = 'writ_actions';

/** Shown command text at most (mrkdwn characters); a section's text may hold 3000. */
const COMMAND_MAX = 2_600;
const FACTS_MAX = 1_500;
const JUSTIFICATION_MAX = 1_500;

type TextObject = { type: 'mrkdwn'; text: string } | { type: 'plain_text'; text: string; emoji?: boolean };
export type Block = Record<string, unknown> & { type: string };

const md = (text: string): TextObject => ({ type: 'mrkdwn', text });
const plain = (text: string): TextObject => ({ type: 'plain_text', text, emoji: false });

/** A Slack date token: rendered in each reader's time zone, with the ISO time as the fallback. */
function slackDate(ms: number): string {
  return `<!date^${Math.floor(ms / 1000)}^{date_short_pretty} {time}|${new Date(ms).toISOString()}>`;
}

/** A Slack user id from a signed payload, as a mention; anything else as inert code. */
function who(a: Activity): string {
  const user = a.platformUser && /^[UW][A-Z0-9]{2,20}$/.test(a.platformUser) ? `<@${a.platformUser}>` : undefined;
  const sub = a.sub !== undefined ? inlineCode(a.sub, 60) : undefined;
  return user && sub ? `${user} (${sub})` : (user ?? sub ?? 'someone');
}

function activityLine(a: Activity): string {
  const verb = a.verdict === 'approve' ? 'approved' : 'denied';
  if (a.accepted) return `${who(a)} ${verb} → ${inlineCode(a.status ?? 'pending', 20)}`;
  return `${who(a)} tried to ${a.verdict === 'approve' ? 'approve' : 'deny'}: refused ${inlineCode(a.code ?? 'WRIT_INTERNAL', 60)}`;
}

function outcomeBlock(v: ApprovalView): Block | undefined {
  const o = v.outcome;
  if (!o) return undefined;
  const by =
    o.by.length > 0
      ? ` by ${o.by
          .slice(0, 10)
          .map((b) => inlineCode(b, 60))
          .join(', ')}`
      : '';
  let text: string;
  switch (o.status) {
    case 'dispatched':
      text = `:white_check_mark: *Approved*${by} — dispatched to ${inlineCode(v.request.target)} at ${slackDate(o.at)}`;
      break;
    case 'rejected':
      text = `:no_entry: *Denied*${by} at ${slackDate(o.at)}${o.reason ? `\n${codeBlock(o.reason, 1_500).text}` : ''}`;
      break;
    case 'expired':
      text = `:hourglass: *Expired* — no decision before ${slackDate(v.request.expiresAt)}`;
      break;
    case 'cancelled':
      text = `:no_entry_sign: *Cancelled* by the requester at ${slackDate(o.at)}`;
      break;
  }
  return { type: 'section', block_id: 'writ_outcome', text: md(text) };
}

/** A duration as the approver reads it: `45s`, `30m`, `2h`, `1h 30m`. */
function duration(sec: number): string {
  const h = Math.floor(sec / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = sec % 60;
  return [h ? `${h}h` : '', m ? `${m}m` : '', s || (!h && !m) ? `${s}s` : ''].filter(Boolean).join(' ');
}

/**
 * What "Approve with window" would allow, from the request's `windowScope` (the scope the
 * broker enforces, field by field). Agent-controlled parts are inline code or a code block.
 */
function windowBlock(r: ApprovalView['request']): Block | undefined {
  const w = r.windowScope;
  if (!w) return undefined;
  const lines = [
    `*Approve with window* also lets, for ${duration(w.maxSec)} and without asking again:`,
    `• requester ${inlineCode(w.requester.sub)} (issuer ${inlineCode(w.requester.iss, 80)}), acting for ${w.actFor !== null ? inlineCode(w.actFor) : '_nobody_'}`,
    `• on ${inlineCode(w.target)} under rule ${inlineCode(w.rule)}, policy version ${inlineCode(w.policyVersion, 40)} (a policy change ends it)`,
    `• statements of these shapes only:\n${codeBlock(w.shapes.join('\n'), 900).text}`,
  ];
  return { type: 'section', block_id: 'writ_window', text: md(lines.join('\n')) };
}

/** The message for a request: `text` is the notification fallback, `blocks` the message. */
export function renderRequest(v: ApprovalView): { text: string; blocks: Block[] } {
  const r = v.request;
  const command = codeBlock(commandText(r.command), COMMAND_MAX);
  const fields: TextObject[] = [
    md(`*Requester*\n${inlineCode(r.requester.sub)}`),
    md(`*Acts for*\n${r.requester.actFor !== undefined ? inlineCode(r.requester.actFor) : '_nobody_'}`),
    md(`*Target*\n${inlineCode(r.target)}`),
    md(`*Rule*\n${inlineCode(r.rule)}`),
    md(
      `*Approvers*\n${r.approval.count} of ${r.approval.groups
        .slice(0, 10)
        .map((g) => inlineCode(g, 40))
        .join(', ')}`,
    ),
    md(`*Expires*\n${slackDate(r.expiresAt)}`),
  ];
  const blocks: Block[] = [
    { type: 'header', text: plain(plainText(`Approval requested: ${r.command.kind === 'sql' ? 'SQL' : 'shell'} on ${r.target}`, 150)) },
    { type: 'section', block_id: 'writ_who', fields },
    { type: 'section', block_id: 'writ_command', text: md(`*Command* (${r.command.kind})\n${command.text}`) },
  ];
  if (command.truncated || v.commandLength > commandText(r.command).length) {
    blocks.push({
      type: 'context',
      block_id: 'writ_truncated',
      elements: [md(`:warning: The command is ${v.commandLength.toLocaleString('en')} characters long and is cut here. Read it in full with ${inlineCode('writ pending')} before approving.`)],
    });
  }
  blocks.push(
    { type: 'section', block_id: 'writ_facts', text: md(`*What it does*\n${codeBlock(factsLines(r.facts).join('\n'), FACTS_MAX).text}`) },
    { type: 'section', block_id: 'writ_justification', text: md(`*Justification*\n${r.justification ? codeBlock(r.justification, JUSTIFICATION_MAX).text : '_none given_'}`) },
    {
      type: 'context',
      block_id: 'writ_ids',
      elements: [md(`Intent ${inlineCode(r.intentId, 130)} · session ${inlineCode(r.sessionId, 130)} · ${escapeSlackText(r.reasons.join('; ').slice(0, 500))}`)],
    },
  );
  const outcome = outcomeBlock(v);
  if (outcome) blocks.push({ type: 'divider' }, outcome);
  else {
    const window = windowBlock(r);
    if (window) blocks.push(window);
    blocks.push(
      {
        type: 'input',
        block_id: REASON_BLOCK,
        optional: true,
        label: plain('Reason (needed to deny)'),
        element: { type: 'plain_text_input', action_id: REASON_ACTION, multiline: true, max_length: 2_000 },
      },
      {
        type: 'actions',
        block_id: ACTIONS_BLOCK,
        elements: [
          { type: 'button', action_id: ACTION_APPROVE, style: 'primary', text: plain('Approve'), value: r.intentId },
          ...(window ? [{ type: 'button', action_id: ACTION_APPROVE_WINDOW, text: plain(plainText(`Approve with ${duration(r.windowScope!.maxSec)} window`, 75)), value: r.intentId }] : []),
          { type: 'button', action_id: ACTION_DENY, style: 'danger', text: plain('Deny'), value: r.intentId },
        ],
      },
    );
  }
  const recent = v.activity.slice(-9);
  if (recent.length > 0) blocks.push({ type: 'context', block_id: 'writ_activity', elements: recent.map((a) => md(activityLine(a))) });
  const status = v.outcome ? v.outcome.status : 'pending approval';
  return { text: `Writ: ${status}, intent ${escapeSlackText(r.intentId)} on ${escapeSlackText(r.target)}`, blocks };
}
