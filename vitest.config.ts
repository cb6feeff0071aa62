import { defineConfig } from 'vitest/config';

/**
 * Two projects: `main` (unit, integration, end-to-end, adversarial) and `faults` (kills and
 * restarts real processes; slower). `npm test` runs both; `vitest run --project main` or
 * `--project faults` runs one.
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
        test: { name: 'faults', include: ['test/faults/**/*.test.ts'], testTimeout: 180_000, hookTimeout: 120_000 },
      },
    ],
  },
});
