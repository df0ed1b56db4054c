import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { actionContext } from '../platform/http/context.ts';
import { responses, strictObject, Text, Timestamp, Uuid } from '../platform/http/schemas.ts';
import { RuleSettingsSchema, ruleSeverity, WorkingHoursSchema } from './alert-rules.ts';
import type { AlertService } from './alert-service.ts';
import { TenantParams, tenantIdOf } from './http.ts';
import { ApprovalRequired } from './schemas.ts';

const tags = ['audit'];
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T) =>
  Type.Union([schema, Type.Null()]);

const Alert = strictObject({
  id: Uuid,
  tenantId: Nullable(Uuid),
  rule: Type.String(),
  severity: Type.Union([Type.Literal('low'), Type.Literal('medium'), Type.Literal('high')]),
  keys: Type.Array(Type.String(), {
    description: 'What the alert is about: account:…, ip:…, actor:…, chain',
  }),
  summary: Type.String(),
  status: Type.Union([Type.Literal('open'), Type.Literal('acknowledged')]),
  occurrences: Type.Integer({ description: 'Matching events counted into this alert' }),
  firstEventId: Uuid,
  lastEventId: Uuid,
  raisedAt: Timestamp,
  lastSeenAt: Timestamp,
  acknowledgedAt: Nullable(Timestamp),
  acknowledgedBy: Nullable(Type.String()),
  acknowledgementNote: Nullable(Type.String()),
});
const AlertPage = strictObject({ items: Type.Array(Alert), nextCursor: Nullable(Type.String()) });
const ListQuery = strictObject({
  status: Type.Optional(Type.Union([Type.Literal('open'), Type.Literal('acknowledged')])),
  rule: Type.Optional(Type.Union(Object.keys(ruleSeverity).map((r) => Type.Literal(r)))),
  limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
  cursor: Type.Optional(Type.String({ maxLength: 200 })),
});
const Channels = strictObject({
  // Text(): no control characters (PostgreSQL refuses NUL; that would be a 500, not a named 400).
  emails: Type.Array(Text({ minLength: 3, maxLength: 254 }), {
    maxItems: 20,
    description: 'Alert mail recipients',
  }),
  webhookUrl: Nullable(
    Text({
      minLength: 8,
      maxLength: 2000,
      description:
        'https:// (http:// on loopback). Answered without its query string or fragment (a key may be ' +
        'there); sent back so, it means the stored URL, unchanged (its signing secret too)',
    }),
  ),
});
const Settings = strictObject({
  rules: RuleSettingsSchema,
  workingHours: Nullable(WorkingHoursSchema),
  channels: Channels,
});
/** Alert settings as saved (the platform four-eyes run answers them too). */
export const SavedSettings = strictObject({
  rules: RuleSettingsSchema,
  workingHours: Nullable(WorkingHoursSchema),
  channels: Channels,
  webhookSecret: Type.Optional(
    Type.String({ description: 'Standard Webhooks secret alerts are signed with; shown only when issued' }),
  ),
});
const AckBody = strictObject({ note: Type.Optional(Text({ maxLength: 500 })) });
const AlertParams = strictObject({ id: Uuid });

/**
 * Alerts of a tenant (its admins: `alerts:read` / `alerts:write`) and of the platform (operators). The same
 * four routes in both places; `chainOf` says whose alerts a request is about.
 */
export const alertRoutes: FastifyPluginAsyncTypebox<{ alerts: AlertService }> = async (app, { alerts }) => {
  const places = [
    {
      prefix: '/api/v1/t/:tenant/audit',
      access: 'tenant' as const,
      read: 'alerts:read',
      write: 'alerts:write',
      params: TenantParams,
      chainOf: tenantIdOf,
      whose: "the tenant's",
      fourEyes: {},
      asks: '',
    },
    {
      prefix: '/api/v1/audit',
      access: 'operator' as const,
      read: 'platform-alerts:read',
      write: 'platform-alerts:write',
      params: undefined,
      chainOf: () => null,
      whose: 'the platform',
      // Weakening the platform's alerting is a platform four-eyes action (src/access/platform-actions.ts).
      fourEyes: { fourEyes: 'audit.alert-settings' },
      asks:
        '; weakening them (a rule off, a threshold raised, working hours widened, any change of channels) ' +
        'is asked for (202) and runs once another operator approved it',
    },
  ];
  for (const place of places) {
    const params = place.params ? { params: place.params } : {};
    const withId = place.params
      ? strictObject({ ...place.params.properties, ...AlertParams.properties })
      : AlertParams;

    app.get(
      `${place.prefix}/alerts`,
      {
        config: { access: place.access, permission: place.read },
        schema: {
          tags,
          summary: `List ${place.whose} alerts, newest first`,
          ...params,
          querystring: ListQuery,
          response: responses({ 200: AlertPage }),
        },
      },
      async (request) => alerts.list(place.chainOf(request), request.query),
    );

    app.post(
      `${place.prefix}/alerts/:id/acknowledge`,
      {
        config: { access: place.access, permission: place.write },
        schema: {
          tags,
          summary: `Acknowledge one of ${place.whose} alerts (audited)`,
          params: withId,
          body: AckBody,
          response: responses({ 200: Alert }),
        },
      },
      async (request) => {
        const { id } = request.params as { id: string };
        return alerts.acknowledge(
          place.chainOf(request),
          actionContext(request),
          id,
          request.body.note ?? null,
        );
      },
    );

    app.get(
      `${place.prefix}/alert-settings`,
      {
        config: { access: place.access, permission: place.read },
        schema: {
          tags,
          summary: `Read ${place.whose} anomaly rule thresholds, working hours and alert channels`,
          ...params,
          response: responses({ 200: Settings }),
        },
      },
      async (request) => alerts.getSettings(place.chainOf(request)),
    );

    app.put(
      `${place.prefix}/alert-settings`,
      {
        config: { access: place.access, permission: place.write, ...place.fourEyes },
        schema: {
          tags,
          summary: `Replace ${place.whose} anomaly rule settings and alert channels (audited)${place.asks}`,
          ...params,
          body: Settings,
          response: responses({
            200: SavedSettings,
            ...(place.fourEyes.fourEyes ? { 202: ApprovalRequired } : {}),
          }),
        },
      },
      async (request) => alerts.updateSettings(place.chainOf(request), actionContext(request), request.body),
    );
  }
};
