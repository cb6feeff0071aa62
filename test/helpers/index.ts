// Test helpers: real servers on random loopback ports, disposed after each test file.
// This is the only module tests import; the files next to it are internals.
export { startNats, startNatsCluster } from './nats.ts';
export type { NatsClusterHandle, NatsServerHandle } from './nats-types.ts';
export { freePort, uniqueName } from './net.ts';
export { createTestDatabase } from './postgres.ts';
export type { TestDatabase } from './postgres-types.ts';
export { createTestMariadb, startMariadb } from './mariadb.ts';
export type { MariadbServerHandle, TestMariadb } from './mariadb-types.ts';
export { startSshd } from './sshd.ts';
export type { SshdHandle } from './sshd-types.ts';
export { raceProcesses } from './race.ts';
export { interceptRequests } from './intercept.ts';
export { ed25519Pair } from './keys.ts';
export { runSql, failureOf, pgTarget, signalBackend } from './sql-worker.ts';
