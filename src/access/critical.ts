import type { FastifyRequest } from 'fastify';
import type { TenantRef } from '../identity/index.ts';
import type { ActionContext } from '../platform/context.ts';
import type { SystemTx, TxGuard } from '../platform/db/index.ts';
import type { Tx } from './tables.ts';

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** What an approved critical action is run with: the recorded parameters, never the caller's new ones. */
export interface CriticalRun {
  tenant: TenantRef;
  ctx: ActionContext;
  params: JsonValue;
  /**
   * The approval's re-checks (its approver still holds `approvals:decide`, the state is the one it was
   * asked against), which lock what they read: the executor passes it to the service that writes, which
   * calls it first in its transaction, so nothing can change either answer before the action commits.
   * It throws when the approval no longer stands (that transaction rolls back: nothing ran).
   */
  guard: TxGuard;
}

/**
 * The re-check of a platform approval (its approver is still an active operator), run first in the
 * platform transaction that does the action, locking what it reads until that commits.
 */
// biome-ignore lint/suspicious/noExplicitAny: any capability's table map; each receiver casts to its own.
export type PlatformGuard = (tx: SystemTx<any>) => Promise<void>;

/** What an approved platform action is run with: the recorded parameters and the approval's guard. */
export interface PlatformRun {
  ctx: ActionContext;
  params: JsonValue;
  /** The approval's id, for the action's own audit event. */
  approvalId: string;
  approvedBy: string | null;
  guard: PlatformGuard;
}

export interface CriticalActionDef {
  key: string;
  description: string;
  /** Whether a new tenant has it on its four-eyes list (platform actions: always required). */
  onByDefault: boolean;
  /**
   * `platform`: an operator's action on platform state (no tenant). Always four-eyes between two
   * operators, never on a tenant's list; run by `executePlatform`, whose result the requester gets back.
   * `elevated`: lasting access asked for by an operator under an elevation in a tenant. Always four-eyes
   * (never on a tenant's list, so never switched off), and decided by a tenant user only.
   */
  scope?: 'tenant' | 'platform' | 'elevated';
  executePlatform?: (run: PlatformRun) => Promise<Record<string, JsonValue>>;
  /**
   * What operators reading a platform request are shown of its parameters, when less than all (a URL's
   * query may hold an intake's key). The stored parameters and their hash stay whole: the requester
   * runs it with the parameters as asked.
   */
  shownParams?: (params: JsonValue) => JsonValue;
  /**
   * The platform state a platform action would overwrite (a whole settings document), read in the
   * caller's platform transaction and locked until it commits: as `basis` for tenant actions.
   */
  // biome-ignore lint/suspicious/noExplicitAny: any capability's table map; each receiver casts to its own.
  platformBasis?: (tx: SystemTx<any>, params: JsonValue) => Promise<JsonValue | undefined>;
  /** Runs the action once approved; a capability plugs it in when the action exists. */
  execute?: (run: CriticalRun) => Promise<unknown>;
  /**
   * The current state the action would overwrite (a whole settings document, a role), read for these
   * parameters; undefined when it overwrites nothing. A request stores its hash, and an approved
   * request runs only while the state still hashes the same: it never undoes a later change unseen.
   * Read in the caller's transaction and locked (FOR UPDATE) until it commits.
   */
  basis?: (tx: Tx, tenant: TenantRef, params: JsonValue) => Promise<JsonValue | undefined>;
  /**
   * Lock the state (basis) before the approver's rows when re-checking an approval. For state that
   * other writers lock before users' rows (the identity settings: every password-setting path reads
   * them FOR SHARE, then writes the user): the same order, so an approver changing their own password
   * meanwhile waits instead of deadlocking. Default: the approver's rows first (roles are locked after
   * their holders by role deletion).
   */
  lockStateFirst?: boolean;
  /**
   * For an action done by a safe request (a download) instead of an executor: where it is asked for
   * and how the approved request is then used, as told to the person who tries it without approval.
   */
  runsOn?: { ask: string; run: string };
  /**
   * Whether these parameters give `userId` access (a role granted to them, their account enabled, a role
   * they hold widened), read in the deciding transaction: they may not approve the request (security
   * review: the person a grant was for approved it).
   */
  beneficiary?: (tx: Tx, params: JsonValue, userId: string) => Promise<boolean>;
}

