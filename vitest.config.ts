import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

/**
 * Test files at once. Most of the suite waits on the engine, on git and on timers, not on the CPU:
 * vitest's default (cores - 1) ran one file at a time on a 2-core machine. Every test is written to
 * pass on a busy machine (deadlines are for hangs), so a few files share the cores.
 * BERTH_TEST_WORKERS overrides.
 */
const workers = Number(process.env.BERTH_TEST_WORKERS) || Math.min(4, Math.max(2, availableParallelism() * 2));

export default defineConfig({
  test: {
    include: ['daemon/src/**/*.test.ts', 'client-sdk/src/**/*.test.ts', 'daemon/test/**/*.test.ts', 'test/**/*.test.ts'],
    globalSetup: ['daemon/test/helpers/global-setup.ts'],
    // Deadlines are for hangs, not for speed: four files share two cores and the engine.
    testTimeout: 240_000,
    hookTimeout: 600_000,
    pool: 'forks',
    maxWorkers: workers,
    reporters: ['default', './scripts/summary-reporter.ts'],
  },
});
