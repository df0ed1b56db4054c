import { defineConfig } from 'vitest/config';

// Headless-Chromium tests of the hosted pages: `npm run test:browser`. Not part of `npm test` (they need
// /usr/bin/chromium and take longer); vitest.config.ts excludes test/browser/.
export default defineConfig({
  test: {
    include: ['test/browser/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    maxWorkers: 1,
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
