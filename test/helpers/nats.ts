// Starts real nats-server processes on random loopback ports, the way nats.js's
// test launcher does: `listen: 127.0.0.1:-1`, then read the port from the ports file.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { freePorts, probeTcp, uniqueName } from './net.ts';
import {
  makeTempDir,
  onProcessExit,
  pollUntil,
  removeDir,
  requireBinary,
  signal,
  sleep,
  spawnLogged,
  terminate,
  type SpawnedServer,
} from './process.ts';
import type {
  NatsClusterHandle,
  NatsServerHandle,
  StartNatsClusterOptions,
  StartNatsOptions,
} from './nats-types.ts';

/** Quotes a value for the NATS config format (its strings accept JSON escapes). */
const q = (value: string): string => JSON.stringify(value);

function buildConfig(dir: string, storeDir: string, serverName: string, opts: StartNatsOptions): string {
  const lines = [
    `server_name: ${q(serverName)}`,
    // A fixed port lets a restarted server take the place of a stopped one (clients reconnect to the same URL).
    `listen: 127.0.0.1:${opts.port ?? -1}`,
    `ports_file_dir: ${q(dir)}`,
  ];
  if (opts.jetstream ?? true) lines.push(`jetstream { store_dir: ${q(storeDir)} }`);
  if (opts.cluster !== undefined) {
    const routes = opts.cluster.routes.map(q).join(', ');
    lines.push(
      `cluster { name: ${q(opts.cluster.name)}, listen: ${q(`127.0.0.1:${opts.cluster.port}`)}, routes: [${routes}] }`,
    );
  }
  if (opts.extraConfig !== undefined) lines.push(opts.extraConfig);
  return `${lines.join('\n')}\n`;
}

/** The client port from `nats-server_<pid>.ports` ({"nats":["nats://127.0.0.1:PORT"],…}), once written. */
function readPortsFile(dir: string, pid: number): number | undefined {
  const name = readdirSync(dir).find((f) => f === `nats-server_${pid}.ports`);
  if (name === undefined) return undefined;
  try {
    const ports = JSON.parse(readFileSync(join(dir, name), 'utf8')) as { nats?: string[] };
    const first = ports.nats?.[0];
    return first === undefined ? undefined : Number(new URL(first).port);
  } catch {
    return undefined; // written but not complete yet
  }
}

/** Starts one nats-server; rejects with its log tail if it exits before it is listening. */
export async function startNats(opts: StartNatsOptions = {}): Promise<NatsServerHandle> {
  const bin = requireBinary('nats-server', 'nats-server');
  const dir = makeTempDir('nats');
  const ownsStore = opts.storeDir === undefined;
  const storeDir = opts.storeDir ?? join(dir, 'jetstream');
  mkdirSync(storeDir, { recursive: true });
  const logFile = join(dir, 'nats-server.log');
  const configFile = join(dir, 'nats-server.conf');
  writeFileSync(configFile, buildConfig(dir, storeDir, opts.serverName ?? uniqueName('writ'), opts));

  const env = { ...process.env };
  if (opts.gomaxprocs !== undefined) env['GOMAXPROCS'] = String(opts.gomaxprocs);

  let server: SpawnedServer;
  try {
    server = await spawnLogged(bin, { args: ['-c', configFile], logFile, env });
  } catch (err) {
    removeDir(dir);
    throw err;
  }
  const cleanupFiles = (): void => {
    removeDir(dir);
    if (ownsStore) removeDir(storeDir);
  };
  const unregister = onProcessExit(() => {
    signal(server.pid, 'SIGKILL');
    cleanupFiles();
  });

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await terminate(server);
      cleanupFiles();
      unregister();
    })();
    return stopping;
  };

  try {
    const timeoutMs = opts.startTimeoutMs ?? 20_000;
    const port = await pollUntil('nats-server ports file', () => readPortsFile(dir, server.pid), {
      server,
      logFile,
      timeoutMs,
    });
    // The ports file is written once listeners are up; a connect proves it cheaply.
    await pollUntil('nats-server client port', async () => ((await probeTcp(port)) ? true : undefined), {
      server,
      logFile,
      timeoutMs,
    });
    return {
      url: `nats://127.0.0.1:${port}`,
      port,
      pid: server.pid,
      storeDir,
      logFile,
      configFile,
      stop,
      kill9: () => signal(server.pid, 'SIGKILL'),
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * Starts `n` JetStream servers routed to each other on free loopback ports and
 * waits until the cluster accepts a stream with `min(n, 5)` replicas.
 */
export async function startNatsCluster(
  n = 3,
  opts: StartNatsClusterOptions = {},
): Promise<NatsClusterHandle> {
  const clusterName = uniqueName('writ_cluster');
  const routePorts = await freePorts(n);
  const routes = routePorts.map((p) => `nats-route://127.0.0.1:${p}`);
  const settled = await Promise.allSettled(
    routePorts.map((port, i) =>
      startNats({
        jetstream: true,
        serverName: `${clusterName}_n${i + 1}`,
        cluster: { name: clusterName, port, routes: routes.filter((_, j) => j !== i) },
        ...(opts.gomaxprocs === undefined ? {} : { gomaxprocs: opts.gomaxprocs }),
        ...(opts.extraConfig === undefined ? {} : { extraConfig: opts.extraConfig }),
      }),
    ),
  );
  const servers = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= Promise.all(servers.map((s) => s.stop())).then(() => undefined);
    return stopping;
  };
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) {
    await stop();
    throw failed.reason;
  }
  const urls = servers.map((s) => s.url);
  try {
    await waitForReplicatedStream(urls, Math.min(n, 5), opts.readyTimeoutMs ?? 45_000);
  } catch (err) {
    await stop();
    const logs = servers.map((s) => s.logFile).join(', ');
    throw new Error(`${(err as Error).message} (server logs: ${logs})`, { cause: err });
  }
  return { urls, servers, stop };
}

/** Creates and deletes a throwaway R`replicas` stream; retries while the meta leader is being elected. */
async function waitForReplicatedStream(urls: string[], replicas: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  const nc = await connect({ servers: urls, reconnect: true });
  try {
    while (Date.now() < deadline) {
      try {
        const jsm = await jetstreamManager(nc, { timeout: 2_000 });
        const name = uniqueName('writ_ready');
        await jsm.streams.add({ name, subjects: [`${name}.>`], num_replicas: replicas });
        await jsm.streams.delete(name);
        return;
      } catch (err) {
        lastError = err;
        await sleep(250);
      }
    }
  } finally {
    await nc.close();
  }
  throw new Error(
    `NATS cluster did not accept an R${replicas} stream within ${timeoutMs} ms: ${String(lastError)}`,
    { cause: lastError },
  );
}
