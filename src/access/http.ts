import type { FastifyReply, FastifyRequest } from 'fastify';
import type { OperatorService, TenantRef } from '../identity/index.ts';
import type { Actor, Clock } from '../platform/context.ts';
import { bearerToken } from '../platform/http/access.ts';
import { actionContext } from '../platform/http/context.ts';
import { routeConfig } from '../platform/http/route-config.ts';
import { permissionDef } from './catalogue.ts';
import { refuseOperatorNetworkPolicyChange } from './elevated-grants.ts';
import { DECISION_STEP_UP_MS, hasRecentOperatorFactor, type OperatorFactor } from './elevation-view.ts';
import { accessError } from './errors.ts';
import type { AccessService } from './service.ts';
import { outOfScope } from './token-scopes.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** How the operator's credential was obtained (set on operator-authenticated requests). */
    operatorFactor: OperatorFactor | null;
    /** The only platform permissions the operator's credential carries; null: all of them. */
    operatorScopes: readonly string[] | null;
  }
}

export const STEP_UP_MESSAGE =
  'Confirm with your second factor within the last 5 minutes first (operators: sign in again with ' +
  'password and authenticator code).';

/**
 * The check before a tenant's network policy changes (Protect's route): never an operator, even
 * elevated (refuseOperatorNetworkPolicyChange), and a recent second factor, as for other security
 * settings: a stolen session must not widen the admin allowlist or add an origin.
 */
export const networkPolicyChangeCheck =
  (needsStepUp: (request: FastifyRequest) => boolean) =>
  (request: FastifyRequest): void => {
    refuseOperatorNetworkPolicyChange(actionContext(request));
    if (needsStepUp(request)) throw accessError('step_up_required', STEP_UP_MESSAGE);
  };

/**
 * Whether an operator must confirm a second factor before deciding or running a critical action: only a
 * sign-in token (password + TOTP) within the last 5 minutes counts; API tokens never do.
 */
export const operatorNeedsStepUp = (request: FastifyRequest, now: Date) =>
  !hasRecentOperatorFactor(request.operatorFactor, now, DECISION_STEP_UP_MS);

type UserAuthenticator = (request: FastifyRequest) => Promise<Actor | null>;

/** `access: 'operator'`: an operator's bearer token; records how it was obtained for step-up checks. */
export function operatorAuthenticator(operators: OperatorService) {
  return async (request: FastifyRequest): Promise<Actor | null> => {
    const token = bearerToken(request);
    const credential = token ? await operators.verify(token) : null;
    if (!credential) return null;
    request.operatorFactor = { kind: credential.kind, mfaAt: credential.mfaAt };
    request.operatorScopes = credential.scopes;
    // A scoped token serves one integration: the operator's own credentials (`self`: list, revoke,
    // sign-out) are not among its scopes, so a leaked shipper token cannot end the operator's others.
    if (credential.scopes && routeConfig(request).permission === 'self') {
      request.actor = credential.actor; // the refusal is audited as this operator's (anonymous ones are not)
      throw outOfScope('self', credential.scopes);
    }
    return credential.actor;
  };
}

/**
 * `access: 'tenant'`: a user session of the `:tenant` (identity's authenticator), or an operator's
 * token; the operator gets no permission here unless an approved elevation in this tenant grants it
 * (see `authorizer`).
 */
export function tenantAuthenticator(
  users: UserAuthenticator,
  operators: OperatorService,
  resolveTenant: (request: FastifyRequest) => Promise<TenantRef>,
) {
  const asOperator = operatorAuthenticator(operators);
  return async (request: FastifyRequest): Promise<Actor | null> => {
    const token = bearerToken(request);
    if (!token || token.startsWith('rmp_s_')) return users(request);
    request.tenant = await resolveTenant(request);
    return asOperator(request);
  };
}

/**
 * Whether the caller holds the route's permission. Platform permissions: every operator (operators
 * have one platform role today), except that a scoped API token carries only its scopes (a 403 saying
 * so). Tenant permissions: a user's roles in the tenant, or an operator's active elevation there,
 * checked against the clock now, and only with a two-factor sign-in token.
 */
export function authorizer(access: AccessService, clock: Clock) {
  return async (request: FastifyRequest, permission: string): Promise<boolean> => {
    const actor = request.actor;
    if (permissionDef(permission)?.scope === 'platform') {
      if (actor.type !== 'operator') return false;
      // Least privilege (security review): the decision API's caller or a WAF log shipper holds a token
      // scoped to what it calls, which cannot disable operators or suspend tenants if it leaks.
      const scopes = request.operatorScopes;
      if (scopes && !scopes.includes(permission)) throw outOfScope(permission, scopes);
      return true;
    }
    const tenant = request.tenant;
    if (!tenant) return false;
    if (actor.type === 'user') return access.decide(tenant.id, actor.id, permission);
    if (actor.type !== 'operator' || request.operatorFactor?.kind !== 'session') return false;
    const now = clock.now().getTime();
    const grants = await access.cache.operatorGrants(tenant.id, actor.id);
    const grant = grants.find((g) => g.expiresAt > now && g.permissions.has(permission));
    if (!grant) return false;
    // Everything done in this request is attributed to the elevation in the audit trail.
    request.actor = { type: 'operator', id: actor.id, elevationId: grant.elevationId };
    return true;
  };
}

/**
 * The four-eyes gate on routes declaring `config.fourEyes`: when the request is a critical action that
 * this tenant has on its list (or a platform action, on an operator route: always), it is recorded for
 * approval and answered 202 instead of run. A safe
 * request (a download) records nothing: it runs only by naming an approved request of its caller for
 * exactly these parameters (`?approval=`), which it uses up.
 */
export function fourEyesGate(access: AccessService, needsStepUp: (request: FastifyRequest) => boolean) {
  return async (request: FastifyRequest, reply: FastifyReply, gate: string): Promise<boolean> => {
    const platform = access.critical.platformClassifier(gate);
    if (platform) {
      // A platform action (an operator route): always recorded for another operator's approval.
      const [found] = await platform(request);
      if (!found) return false;
      const permission = routeConfig(request).permission ?? '';
      const approval = await access.platformApprovals.request(actionContext(request), found, permission);
      await reply.code(202).send({ status: 'approval_required', approval });
      return true;
    }
    const classify = access.critical.classifier(gate);
    const tenant = request.tenant;
    if (!classify || !tenant) throw new Error(`four-eyes gate ${gate} reached without a tenant`);
    const found = await access.approvals.firstRequired(tenant.id, await classify(request, tenant));
    if (!found) return false;
    if (request.method === 'GET' || request.method === 'HEAD') {
      const approval = (request.query as { approval?: string } | undefined)?.approval;
      const def = access.critical.action(found.action);
      // HEAD would use the approval up without delivering anything.
      if (approval === undefined || request.method === 'HEAD' || !def?.runsOn) {
        throw accessError(
          'approval_required',
          `${def?.description ?? found.action} needs a second person\u2019s approval in this tenant: ` +
            `${def?.runsOn?.ask ?? 'ask for it'}, have it approved, then ${def?.runsOn?.run ?? 'run it'}.`,
        );
      }
      if (needsStepUp(request)) throw accessError('step_up_required', STEP_UP_MESSAGE);
      await access.approvals.consume(tenant, actionContext(request), approval, found);
      return false;
    }
    const permission = routeConfig(request).permission ?? '';
    const approval = await access.approvals.request(tenant, actionContext(request), found, permission);
    await reply.code(202).send({ status: 'approval_required', approval });
    return true;
  };
}
