// Starts real nats-server processes on random loopback ports, the way nats.js's
// test launcher does: `listen: 127.0.0.1:-1`, then read the port from the ports file.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { freePorts, probeTcp, uniqueName } from './net.ts';
import { makeTempDir, onProcessExit, pollUntil, removeDir, requireBinary, signal, sleep, spawnLogged, terminate, type SpawnedServer } from './process.ts';
import type { NatsClusterHandle, NatsServerHandle, StartNatsClusterOptions, StartNatsOptions } from './nats-types.ts';

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
    lines.push(`cluster { name: ${q(opts.cluster.name)}, listen: ${q(`127.0.0.1:${opts.cluster.port}`)}, routes: [${routes}] }`);
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

  const env = { ...process.env, ...(opts.env ?? {}) };
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
 * waits until the cluster accepts a stream with `min(n, 5)` replicas. Each member keeps
 * its client port, route port, name and store for the cluster's life, so `restart(i)`
 * brings a stopped or kill9'd member back in place (its clients reconnect to the same URL).
 */
export async function startNatsCluster(n = 3, opts: StartNatsClusterOptions = {}): Promise<NatsClusterHandle> {
  const clusterName = uniqueName('writ_cluster');
  const routePorts = await freePorts(n);
  const routes = routePorts.map((p) => `nats-route://127.0.0.1:${p}`);
  // Stores belong to the cluster, not to a member's handle: a restart finds its data again.
  const root = makeTempDir('nats-cluster');
  const serverNames = routePorts.map((_, i) => `${clusterName}_n${i + 1}`);
  const memberOptions = (i: number, port?: number): StartNatsOptions => ({
    jetstream: true,
    serverName: serverNames[i]!,
    storeDir: join(root, `n${i + 1}`),
    cluster: { name: clusterName, port: routePorts[i]!, routes: routes.filter((_, j) => j !== i) },
    ...(port === undefined ? {} : { port }),
    ...(opts.gomaxprocs === undefined ? {} : { gomaxprocs: opts.gomaxprocs }),
    ...(opts.extraConfig === undefined ? {} : { extraConfig: opts.extraConfig }),
    ...(opts.env === undefined ? {} : { env: opts.env }),
  });
  for (let i = 0; i < n; i++) mkdirSync(join(root, `n${i + 1}`), { recursive: true });
  const settled = await Promise.allSettled(routePorts.map((_, i) => startNats(memberOptions(i))));
  const servers = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const unregister = onProcessExit(() => removeDir(root));
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= Promise.all(servers.map((s) => s.stop())).then(() => {
      removeDir(root);
      unregister();
    });
    return stopping;
  };
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) {
    await stop();
    throw failed.reason;
  }
  const urls = servers.map((s) => s.url);
  const connectOpts = { servers: urls, ...(opts.auth === undefined ? {} : { user: opts.auth.user, pass: opts.auth.pass }) };
  try {
    await waitForReplicatedStream(connectOpts, Math.min(n, 5), opts.readyTimeoutMs ?? 45_000);
  } catch (err) {
    await stop();
    const logs = servers.map((s) => s.logFile).join(', ');
    throw new Error(`${(err as Error).message} (server logs: ${logs})`, { cause: err });
  }
  const restart = async (i: number, downMs = 0): Promise<NatsServerHandle> => {
    const old = servers[i];
    if (old === undefined) throw new Error(`no cluster member ${i}`);
    // stop() of a kill9'd member only reaps it and removes its config dir; the store stays.
    await old.stop();
    if (downMs > 0) await sleep(downMs);
    let lastErr: unknown;
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        const fresh = await startNats(memberOptions(i, old.port));
        servers[i] = fresh;
        return fresh;
      } catch (err) {
        lastErr = err; // the port may not be free again yet
        await sleep(250);
      }
    }
    throw lastErr;
  };
  return {
    urls,
    servers,
    serverNames,
    restart,
    indexOf: (serverName: string) => serverNames.indexOf(serverName),
    stop,
  };
}

/** Creates and deletes a throwaway R`replicas` stream; retries while the meta leader is being elected. */
async function waitForReplicatedStream(connectOpts: { servers: string[]; user?: string; pass?: string }, replicas: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  const nc = await connect({ ...connectOpts, reconnect: true });
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
  throw new Error(`NATS cluster did not accept an R${replicas} stream within ${timeoutMs} ms: ${String(lastError)}`, { cause: lastError });
}