/** What a request is, when it is a critical action: its key, exact parameters and a line for approvers. */
export interface Classified {
  action: string;
  params: JsonValue;
  summary: string;
  /**
   * The state the summary was written against: the action's `basis` as the gate read it. The request is
   * recorded only while the basis it locks is still that state, so an approved run (which runs only on
   * the recorded basis) does what its summary says; absent: the summary does not depend on the state.
   */
  seen?: JsonValue;
}

/**
 * Read by the access hook on routes that declare `config.fourEyes`: the critical actions this request
 * would perform (none, one or several; the first the tenant has on its list is asked for).
 */
export type FourEyesClassifier = (request: FastifyRequest, tenant: TenantRef) => Promise<Classified[]>;

/**
 * The same for a platform route (`access: 'operator'`): the platform action this request would perform.
 * Input no action could run with is refused here (4xx), never put up for approval.
 */
export type PlatformClassifier = (request: FastifyRequest) => Promise<Classified[]>;

/**
 * The critical actions Rampart knows. Each capability defines its own with `define` (and its
 * executor once the action exists) and the routes that may perform them with `gate`; a tenant turns
 * each on or off in its access settings (`fourEyesActions`).
 */
export function createCriticalActions() {
  const actions = new Map<string, CriticalActionDef>();
  const gates = new Map<string, FourEyesClassifier>();
  const platformGates = new Map<string, PlatformClassifier>();
  const isPlatform = (key: string) => actions.get(key)?.scope === 'platform';
  const onTenantList = (def: CriticalActionDef | undefined) =>
    def !== undefined && (def.scope ?? 'tenant') === 'tenant';
  return {
    define(def: CriticalActionDef) {
      const existing = actions.get(def.key);
      if (existing?.execute && def.execute) throw new Error(`critical action ${def.key} is defined twice`);
      const execute = def.execute ?? existing?.execute;
      actions.set(def.key, execute ? { ...def, execute } : def);
    },
    gate(name: string, classify: FourEyesClassifier) {
      if (gates.has(name) || platformGates.has(name))
        throw new Error(`four-eyes gate ${name} is defined twice`);
      gates.set(name, classify);
    },
    platformGate(name: string, classify: PlatformClassifier) {
      if (gates.has(name) || platformGates.has(name))
        throw new Error(`four-eyes gate ${name} is defined twice`);
      platformGates.set(name, classify);
    },
    /** A tenant critical action (one a tenant's four-eyes list may name). */
    isKnown: (key: string) => onTenantList(actions.get(key)),
    isPlatform,
    /** Required whatever the tenant's list says: an elevated operator's lasting access. */
    isAlwaysRequired: (key: string) => actions.get(key)?.scope === 'elevated',
    isKnownGate: (name: string) => gates.has(name) || platformGates.has(name),
    action: (key: string) => actions.get(key),
    classifier: (name: string) => gates.get(name),
    platformClassifier: (name: string) => platformGates.get(name),
    defaults: () =>
      [...actions.values()]
        .filter((a) => a.onByDefault && onTenantList(a))
        .map((a) => a.key)
        .sort(),
    list: () => [...actions.values()].sort((a, b) => a.key.localeCompare(b.key)),
  };
}

export type CriticalActions = ReturnType<typeof createCriticalActions>;

/**
 * Actions of capabilities that do not exist yet: listed (and on by default) so a tenant's list is
 * right from the start; each capability adds the executor and the gate on its route when it lands.
 */
export function definePlannedActions(critical: CriticalActions) {
  const planned: [string, string][] = [
    ['tenancy.tenant.delete', 'Delete the tenant'],
    ['privacy.user.erase', "Erase a user's data"],
    ['vault.key.rotate', 'Rotate or destroy encryption keys'],
  ];
  for (const [key, description] of planned) critical.define({ key, description, onByDefault: true });
}
