import { tmpdir } from 'node:os';
import { defineConfig } from 'vitest/config';

// Tests keep their inputs (a pulled stage's input file) in temporary folders, which the
// controller reads only as declared data roots (orchestrator/untrusted-path.ts). The
// tests of that rule pass their own roots.
process.env.STOKER_DATA_ROOTS ??= tmpdir();

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests start their own redis-server and child processes; on a 2-core
    // machine a little parallelism is faster than none, a lot is flaky.
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    globalSetup: ['test/util/global-setup.ts'],
  },
});
