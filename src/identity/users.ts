import type { Selectable } from 'kysely';
import type { TenantTx } from '../platform/db/index.ts';
import type { TenantIdentityTables, UserRole, UsersTable } from './tables.ts';

export type UserRow = Selectable<UsersTable>;
type Tx = TenantTx<TenantIdentityTables>;

export interface PublicUser {
  id: string;
  email: string;
  displayName: string;
  role: UserRole;
  status: 'invited' | 'active' | 'disabled';
  emailVerified: boolean;
  /** The password is locked (wrong passwords). */
  locked: boolean;
  /** The second factor is locked (wrong codes): separate from the password lock, lifted the same way. */
  secondFactorLocked: boolean;
  createdAt: string;
}

export const toPublicUser = (u: UserRow, now: Date): PublicUser => ({
  id: u.id,
  email: u.email,
  displayName: u.display_name,
  role: u.role,
  status: u.status,
  emailVerified: u.email_verified_at !== null,
  locked: isPasswordLocked(u, now),
  secondFactorLocked: isSecondFactorLocked(u, now),
  createdAt: u.created_at.toISOString(),
});

/** Locked when a lock time lies ahead, or (admin mode) the threshold was reached and no admin unlocked. */
export function isPasswordLocked(u: UserRow, now: Date): boolean {
  return u.password_locked_until !== null && u.password_locked_until > now;
}

/** Wrong second-factor codes in a row that lock the second factor (mfa.ts). */
export const MFA_THRESHOLD = 5;

/** As mfa.ts's verify decides: a lock time ahead, or the threshold reached with the lock not yet set. */
export function isSecondFactorLocked(u: UserRow, now: Date): boolean {
  if (u.mfa_locked_until !== null) return u.mfa_locked_until > now;
  return u.mfa_failures >= MFA_THRESHOLD;
}

export function createUserRepository(tx: Tx) {
  return {
    byEmail: (email: string) =>
      tx.selectFrom('users').selectAll().where('email', '=', email).executeTakeFirst(),
    byId: (id: string) => tx.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst(),
    /** The row, locked until the transaction ends: a status change committing meanwhile is waited for. */
    lockById: (id: string) =>
      tx.selectFrom('users').selectAll().where('id', '=', id).forUpdate().executeTakeFirst(),
    insert: (values: {
      tenant_id: string;
      email: string;
      display_name: string;
      role: UserRole;
      status: 'invited' | 'active';
      email_verification_required?: boolean;
    }) =>
      tx
        .insertInto('users')
        .values({
          ...values,
          password_hash: null,
          password_changed_at: null,
          email_verified_at: null,
          password_locked_until: null,
          mfa_locked_until: null,
        })
        .onConflict((oc) => oc.columns(['tenant_id', 'email']).doNothing())
        .returningAll()
        .executeTakeFirst(),
    list: (after: string | null, limit: number) => {
      let q = tx.selectFrom('users').selectAll().orderBy('email').limit(limit);
      if (after) q = q.where('email', '>', after);
      return q.execute();
    },
    update: (id: string, values: Partial<Omit<UserRow, 'id' | 'tenant_id'>>) =>
      tx.updateTable('users').set(values).where('id', '=', id).returningAll().executeTakeFirstOrThrow(),
  };
}
