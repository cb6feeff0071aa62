// Test helpers: real servers on random loopback ports, disposed after each test file.
// This is the only module tests import; the files next to it are internals.
export { startNats, startNatsCluster } from './nats.ts';
export type { NatsClusterConfig, NatsClusterHandle, NatsServerHandle, StartNatsClusterOptions, StartNatsOptions } from './nats-types.ts';
export { freePort, uniqueName } from './net.ts';
export { createTestDatabase } from './postgres.ts';
export type { CreateTestDatabaseOptions, PgAccessMode, PgRoleCredentials, PgServerChoice, TestDatabase } from './postgres-types.ts';
export { createTestMariadb, startMariadb } from './mariadb.ts';
export type { CreateTestMariadbOptions, MariadbServerHandle, MariadbUserCredentials, StartMariadbOptions, TestMariadb } from './mariadb-types.ts';
export { startSshd } from './sshd.ts';
export type { SshdHandle, StartSshdOptions } from './sshd-types.ts';
