// Public types of the PostgreSQL helpers.

/** Which PostgreSQL server the throwaway database lives on. */
type PgServerChoice = 'auto' | 'shared' | 'private';

export interface CreateTestDatabaseOptions {
  /**
   * `shared`: the running server at 127.0.0.1:5432 (trust auth, user postgres);
   * `private`: a cluster this process starts with initdb/pg_ctl (one per process, stopped at exit);
   * `auto`: shared when reachable, else private. Default `auto`.
   */
  server?: PgServerChoice;
  /** Prefix of the database name. Default `writ_test`. */
  prefix?: string;
}

/** Login credentials of one generated role. */
interface PgRoleCredentials {
  /** Role name, e.g. `writ_ro_3f9a0b2c1d`. */
  user: string;
  /** Random URL-safe password (the server may not check it under trust auth). */
  password: string;
}

/** Access modes for connectionString(). */
export type PgAccessMode = 'admin' | 'read' | 'write';

export interface TestDatabase {
  /** Always `127.0.0.1`. */
  host: string;
  port: number;
  /** Database name, e.g. `writ_test_3f9a0b2c1d`. */
  database: string;
  /** Which server it was created on. */
  server: 'shared' | 'private';
  /**
   * Connection URL for the test owner: the `postgres` superuser on this database.
   * Create tables through it: the generated roles' default privileges apply to its objects.
   */
  adminUrl: string;
  /**
   * Least-privilege roles, as production uses them. `read`: CONNECT, USAGE on public,
   * SELECT on all tables (present and future). `write`: the same plus INSERT, UPDATE,
   * DELETE, and USAGE/SELECT on sequences. Neither can create tables or other objects.
   */
  roles: { read: PgRoleCredentials; write: PgRoleCredentials };
  /** `postgresql://user:password@127.0.0.1:PORT/DATABASE` for the given mode. */
  connectionString(mode: PgAccessMode): string;
  /** Drops the database (forcing sessions out) and both roles. Idempotent. */
  drop(): Promise<void>;
}
