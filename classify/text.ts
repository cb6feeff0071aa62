/** Text helpers shared by the classifiers. */

const MAX_MESSAGE = 200;
const MAX_QUOTED = 40;

/**
 * Makes a parser message safe to show and log: control characters become
 * spaces (no terminal escapes, no forged log lines), a quoted excerpt of the
 * input is cut short, and the whole message is capped.
 */
export function safeMessage(message: string): string {
  let s = message.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, ' ');
  s = s.replace(/"([^"]{40,})"/g, (_, q: string) => `"${q.slice(0, MAX_QUOTED)}…"`);
  return s.length > MAX_MESSAGE ? `${s.slice(0, MAX_MESSAGE)}…` : s;
}
