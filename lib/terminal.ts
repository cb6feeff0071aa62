/**
 * Text for a human's terminal. Whatever Writ prints that came from elsewhere (result values,
 * column names, database errors, session ids, requesters, commands) may carry escape
 * sequences that redraw the screen (`\x1b[1A` turning `BROKEN:` into `OK:`), set the window
 * title, or bidi overrides that show a command in another order than it runs. One function
 * makes every such character visible; everything the CLI prints goes through it.
 */

/**
 * C0 controls but tab and newline, DEL, C1 controls (0x80–0x9f: 0x9b is a one-byte CSI), the
 * bidi embeddings, overrides and isolates, and the invisible format characters that can hide
 * or reorder text.
 */
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2069\ufeff]/g;

/**
 * Replaces each unsafe character with its `\uXXXX` escape: visible to a reader, and still valid
 * JSON where the text is JSON (a raw control character can only occur inside a JSON string,
 * where `\uXXXX` means the same character).
 */
export function escapeForTerminal(s: string): string {
  return s.replace(UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
