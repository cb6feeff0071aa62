/**
 * Where a Writ installation on this machine keeps its data: keys, the local nats-server's store,
 * URL and role passwords, `writ login` tokens. Never the current directory, so every command finds
 * the same stack from anywhere.
 */
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';

/**
 * `WRIT_HOME`, else `WRIT_DATA_DIR` (its earlier name), else the user's data directory:
 * `$XDG_DATA_HOME/writ` (default `~/.local/share/writ`) on Linux and other Unixes,
 * `~/Library/Application Support/writ` on macOS, `%LOCALAPPDATA%\writ` on Windows.
 */
export function writHome(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string {
  const explicit = env.WRIT_HOME || env.WRIT_DATA_DIR;
  if (explicit) return resolve(explicit);
  const home = env.HOME || homedir();
  if (platform === 'darwin') return join(home, 'Library', 'Application Support', 'writ');
  if (platform === 'win32') return join(env.LOCALAPPDATA || join(home, 'AppData', 'Local'), 'writ');
  // XDG: a relative XDG_DATA_HOME is invalid and ignored.
  const xdg = env.XDG_DATA_HOME && isAbsolute(env.XDG_DATA_HOME) ? env.XDG_DATA_HOME : join(home, '.local', 'share');
  return join(xdg, 'writ');
}

/** The prefix that places a config path inside the data directory (`$WRIT_HOME/grant-key.pem`). */
export const WRIT_HOME_PREFIX = '$WRIT_HOME';

/**
 * A path from a config file made absolute: `$WRIT_HOME/…` inside the data directory, any other
 * relative path against the config file's folder.
 */
export function configPath(p: string, baseDir: string, home: () => string = writHome): string {
  if (p === WRIT_HOME_PREFIX) return home();
  if (p.startsWith(`${WRIT_HOME_PREFIX}/`)) return join(home(), p.slice(WRIT_HOME_PREFIX.length + 1));
  return isAbsolute(p) ? p : resolve(baseDir, p);
}
