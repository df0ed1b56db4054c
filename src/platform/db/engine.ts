import type { PostgresPool } from 'kysely';

export type EngineKind = 'pglite' | 'postgres';

/** Numbers /metrics reports about the connection pool. */
export interface PoolStats {
  total: number;
  idle: number;
  waiting: number;
}

/**
 * A database engine as Rampart sees it: a pool of application-role connections, and (only while
 * migrating, or in tests that play an attacker with owner rights) a way to run SQL as the schema owner.
 */
export interface Engine {
  readonly kind: EngineKind;
  /** Connections that run as the application role (never superuser, never BYPASSRLS). */
  readonly appPool: PostgresPool;
  /** Runs fn with a client authenticated as the schema owner. Migrations and owner-side tests only. */
  asOwner<T>(fn: (owner: OwnerSession) => Promise<T>): Promise<T>;
  stats(): PoolStats;
  close(): Promise<void>;
}

export interface OwnerSession {
  /** One parameterised statement. */
  query<R = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<R[]>;
  /** A script of several statements (simple protocol, no parameters): migrations. */
  exec(sql: string): Promise<void>;
}

/** The application role that migrations grant to and that every node's connections must be limited to. */
export const APP_ROLE = 'rampart_app';
