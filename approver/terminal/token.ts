/**
 * Where the terminal approver gets a token for each vote. The broker spends a human's approver
 * token on its first vote (docs/security.md, "Votes"), so a terminal that votes more than once
 * needs a new token every time: a command that prints one (`writ login --print --fresh` after a
 * `writ login`, `writ token --approver …` on a local stack, a provider's own CLI), run once per
 * vote, the way git runs a credential helper.
 */
import { execFile } from 'node:child_process';
import { WritError } from '../../schemas/index.ts';

/** Longest a token command may take, ms: a device or browser prompt has no place in it. */
const TOKEN_COMMAND_TIMEOUT_MS = 30_000;

/**
 * A token source that runs `command` with the shell on each call and returns what it prints
 * (trimmed). Its stderr passes through to the operator's; a failure is WRIT_TOKEN_MISSING and
 * never shows the command's output (it may hold a token).
 */
export function commandTokenSource(command: string): () => Promise<string> {
  return () =>
    new Promise((resolve, reject) => {
      execFile('/bin/sh', ['-c', command], { timeout: TOKEN_COMMAND_TIMEOUT_MS, maxBuffer: 64 * 1024, encoding: 'utf8' }, (e, stdout) => {
        const token = stdout.trim();
        if (e || !token || /\s/.test(token)) {
          reject(new WritError('WRIT_TOKEN_MISSING', `the token command ${e ? `failed (${e.code ?? e.signal ?? 'error'})` : 'printed no single token'}`));
          return;
        }
        resolve(token);
      });
    });
}
