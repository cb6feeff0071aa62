import { defineConfig } from 'vitest/config';

/**
 * Test files whose subject is process-wide state: what a module loads lazily, a global tracer or
 * context manager, a patch of nats.js's exports, environment variables. Each runs in a module
 * graph of its own (`isolated`); everything else shares one per worker (`main`).
 */
const ownProcess = [
  'classify/lazy-mysql.test.ts',
  'classify/runtime.test.ts',
  'lib/log-lazy.test.ts',
  'lib/nats-request.test.ts',
  'lib/nats.test.ts',
  'lib/seal.test.ts',
  'lib/tracing.test.ts',
  'test/observability.test.ts',
  'test/observability-stack.test.ts',
];

/**
 * Four projects: `main` (unit, integration, end-to-end, adversarial), `isolated` (the files
 * above), `faults` (kills and restarts real processes; slower) and `cluster` (a 3-node
 * nats-server cluster with 2,000 intents in flight while a member is killed). `npm test` runs
 * `main`, `isolated` and `faults` together, then `cluster` on its own: its kills are timed
 * against load, and on a 2-core machine another test file beside it doubles its run time.
 * `vitest run --project <name>` runs one.
 *
 * `main` runs without isolation: a fresh module graph per file cost about 0.7 s of imports per
 * file (46 s of 60 for the 64 quickest files), a third of the suite's time on two cores. Its files
 * start their own servers and stop them, and change no process-wide state (the list above does).
 */
export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration files start their own servers; two workers keep a 2-core machine responsive.
    maxWorkers: 2,
    projects: [
      {
        extends: true,
        test: {
          name: 'main',
          include: ['**/*.test.ts'],
          exclude: ['node_modules/**', '.data/**', 'dist/**', 'test/faults/**', ...ownProcess],
          isolate: false,
        },
      },
      {
        extends: true,
        test: { name: 'isolated', include: ownProcess },
      },
      {
        extends: true,
        test: { name: 'faults', include: ['test/faults/**/*.test.ts'], exclude: ['test/faults/cluster.test.ts'], testTimeout: 180_000, hookTimeout: 120_000 },
      },
      {
        extends: true,
        test: { name: 'cluster', include: ['test/faults/cluster.test.ts'], testTimeout: 300_000, hookTimeout: 120_000 },
      },
    ],
  },
});
