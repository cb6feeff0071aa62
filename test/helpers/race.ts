/**
 * Real processes racing over shared files, since one process cannot race itself: `procs`
 * children each run `body` for `rounds` rounds, every child starting a round at the same
 * instant (rounds `roundMs` apart, from `startAt`). The body is ESM with `mod` (the module at
 * `modulePath`), `round` and `dir` in scope; what it prints is returned per child, and a
 * thrown error is printed as `error <round> <message>`.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export async function raceProcesses(o: { modulePath: string; dir: string; body: string; procs: number; rounds: number; roundMs: number; startAt: number }): Promise<string[][]> {
  const script = join(o.dir, `child-${Math.random().toString(36).slice(2)}.mts`);
  writeFileSync(
    script,
    `import * as mod from ${JSON.stringify(o.modulePath)};
const dir = ${JSON.stringify(o.dir)};
for (let round = 0; round < ${o.rounds}; round++) {
  const at = ${o.startAt} + round * ${o.roundMs};
  while (Date.now() < at) {}
  try {
    ${o.body}
  } catch (e) {
    console.log('error ' + round + ' ' + (e as Error).message.split('\\n')[0]);
  }
}
`,
  );
  return Promise.all(
    Array.from({ length: o.procs }, () => {
      const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (b: Buffer) => (out += b.toString()));
      child.stderr.on('data', (b: Buffer) => (err += b.toString()));
      return new Promise<string[]>((resolve, reject) => child.on('exit', (code) => (code === 0 ? resolve(out.trim().split('\n')) : reject(new Error(`child exited ${code}: ${err.slice(0, 2000)}`)))));
    }),
  );
}
