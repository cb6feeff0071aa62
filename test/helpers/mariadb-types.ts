// Public types of the MariaDB helpers.

export interface StartMariadbOptions {
  /** How long to wait for the server to accept connections. Default 60 000 ms. */
  startTimeoutMs?: number;
  /** Extra `--name=value` server options, appended after the helper's own. */
  extraArgs?: readonly string[];
}

export interface MariadbServerHandle {
  /** Always `127.0.0.1`. */
  host: string;
  port: number;
  /** The server's own Unix socket, inside its temp directory; root logs in through it without a password. */
  socketPath: string;
  /** Process id of mariadbd. */
  pid: number;
  /** `SELECT VERSION()`, e.g. `10.11.19-MariaDB-0+deb12u1`. */
  version: string;
  /** The error log (mariadbd's `--log-error`). Removed by stop(). */
  logFile: string;
  /** SIGTERM, wait for exit (SIGKILL after 30 s), remove the data directory. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL without cleanup, for fault tests. */
  kill9(): void;
}

/** Login credentials of one generated user (`user`@`127.0.0.1`). */
interface MariadbUserCredentials {
  /** User name, e.g. `writ_ro_3f9a0b2c1d`. */
  user: string;
  /** Random URL-safe password. */
  password: string;
}

export interface CreateTestMariadbOptions {
  /** The server to create the database on. Default: one private server per test process, started on first use. */
  server?: MariadbServerHandle;
  /** Prefix of the database name. Default `writ_test`. */
  prefix?: string;
}

export interface TestMariadb {
  /** Always `127.0.0.1`. */
  host: string;
  port: number;
  /** Database name, e.g. `writ_test_3f9a0b2c1d`. */
  database: string;
  server: MariadbServerHandle;
  /**
   * Least-privilege users, as production uses them, both `@127.0.0.1`. `read`: SELECT and
   * SHOW VIEW on the database. `write`: SELECT, SHOW VIEW, INSERT, UPDATE, DELETE on it.
   * Neither can create objects, read files or see other databases.
   */
  users: { read: MariadbUserCredentials; write: MariadbUserCredentials };
  /** Runs statements one by one as root (through the socket), in this database; returns each result. */
  admin(statements: readonly string[]): Promise<unknown[]>;
  /** Drops the database and both users. Idempotent. */
  drop(): Promise<void>;
}
