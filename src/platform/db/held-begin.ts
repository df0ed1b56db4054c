import { asTenantId, isTenantId, SET_TENANT_SQL } from './scope.ts';

/** What a connection sends for a statement while Kysely's `begin` is held back (see heldBegin). */
export type BeginStep =
  /** Nothing held: send the statement as it is. */
  | { kind: 'none' }
  /** The `begin` itself: held, answer it as done without sending anything. */
  | { kind: 'held' }
  /** The tenant setting: send `text` (begin and the setting, one simple-protocol message) instead. */
  | { kind: 'combined'; text: string; tenantId: string }
  /** Anything else: send `begin` first, then the statement. */
  | { kind: 'flush' };

/**
 * Kysely opens a transaction with a lone `begin`, and a tenant-scoped one follows it with the tenant
 * setting (scope.ts). Each statement is a round trip, so a connection holds the `begin` back and, when
 * the next statement is the tenant setting, sends both as one simple-protocol message: the same
 * statements in the same order, one round trip less per tenant transaction. One per connection.
 * `opening`: what opens a transaction on this connection (`begin`, perhaps with settings after it).
 */
export function heldBegin(opening = 'begin') {
  let held = false;
  return {
    step(sql: string, params: ReadonlyArray<unknown>): BeginStep {
      if (!held) {
        if (params.length > 0 || sql !== 'begin') return { kind: 'none' };
        held = true;
        return { kind: 'held' };
      }
      held = false;
      const tenantId = params[0];
      if (
        sql === SET_TENANT_SQL &&
        params.length === 1 &&
        typeof tenantId === 'string' &&
        isTenantId(tenantId)
      ) {
        // Checked to be a UUID (hex digits and dashes only), so it can stand in the text as a literal.
        const literal = asTenantId(tenantId);
        const text = `${opening}; SELECT set_config('rampart.tenant_id', '${literal}', true)`;
        return { kind: 'combined', text, tenantId: literal };
      }
      return { kind: 'flush' };
    },
    /** For a statement `step` cannot read (not text): whether a held `begin` must be sent before it. */
    takeHeld(): boolean {
      const was = held;
      held = false;
      return was;
    },
    /** The connection goes back to the pool: nothing may stay held for the next user. */
    reset(): void {
      held = false;
    },
  };
}
