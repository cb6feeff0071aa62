/**
 * Files that processes starting together may all try to create (keys, the development
 * issuer): each is written whole or not at all, and the first creator wins for everyone.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, openSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';

/**
 * Creates `file` holding `data`, only if it does not exist yet, atomically: the data goes to
 * a private temporary file beside it (written and fsynced), which is then hard-linked into
 * place. link() fails with EEXIST when another process got there first, so a reader never
 * sees the file empty or half-written, and a second creator never replaces the first's. True
 * when this call created it.
 */
export function writeFileOnce(file: string, data: string, mode: number): boolean {
  const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const fd = openSync(tmp, 'wx', mode);
  try {
    try {
      writeSync(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    linkSync(tmp, file);
    return true;
  } catch (e) {
    if ((e as { code?: string }).code === 'EEXIST') return false;
    throw e;
  } finally {
    rmSync(tmp, { force: true });
  }
}

/** Writes `file` whole or not at all (temporary file, then rename over it). */
export function replaceFile(file: string, data: string, mode: number): void {
  const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  writeFileSync(tmp, data, { mode, flag: 'wx' });
  try {
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}
