import type { ActionContext } from '../platform/context.ts';
import { hashToken } from '../platform/crypto/tokens.ts';
import { operatorAdminError } from './errors.ts';
import type { OperatorWrites } from './operator-writes.ts';
import { operatorKey } from './operators.ts';

/** Revoking operator credentials: sign-out, one of one's own tokens, or every token of an operator. */
export function createOperatorRevocation({
  deps,
  system,
  audit,
  publish,
  lockOperator,
  revokeAllInTx,
}: OperatorWrites) {
  return {
    /** Ends the credential a request was made with (sign-out). */
    async signOut(ctx: ActionContext, operatorId: string, token: string): Promise<void> {
      const hash = hashToken(token);
      const revoked = await system(async (tx) => {
        const row = await tx
          .updateTable('operator_tokens')
          .set({ revoked_at: deps.clock.now() })
          .where('token_hash', '=', hash)
          .where('operator_id', '=', operatorId)
          .where('revoked_at', 'is', null)
          .returning(['id', 'kind'])
          .executeTakeFirst();
        if (row)
          await audit(
            tx,
            ctx,
            'identity.operator.signed_out',
            { type: 'operator', id: operatorId },
            { kind: row.kind },
          );
        return row;
      });
      if (revoked) await publish([hash.toString('hex')]);
    },

    /** Revokes one of the operator's own credentials; someone else's id is unknown (404). */
    async revokeOwn(ctx: ActionContext, operatorId: string, tokenId: string): Promise<void> {
      const row = await system(async (tx) => {
        const revoked = await tx
          .updateTable('operator_tokens')
          .set({ revoked_at: deps.clock.now() })
          .where('id', '=', tokenId)
          .where('operator_id', '=', operatorId)
          .where('revoked_at', 'is', null)
          .where('expires_at', '>', deps.clock.now())
          .returning(['token_hash', 'kind'])
          .executeTakeFirst();
        if (!revoked) throw operatorAdminError('token_not_found', 'You have no live token with that id.');
        await audit(
          tx,
          ctx,
          'identity.operator.token_revoked',
          { type: 'operator', id: operatorId },
          {
            kind: revoked.kind,
            revokedId: tokenId,
          },
        );
        return revoked;
      });
      // PGlite hands bytea back as a Uint8Array, whose toString is not hex.
      await publish([Buffer.from(row.token_hash).toString('hex')]);
    },

    /** Revokes every live credential of an operator (theirs or, with operators:write, anyone's). */
    async revokeAll(ctx: ActionContext, operatorId: string): Promise<{ revoked: number }> {
      const revoked = await system(async (tx) => {
        await lockOperator(tx, operatorId);
        const count = await revokeAllInTx(tx, operatorId);
        await audit(
          tx,
          ctx,
          'identity.operator.tokens_revoked',
          { type: 'operator', id: operatorId },
          { count },
        );
        return count;
      });
      await publish([operatorKey(operatorId)]);
      return { revoked };
    },
  };
}
