import { Type } from '@sinclair/typebox';
import { strictObject, Timestamp } from '../platform/http/schemas.ts';

/**
 * A UUID as PostgreSQL prints it (lower case, no braces or `urn:uuid:`). Chains and event ids are compared
 * as text, so the wider JSON-schema `uuid` format would let through forms that never match (or fail a
 * check constraint: a 500 rather than a 400).
 */
export const CANONICAL_UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
export const isCanonicalUuid = (value: string) => canonicalUuid.test(value);
const canonicalUuid = new RegExp(`^${CANONICAL_UUID}$`);

/** The longest time range one search or export may cover. */
export const MAX_RANGE_DAYS = 400;

const Short = (maxLength: number, description: string) =>
  Type.String({ minLength: 1, maxLength, pattern: '^[^\\u0000-\\u001f]*$', description });

export const SearchFilters = {
  actor: Type.Optional(Short(200, 'Actor id (user, operator, job or API client id), exact')),
  actorType: Type.Optional(
    Type.Union(['user', 'operator', 'system', 'api_client', 'anonymous'].map((t) => Type.Literal(t))),
  ),
  action: Type.Optional(
    Type.String({
      pattern: '^[a-z][a-z0-9_]*(\\.[a-z0-9_]*)*$',
      maxLength: 200,
      description: 'Action prefix: `identity.` matches every identity action, `identity.signin.password` one',
    }),
  ),
  targetType: Type.Optional(Short(100, 'Target type, exact')),
  targetId: Type.Optional(Short(200, 'Target id, exact (with or without targetType)')),
  outcome: Type.Optional(Type.Union(['success', 'failure', 'denied'].map((t) => Type.Literal(t)))),
  ip: Type.Optional(
    Type.String({
      maxLength: 50,
      description: 'An IP address or a CIDR block (203.0.113.0/24, 2001:db8::/32)',
    }),
  ),
  from: Type.Optional({ ...Timestamp, description: 'Oldest time included (default: `to` minus 30 days)' }),
  to: Type.Optional({
    ...Timestamp,
    description: `Newest time excluded (default: now); at most ${MAX_RANGE_DAYS} days after \`from\``,
  }),
};

export const SearchQuery = strictObject({
  ...SearchFilters,
  limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 }),
  cursor: Type.Optional(Type.String({ maxLength: 200, description: 'nextCursor of the previous page' })),
});

export const ExportFilters = strictObject(SearchFilters);
export const ExportQuery = strictObject({
  ...SearchFilters,
  approval: Type.Optional(
    Type.String({
      format: 'uuid',
      description:
        'The approved export request this download uses up, when the tenant has audit exports on its four-eyes list',
    }),
  ),
});

const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()]);

export const AuditEventSchema = strictObject(
  {
    id: Type.String({ format: 'uuid' }),
    seq: Type.Integer({ description: 'Position in its chain (the tenant, or the platform)' }),
    occurredAt: Timestamp,
    actor: strictObject({
      type: Type.String(),
      id: Nullable(Type.String()),
      elevationId: Nullable(Type.String()),
    }),
    action: Type.String(),
    target: Type.Union([
      strictObject({ type: Nullable(Type.String()), id: Nullable(Type.String()) }),
      Type.Null(),
    ]),
    outcome: Type.String(),
    ip: Nullable(Type.String()),
    userAgent: Nullable(Type.String()),
    requestId: Nullable(Type.String()),
    details: Type.Record(
      Type.String(),
      Type.Union([Type.String(), Type.Number(), Type.Boolean(), Type.Null()]),
    ),
    hash: Type.String({ description: 'SHA-256 chain hash, hex (see docs/audit.md)' }),
  },
  { $id: 'AuditEvent' },
);

export const AuditEventPage = strictObject({
  items: Type.Array(Type.Ref('AuditEvent')),
  nextCursor: Type.Union([Type.String(), Type.Null()]),
});

/** A platform four-eyes action's answer: the request recorded for another operator's approval. */
export const ApprovalRequired = strictObject({
  status: Type.Literal('approval_required'),
  approval: Type.Record(Type.String(), Type.Unknown(), {
    description: 'The platform approval request (as GET /api/v1/access/platform-approvals/:id)',
  }),
});

export const VolumeQuery = strictObject({
  bucket: Type.Optional(
    Type.Union([Type.Literal('hour'), Type.Literal('day')], {
      description: 'Bar width: an hour (at most 168 of them) or a day (at most 400); default day',
    }),
  ),
  from: Type.Optional({
    ...Timestamp,
    description: 'Start, rounded down to its hour or day (default: 48 hours or 30 days before `to`)',
  }),
  to: Type.Optional({ ...Timestamp, description: 'End, rounded up to its hour or day (default: now)' }),
});

export const VolumePage = strictObject({
  bucket: Type.Union([Type.Literal('hour'), Type.Literal('day')]),
  from: Type.String({ format: 'date-time' }),
  to: Type.String({ format: 'date-time' }),
  points: Type.Array(
    strictObject({
      start: Type.String({ format: 'date-time', description: 'Start of the hour or day (UTC)' }),
      total: Type.Integer(),
      failure: Type.Integer(),
      denied: Type.Integer(),
    }),
    { description: 'Every bucket of the range, oldest first, zeros included' },
  ),
});
