/**
 * DATA_DIR is private to the server's user (security review, HIGH): it was created 0755 and PGlite makes
 * its files readable and writable by everyone whatever the umask (968 of 974 after a migrate), so any
 * local account could read every password hash, session and outbox link, or change a stopped server's
 * files. The directory is now made 0700 at every start, before the database opens it: nobody else can
 * reach the files inside. PGlite only (the embedded engine's files).
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli/main.ts';

const root = mkdtempSync(join(tmpdir(), 'rampart-data-dir-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const sink = () => new Writable({ write: (_chunk, _encoding, done) => done() });
const modeOf = (path: string) => statSync(path).mode & 0o777;
const migrate = (dataDir: string) =>
  runCli(['migrate'], { out: sink(), err: sink(), env: { DATA_DIR: dataDir, LOG_LEVEL: 'silent' } });

describe('the embedded database’s directory', () => {
  it('is created private (0700) under the common umask', async () => {
    const previous = process.umask(0o022);
    try {
      const dataDir = join(root, 'fresh');
      expect(await migrate(dataDir)).toBe(0);
      expect(modeOf(dataDir)).toBe(0o700);
    } finally {
      process.umask(previous);
    }
  }, 120_000);

  it('an existing directory open to others is made private at the next start', async () => {
    const dataDir = join(root, 'existing');
    mkdirSync(dataDir);
    chmodSync(dataDir, 0o755);
    expect(await migrate(dataDir)).toBe(0);
    expect(modeOf(dataDir)).toBe(0o700);
    chmodSync(dataDir, 0o777);
    expect(await migrate(dataDir)).toBe(0);
    expect(modeOf(dataDir)).toBe(0o700);
  }, 120_000);
});
