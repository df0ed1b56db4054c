import { chmodSync, mkdirSync, statSync } from 'node:fs';

/**
 * Makes DATA_DIR private to the server's user (mode 0700), creating it if needed, at every start and
 * before anything is written there: the embedded database's files (PGlite creates them readable and
 * writable by everyone, whatever the umask), the development key and outbox. As PostgreSQL refuses a
 * data directory others can enter, a directory that others can reach and that cannot be restricted
 * (owned by another user) stops the start with the setting named. Security review: DATA_DIR was 0755
 * with 968 of 974 database files world-writable, so any local account could read every password hash
 * and session, or plant an operator token in a stopped server's files.
 */
export function ensurePrivateDataDir(dataDir: string): void {
  if (dataDir === 'memory://') return;
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  try {
    chmodSync(dataDir, 0o700);
  } catch {
    // Not ours to change: acceptable only if nobody else can enter it anyway.
  }
  const mode = statSync(dataDir).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new Error(
      `DATA_DIR ${dataDir} is open to other users (mode ${mode.toString(8)}) and could not be made private: ` +
        `run chmod 700 on it as its owner, or point DATA_DIR at a directory the server's user owns.`,
    );
  }
}
