import type { Reporter, TestModule } from 'vitest/node';

/** Ends every run with one plain line, `N passed, N failed`, that CI and people can read; skipped tests are listed above it. */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>, errors: ReadonlyArray<unknown>): void {
    let passed = 0;
    let failed = 0;
    const skipped: string[] = [];
    for (const m of modules) {
      let failedHere = 0;
      for (const t of m.children.allTests()) {
        const s = t.result().state;
        if (s === 'passed') passed++;
        else if (s === 'failed') failedHere++;
        else {
          const note = t.result().note;
          skipped.push(`${t.fullName}${note ? ` (${note})` : ''}`);
        }
      }
      // A file that failed to load, or whose hooks failed (beforeAll, afterAll), failed as a whole
      // even when none of its tests did.
      if (m.state() === 'failed' && failedHere === 0) failedHere = 1;
      failed += failedHere;
    }
    failed += errors.length;
    // Skips are never silent: each is named with its reason, above the summary line.
    for (const s of skipped) process.stdout.write(`\nskipped: ${s}`);
    process.stdout.write(`\n${passed} passed, ${failed} failed\n`);
  }
}
