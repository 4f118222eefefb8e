import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['daemon/src/**/*.test.ts', 'client-sdk/src/**/*.test.ts', 'daemon/test/**/*.test.ts', 'test/**/*.test.ts'],
    globalSetup: ['daemon/test/helpers/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    reporters: ['default', './scripts/summary-reporter.ts'],
  },
});
