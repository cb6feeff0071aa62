import { defineConfig } from 'vitest/config';

/**
 * Three projects: `main` (unit, integration, end-to-end, adversarial), `faults` (kills and
 * restarts real processes; slower) and `cluster` (a 3-node nats-server cluster with 2,000
 * intents in flight while a member is killed). `npm test` runs `main` and `faults` together,
 * then `cluster` on its own: its kills are timed against load, and on a 2-core machine another
 * test file beside it doubles its run time. `vitest run --project <name>` runs one.
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
        test: { name: 'main', include: ['**/*.test.ts'], exclude: ['node_modules/**', '.data/**', 'dist/**', 'test/faults/**'] },
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
