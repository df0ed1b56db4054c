import { type AuditInput, recordAuditEvent } from '../audit/index.ts';
import type { Mailer } from '../mail/index.ts';
import type { ActionContext, Clock } from '../platform/context.ts';
import type { SecretBox } from '../platform/crypto/keys.ts';
import type { Database, TenantId, TenantTx } from '../platform/db/index.ts';
import type { PasswordHasher } from './passwords/index.ts';
import type { TenantIdentityTables } from './tables.ts';

/** Compromised-password screening (common list, offline filter, optional online range API). */
export interface BreachedScreen {
  check(password: string): Promise<{ breached: boolean; source: string | null; onlineUnavailable?: boolean }>;
}

export interface IdentityKeys {
  /** Encrypts TOTP seeds at rest. */
  totp: SecretBox;
  /** HMAC key for recovery codes and CSRF tokens: a stolen table alone cannot be brute-forced offline. */
  mac: Buffer;
}

export interface IdentityDeps {
  db: Database;
  clock: Clock;
  hasher: PasswordHasher;
  breached: BreachedScreen;
  mailer: Mailer;
  keys: IdentityKeys;
  publicUrl: string;
  /** Failed sign-ins per client address, on the shared store (Protect); a per-process one when absent. */
  failedSignIns?: {
    get(key: string): Promise<{ remainingPoints: number; msBeforeNext: number } | null>;
    penalty(key: string, points?: number): Promise<unknown>;
  };
}

export interface TenantRef {
  id: TenantId;
  slug: string;
}

export type Tx = TenantTx<TenantIdentityTables>;

export const inTenant = <R>(deps: Pick<IdentityDeps, 'db'>, tenant: TenantRef, fn: (tx: Tx) => Promise<R>) =>
  deps.db.withTenant<TenantIdentityTables, R>(tenant.id, fn);

/** Audits a tenant event in the caller's transaction. */
export const audit = (
  deps: Pick<IdentityDeps, 'clock'>,
  tx: Tx,
  tenant: TenantRef,
  ctx: ActionContext,
  event: AuditInput,
) => recordAuditEvent<TenantIdentityTables>(tx, deps.clock, ctx, { ...event, tenantId: tenant.id });
