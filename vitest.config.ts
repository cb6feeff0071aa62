import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['node_modules/**', '.data/**'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration files start their own servers; two workers keep a 2-core machine responsive.
    maxWorkers: 2,
  },
});
