import { defineConfig } from 'vitest/config';

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
