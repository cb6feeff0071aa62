/**
 * Making agent text inert in Slack mrkdwn. Everything an agent controls (command,
 * justification, facts, names) goes through here before it reaches a block: `&`, `<`,
 * `>` are escaped, free text is confined to code blocks that it cannot close, short
 * names to inline code, invisible and direction-changing characters are made visible,
 * and every text is capped. Only the bot's own words are formatted.
 */
import { revealInvisible } from '../text.ts';

export { revealInvisible };

/**
 * Escapes the three characters Slack's mrkdwn parser treats as control: unescaped
 * `<!channel>` or `<url|label>` would otherwise render as pings and links rather than
 * literal text.
 */
export function escapeSlackText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Cuts escaped text at `max` characters without splitting an entity or a surrogate pair. */
function cutEscaped(s: string, max: number): string {
  if (s.length <= max) return s;
  let out = s.slice(0, max).replace(/&[a-z]*$/, '');
  if (/[\uD800-\uDBFF]$/.test(out)) out = out.slice(0, -1);
  return out;
}

export interface Capped {
  /** Slack mrkdwn, safe to place in a text object. */
  text: string;
  /** True when part of the input is not shown. */
  truncated: boolean;
}

/**
 * A fenced code block holding `s` literally: escaped, with backtick runs broken by a
 * zero-width space so the text cannot close the fence and continue as formatted text.
 * At most `max` characters of mrkdwn (fence included).
 */
export function codeBlock(s: string, max: number): Capped {
  const body = escapeSlackText(revealInvisible(s)).replace(/`(?=`)/g, '`\u200B');
  const room = Math.max(1, max - 8);
  const cut = cutEscaped(body, room);
  // Newlines on both sides keep a leading or trailing backtick away from the fence.
  return { text: `\`\`\`\n${cut.length > 0 ? cut : ' '}\n\`\`\``, truncated: cut.length < body.length };
}

/** A short name as inline code on one line: escaped, backticks replaced (inline code cannot hold one), capped. */
export function inlineCode(s: string, max = 80): string {
  const one = revealInvisible(s.replace(/\r\n|\r|\n/g, ' ')).replace(/`/g, 'ˋ');
  const chars = Array.from(one);
  const shown = chars.length > max ? `${chars.slice(0, max).join('')}…` : one;
  return shown.length > 0 ? `\`${escapeSlackText(shown)}\`` : '` `';
}

/** Plain text for a `plain_text` object (no parsing there, but capped and made visible). */
export function plainText(s: string, max: number): string {
  const one = revealInvisible(s.replace(/\s+/g, ' '));
  const chars = Array.from(one);
  return chars.length > max ? `${chars.slice(0, max - 1).join('')}…` : one;
}
