// Small network and naming utilities for tests.
import { randomBytes } from 'node:crypto';
import { createConnection, createServer } from 'node:net';

/**
 * A TCP port on 127.0.0.1 that was free a moment ago (listen(0), read, close).
 * Another process may grab it before you bind; prefer letting a server pick its own port.
 */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error('freePort: no TCP address'));
        return;
      }
      server.close(() => resolve(address.port));
    });
  });
}

/** `count` distinct free ports, all held open together so none repeats. */
export async function freePorts(count: number, host = '127.0.0.1'): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () => {
      return new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
        const server = createServer();
        server.unref();
        server.once('error', reject);
        server.listen(0, host, () => resolve(server));
      });
    }),
  );
  const ports = servers.map((s) => {
    const address = s.address();
    if (address === null || typeof address === 'string') throw new Error('freePorts: no TCP address');
    return address.port;
  });
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  return ports;
}

/**
 * `prefix` + `_` + 10 random hex characters, e.g. `orders_3f9a0b2c1d`.
 * Only [a-z0-9_] is added, so with a lowercase prefix the result is valid as a
 * stream name, subject token, database or role name (unquoted).
 */
export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(5).toString('hex')}`;
}

/**
 * Connects to a TCP port and resolves with the first bytes the server sends:
 * undefined when the connection fails, an empty buffer when it is accepted but
 * nothing arrives within `timeoutMs` (or the server hangs up).
 */
export function probeTcp(port: number, host = '127.0.0.1', timeoutMs = 1000): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host });
    const finish = (value: Buffer | undefined): void => {
      socket.destroy();
      resolve(value);
    };
    socket.setTimeout(timeoutMs, () => finish(Buffer.alloc(0)));
    socket.once('data', (data) => finish(data));
    socket.once('error', () => finish(undefined));
    socket.once('close', () => finish(Buffer.alloc(0)));
  });
}
