import { Type } from '@sinclair/typebox';
import { SavedAlertSettings } from '../audit/index.ts';
import { strictObject, Text, Uuid } from '../platform/http/schemas.ts';

export const Slug = Type.String({ pattern: '^[a-z][a-z0-9-]{1,38}[a-z0-9]$' });
export { Uuid };
export const RoleKey = Type.String({ pattern: '^[a-z][a-z0-9-]{1,38}[a-z0-9]$' });
export const PermissionName = Type.String({ pattern: '^[a-z][a-z-]*:[a-z][a-z-]*$', maxLength: 80 });

export const TenantParams = strictObject({ tenant: Slug });
export const RoleParams = strictObject({ tenant: Slug, role: RoleKey });
export const UserParams = strictObject({ tenant: Slug, userId: Uuid });
export const UserRoleParams = strictObject({ tenant: Slug, userId: Uuid, role: RoleKey });
export const IdParams = strictObject({ tenant: Slug, id: Uuid });
export const PlatformIdParams = strictObject({ id: Uuid });

export const Permission = strictObject({
  name: Type.String(),
  capability: Type.String(),
  description: Type.String(),
});
export const Role = strictObject({
  key: Type.String(),
  name: Type.String(),
  builtin: Type.Boolean(),
  permissions: Type.Array(Type.String()),
});
export const RoleBody = strictObject({
  name: Text({ minLength: 1, maxLength: 200 }),
  permissions: Type.Array(PermissionName, { maxItems: 100 }),
});
export const CreateRoleBody = strictObject({
  key: RoleKey,
  name: RoleBody.properties.name,
  permissions: RoleBody.properties.permissions,
});
export const UserRoles = strictObject({ userId: Type.String(), roles: Type.Array(Type.String()) });

export const AccessSettings = strictObject({
  fourEyesActions: Type.Array(Type.String({ pattern: '^[a-z][a-z0-9.-]{1,80}$' }), { maxItems: 50 }),
  approvalTtlMinutes: Type.Integer({ minimum: 5, maximum: 10080 }),
  elevationApprover: Type.Union([Type.Literal('operator'), Type.Literal('tenant')]),
  elevationThresholds: Type.Record(RoleKey, Type.Integer({ minimum: 1, maximum: 5 }), {
    additionalProperties: false,
    maxProperties: 50,
  }),
});

const approvalStatuses = [
  'pending',
  'approved',
  'rejected',
  'executing',
  'executed',
  'failed',
  'expired',
] as const;
const Person = strictObject({ type: Type.String(), id: Type.String() });
export const Approval = strictObject({
  id: Type.String(),
  action: Type.String(),
  permission: Type.String(),
  summary: Type.String(),
  params: Type.Unknown(),
  paramsHash: Type.String({ description: 'SHA-256 (hex) of the canonical JSON of params' }),
  status: Type.Union(approvalStatuses.map((s) => Type.Literal(s))),
  requestedBy: Person,
  requestedAt: Type.String(),
  expiresAt: Type.String(),
  decidedBy: Type.Union([Person, Type.Null()]),
  decidedAt: Type.Union([Type.String(), Type.Null()]),
  executedAt: Type.Union([Type.String(), Type.Null()]),
});
export const ApprovalRequired = strictObject({
  status: Type.Literal('approval_required'),
  approval: Approval,
});
export const ApprovalQuery = strictObject({
  status: Type.Optional(Type.Union(approvalStatuses.map((s) => Type.Literal(s)))),
});
/**
 * A run platform action: the request, and what the action answered (a new sink, with a webhook's secret
 * once; an enabled operator; an acknowledgement).
 */
export const PlatformExecuted = strictObject({
  approval: Approval,
  result: Type.Union([
    strictObject({
      id: Type.String({ format: 'uuid' }),
      kind: Type.Union([Type.Literal('webhook'), Type.Literal('syslog')]),
      url: Type.String(),
      secret: Type.Optional(
        Type.String({
          description: 'Webhooks: Standard Webhooks signing secret (whsec_...), shown only now',
        }),
      ),
    }),
    // An enabled operator.
    strictObject({
      id: Type.String({ format: 'uuid' }),
      email: Type.String(),
      status: Type.Union([Type.Literal('active'), Type.Literal('disabled')]),
    }),
    // The platform's alert settings (a new webhook's signing secret shown only now).
    SavedAlertSettings,
    // A forged audit event's acknowledgement (the chain is signed over it again).
    strictObject({
      id: Type.String({ format: 'uuid' }),
      chain: Type.String({ description: "The tenant's id, or platform" }),
      seq: Type.Integer(),
      eventId: Type.String({ format: 'uuid' }),
      eventHash: Type.String({ description: 'SHA-256 chain hash, 64 hex digits' }),
      reason: Type.String(),
      acknowledgedBy: strictObject({ type: Type.String(), id: Type.Union([Type.String(), Type.Null()]) }),
      acknowledgedAt: Type.String({ format: 'date-time' }),
    }),
  ]),
});
export const ExecuteBody = strictObject({
  params: Type.Unknown({ description: 'Exactly the parameters that were approved' }),
});

export const Elevation = strictObject({
  id: Type.String(),
  tenantId: Type.String(),
  operatorId: Type.String(),
  role: Type.String(),
  /** The role's permissions when the request was made: what an approval grants, at most. */
  permissions: Type.Array(Type.String()),
  reason: Type.String(),
  durationMinutes: Type.Integer(),
  approvalsNeeded: Type.Integer(),
  approvals: Type.Integer(),
  approver: Type.String(),
  status: Type.String(),
  requestedAt: Type.String(),
  /** A pending request lapses (status `expired`) if not decided by then. */
  decideBy: Type.String(),
  startsAt: Type.Union([Type.String(), Type.Null()]),
  expiresAt: Type.Union([Type.String(), Type.Null()]),
});
export const ElevationRequestBody = strictObject({
  tenant: Slug,
  role: RoleKey,
  reason: Text({ minLength: 10, maxLength: 1000 }),
  durationMinutes: Type.Integer({ minimum: 5, maximum: 1440 }),
});

export const DecisionBody = strictObject({
  checks: Type.Array(strictObject({ tenantId: Uuid, userId: Uuid, permission: PermissionName }), {
    minItems: 1,
    maxItems: 100,
  }),
});
export const DecisionReply = strictObject({
  allowed: Type.Array(Type.Boolean(), { description: 'One answer per check, in order' }),
});
