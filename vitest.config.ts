import { defineConfig } from 'vitest/config';

// Files that replace a module with vi.mock need a module cache of their own; every other file shares
// its worker's (isolate: false), which saves re-importing the whole app per file (about half the suite's
// time). Each file still builds its own app and database.
const ownModules = ['test/routes.test.ts', 'test/access-routes.test.ts'];

export default defineConfig({
  test: {
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    // Each file holds a database of its own; two cores run two files at a time.
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 60_000,
    projects: [
      {
        extends: true,
        test: { name: 'own-modules', include: ownModules, isolate: true },
      },
      {
        extends: true,
        test: {
          name: 'shared-modules',
          include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
          exclude: [...ownModules, 'test/browser/**', '**/node_modules/**'],
          isolate: false,
        },
      },
    ],
  },
});
