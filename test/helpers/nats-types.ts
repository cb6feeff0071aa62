// Public types of the nats-server helpers.

/** Route settings that make a server a cluster member. */
interface NatsClusterConfig {
  /** Cluster name, identical on every member. */
  name: string;
  /** Route listen port on 127.0.0.1 (pick it with freePort()). */
  port: number;
  /** Route URLs of the other members, e.g. `nats-route://127.0.0.1:6222`. May include this server's own. */
  routes: readonly string[];
}

export interface StartNatsOptions {
  /** Enable JetStream with a temporary store dir. Default true. */
  jetstream?: boolean;
  /** GOMAXPROCS in the child's environment. Default: inherited (Go uses all cores). */
  gomaxprocs?: number;
  /** Appended verbatim to the generated config file, e.g. `accounts { … }` or `authorization { … }`. */
  extraConfig?: string;
  /** Make the server a cluster member (used by startNatsCluster). Default: standalone. */
  cluster?: NatsClusterConfig;
  /** `server_name`; must be unique within a JetStream cluster. Default: a uniqueName('writ'). */
  serverName?: string;
  /**
   * Use this JetStream store dir, e.g. one you made with mkdtemp, to start a second server on
   * the same data after kill9() and check recovery. It belongs to the caller: stop() leaves it.
   * (A default store dir lives inside the handle's temp dir, which that handle's stop() removes.)
   * Default: a fresh temp dir, removed by stop().
   */
  storeDir?: string;
  /**
   * Client port on 127.0.0.1. Pass a stopped (or kill9'd) server's `port` together with its
   * caller-owned `storeDir` to restart it in place: its clients reconnect to the same URL and
   * find the same JetStream data. Default: a port the server picks (`listen: 127.0.0.1:-1`).
   */
  port?: number;
  /** How long to wait for the ports file. Default 20 000 ms. */
  startTimeoutMs?: number;
  /**
   * Added to the child's environment, e.g. the `WRIT_<ROLE>_PASSWORD` variables that
   * deploy/nats/accounts.conf reads. Default: none (the test process's environment only).
   */
  env?: Readonly<Record<string, string>>;
}

export interface NatsServerHandle {
  /** Client URL, `nats://127.0.0.1:PORT`. */
  url: string;
  /** Client port chosen by the server (`listen: 127.0.0.1:-1`). */
  port: number;
  /** Process id of nats-server. */
  pid: number;
  /** JetStream store dir (exists even when JetStream is off). */
  storeDir: string;
  /** File receiving the server's stdout and stderr. Removed by stop(). */
  logFile: string;
  /** Path of the generated config file. */
  configFile: string;
  /** SIGTERM, wait for exit (SIGKILL after 10 s), remove temp dirs. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL at once, leaving the files in place for inspection or a restart; stop() still cleans up. */
  kill9(): void;
}

export interface NatsClusterHandle {
  /** Client URLs of all members, in server order. A member keeps its URL across restart(). */
  urls: string[];
  /**
   * The member servers; kill9 (or stop) one to test failover. restart(i) replaces entry `i`
   * with the new handle, so read `servers[i]` again after it.
   */
  servers: NatsServerHandle[];
  /** `server_name` of each member, in server order (what stream info's `cluster.leader` names). */
  serverNames: string[];
  /**
   * Brings member `i` back after kill9() or stop(): same client port, route port, name and
   * JetStream store, after `downMs` (default 0). Resolves with its new handle once it listens;
   * catching up on the streams' data happens afterwards, in the background, as in production.
   */
  restart(i: number, downMs?: number): Promise<NatsServerHandle>;
  /** Index of the member with this `server_name`, or -1. */
  indexOf(serverName: string): number;
  /** Stops every member and removes the stores. Idempotent. */
  stop(): Promise<void>;
}

export interface StartNatsClusterOptions {
  /** GOMAXPROCS for every member. Default: inherited. */
  gomaxprocs?: number;
  /** Appended to every member's config file, e.g. deploy/nats/accounts.conf. */
  extraConfig?: string;
  /** Added to every member's environment (see StartNatsOptions.env). */
  env?: Readonly<Record<string, string>>;
  /** User and password for the readiness check, when `extraConfig` requires authentication (a user with JetStream rights). */
  auth?: { user: string; pass: string };
  /** How long to wait for a stream with `n` replicas to be accepted. Default 45 000 ms. */
  readyTimeoutMs?: number;
}
