import { recordAuditEvent } from '../audit/index.ts';
import type { ActionContext, Clock } from '../platform/context.ts';
import type { SecretBox } from '../platform/crypto/keys.ts';
import { hashToken, newToken } from '../platform/crypto/tokens.ts';
import type { Database, SystemTx } from '../platform/db/index.ts';
import { hashing } from './credentials.ts';
import type { BreachedScreen } from './deps.ts';
import { identityError } from './errors.ts';
import { acceptOperatorPassword } from './operator-password.ts';
import type { PasswordHasher } from './passwords/index.ts';
import { openTotpSeed } from './sealed-totp.ts';
import type { IdentityTables } from './tables.ts';
import { enrolmentFor, newTotpSecret, totpStep } from './totp.ts';

const SETUP_TTL_MS = 24 * 3_600_000;

export interface OperatorSetupDeps {
  db: Database;
  clock: Clock;
  hasher: PasswordHasher;
  totpBox: SecretBox;
  publicUrl: string;
  breached: BreachedScreen;
}

type Tx = SystemTx<IdentityTables>;

/** An operator's own event (sign-in, set-up, lock): platform-wide, the operator as target. */
export const auditOperator = (
  tx: Tx,
  clock: Clock,
  ctx: ActionContext,
  action: `${string}.${string}`,
  outcome: 'success' | 'failure',
  id: string | null,
  reason?: string,
  more?: Record<string, number>,
) =>
  recordAuditEvent<IdentityTables>(tx, clock, ctx, {
    tenantId: null,
    action,
    outcome,
    ...(id ? { target: { type: 'operator', id } } : {}),
    ...(reason ? { details: { reason, ...more } } : {}),
  });

/** A one-time set-up link (24 hours) where an operator chooses a password and enrols TOTP. */
export async function issueOperatorSetupLink<DB>(
  systemTx: SystemTx<DB>,
  clock: Clock,
  publicUrl: string,
  operatorId: string,
): Promise<string> {
  const tx = systemTx as unknown as Tx;
  const { token, hash } = newToken('rmp_setup');
  await tx
    .insertInto('operator_tokens')
    .values({
      operator_id: operatorId,
      token_hash: hash,
      label: 'setup',
      kind: 'setup',
      expires_at: new Date(clock.now().getTime() + SETUP_TTL_MS),
      last_used_at: null,
      revoked_at: null,
    })
    .execute();
  return `${publicUrl}/operator/setup?token=${encodeURIComponent(token)}`;
}

/**
 * An operator's set-up through the one-time link: choose a password (screened as at sign-in), then
 * confirm the authenticator with a first code, which uses the link up.
 */
export function createOperatorSetup(deps: OperatorSetupDeps) {
  const system = <R>(fn: (tx: Tx) => Promise<R>) => deps.db.withSystem(fn);
  const audit = (tx: Tx, ctx: ActionContext, action: `${string}.${string}`, id: string) =>
    auditOperator(tx, deps.clock, ctx, action, 'success', id);

  async function setupOperator(tx: Tx, token: string) {
    const row = await tx
      .selectFrom('operator_tokens')
      .select(['operator_id', 'id'])
      .where('token_hash', '=', hashToken(token))
      .where('kind', '=', 'setup')
      .where('revoked_at', 'is', null)
      .where('expires_at', '>', deps.clock.now())
      .executeTakeFirst();
    if (!row)
      throw identityError(
        'token_invalid',
        'This set-up link is invalid, used or expired; ask for a new one.',
      );
    return row;
  }

  return {
    /**
     * Step 1 of set-up: choose a password; returns a TOTP secret to enrol (confirmed in step 2). The link
     * is checked in a short transaction, the password screened and hashed with none open (the screen may
     * ask the range API over the network, the hasher may queue), and the write checks the link again.
     */
    async begin(ctx: ActionContext, token: string, password: string) {
      await system((tx) => setupOperator(tx, token));
      const normalised = await acceptOperatorPassword(deps.breached, password);
      const passwordHash = await hashing(() => deps.hasher.hash(normalised));
      return system(async (tx) => {
        // Revoked (a disable, a newer link) or expired meanwhile: refused like any spent link.
        const { operator_id: id } = await setupOperator(tx, token);
        const secret = newTotpSecret();
        const operator = await tx
          .updateTable('operators')
          .set({
            password_hash: passwordHash,
            totp_ciphertext: deps.totpBox.seal(secret, `operator:${id}`),
            totp_confirmed_at: null,
            totp_last_step: 0,
          })
          .where('id', '=', id)
          .returning('email')
          .executeTakeFirstOrThrow();
        await audit(tx, ctx, 'identity.operator.setup_started', id);
        return enrolmentFor(secret, operator.email, 'Rampart operators');
      });
    },

    /** Step 2: confirm the authenticator with a first code; the set-up link is used up. */
    confirm: (ctx: ActionContext, token: string, code: string) =>
      system(async (tx) => {
        const setup = await setupOperator(tx, token);
        const operator = await tx
          .selectFrom('operators')
          .select(['totp_ciphertext'])
          .where('id', '=', setup.operator_id)
          .executeTakeFirstOrThrow();
        const step = operator.totp_ciphertext
          ? totpStep(
              openTotpSeed(deps.totpBox, operator.totp_ciphertext, `operator:${setup.operator_id}`).plaintext,
              code,
              deps.clock.now(),
            )
          : null;
        if (step === null)
          throw identityError('invalid_code', 'That code does not match; set up again if needed.');
        await tx
          .updateTable('operators')
          .set({ totp_confirmed_at: deps.clock.now(), totp_last_step: step })
          .where('id', '=', setup.operator_id)
          .execute();
        await tx
          .updateTable('operator_tokens')
          .set({ revoked_at: deps.clock.now() })
          .where('id', '=', setup.id)
          .execute();
        await audit(tx, ctx, 'identity.operator.setup_completed', setup.operator_id);
      }),
  };
}
