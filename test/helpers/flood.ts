import { Worker } from 'node:worker_threads';

export interface Flood {
  /** Stops the flood; resolves with how many messages it sent. */
  stop(): Promise<number>;
}

/** Publishes `bodies` in turn on `subject` from a thread of its own (flood-worker.mjs): `batch` messages, then a pause of `pauseMs` (0: none). */
export function startFlood(url: string, subject: string, bodies: string[], o: { batch?: number; pauseMs?: number; reply?: string } = {}): Flood {
  const w = new Worker(new URL('./flood-worker.mjs', import.meta.url), {
    workerData: { url, subject, bodies, batch: o.batch ?? 200, pauseMs: o.pauseMs ?? 0, reply: o.reply ?? '_INBOX.flood.nowhere' },
  });
  const done = new Promise<number>((resolve, reject) => {
    w.once('message', (m: { sent: number }) => resolve(m.sent));
    w.once('error', reject);
  });
  return {
    async stop() {
      w.postMessage('stop');
      const sent = await done;
      await w.terminate();
      return sent;
    },
  };
}
