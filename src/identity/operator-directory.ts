import { hashToken } from '../platform/crypto/tokens.ts';
import { normaliseEmail } from './email.ts';
import { operatorAdminError } from './errors.ts';
import type { OperatorSummary, OperatorWrites } from './operator-writes.ts';

export interface OperatorTokenInfo {
  id: string;
  kind: 'api' | 'session' | 'setup';
  label: string;
  createdAt: Date;
  expiresAt: Date;
  /** When it was last used (recorded to the minute); null if never. */
  lastUsedAt: Date | null;
  /** The token this request was made with. */
  current: boolean;
  /** The only platform permissions an API token carries; null: all of them (or not an API token). */
  scopes: string[] | null;
}

/** One operator as the list shows them: never a credential, only whether and when they are used. */
export interface OperatorListEntry {
  id: string;
  email: string;
  displayName: string;
  status: 'active' | 'disabled';
  /** A confirmed TOTP authenticator (interactive sign-in needs one). */
  secondFactor: boolean;
  /** Sign-in refused until the lockout ends or someone unlocks them. */
  locked: boolean;
  createdAt: Date;
  /** Live API tokens and sign-in sessions (set-up links not counted). */
  liveCredentials: number;
  /** The latest use of any of their credentials, live or not (to the minute); null if never. */
  lastUsedAt: Date | null;
}

/** Who the operators are: found by email, listed with their credentials' state, and one's own tokens. */
export function createOperatorDirectory({ deps, system }: OperatorWrites) {
  return {
    /** The operator's id by email (the CLI names operators by email). */
    async findByEmail(rawEmail: string): Promise<OperatorSummary> {
      const email = normaliseEmail(rawEmail);
      const row = email
        ? await system((tx) =>
            tx
              .selectFrom('operators')
              .select(['id', 'email', 'status'])
              .where('email', '=', email)
              .executeTakeFirst(),
          )
        : undefined;
      if (!row)
        throw operatorAdminError('operator_not_found', `There is no operator with the email ${rawEmail}.`);
      return row;
    },

    /** Every operator, by email, with their credentials' state (never a credential). */
    list: (): Promise<OperatorListEntry[]> =>
      system(async (tx) => {
        const now = deps.clock.now();
        const rows = await tx
          .selectFrom('operators as o')
          .leftJoin('operator_tokens as t', 't.operator_id', 'o.id')
          .select((eb) => [
            'o.id',
            'o.email',
            'o.display_name',
            'o.status',
            'o.created_at',
            'o.totp_confirmed_at',
            'o.password_locked_until',
            eb.fn.max('t.last_used_at').as('last_used_at'),
            eb.fn
              .count<string>('t.id')
              .filterWhere((w) =>
                w.and([
                  w('t.revoked_at', 'is', null),
                  w('t.expires_at', '>', now),
                  w('t.kind', '!=', 'setup'),
                ]),
              )
              .as('live'),
          ])
          .groupBy('o.id')
          .orderBy('o.email')
          .execute();
        return rows.map((r) => ({
          id: r.id,
          email: r.email,
          displayName: r.display_name,
          status: r.status,
          secondFactor: r.totp_confirmed_at !== null,
          locked: r.password_locked_until !== null && r.password_locked_until > now,
          createdAt: r.created_at,
          liveCredentials: Number(r.live),
          lastUsedAt: r.last_used_at === null ? null : new Date(r.last_used_at),
        }));
      }),

    /** The caller's live credentials; never the token or its hash. */
    listOwn: (operatorId: string, currentToken: string | null): Promise<OperatorTokenInfo[]> =>
      system(async (tx) => {
        const current = currentToken ? hashToken(currentToken) : null;
        const rows = await tx
          .selectFrom('operator_tokens')
          .select(['id', 'kind', 'label', 'created_at', 'expires_at', 'last_used_at', 'token_hash', 'scopes'])
          .where('operator_id', '=', operatorId)
          .where('revoked_at', 'is', null)
          .where('expires_at', '>', deps.clock.now())
          .orderBy('created_at', 'desc')
          .orderBy('id')
          .execute();
        return rows.map((r) => ({
          id: r.id,
          kind: r.kind,
          label: r.label,
          createdAt: r.created_at,
          expiresAt: r.expires_at,
          lastUsedAt: r.last_used_at,
          current: current?.equals(r.token_hash) ?? false,
          scopes: r.scopes,
        }));
      }),
  };
}
