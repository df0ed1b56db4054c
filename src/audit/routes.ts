import { Readable } from 'node:stream';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { actionContext } from '../platform/http/context.ts';
import { responses, strictObject } from '../platform/http/schemas.ts';
import { auditActions } from './catalogue.ts';
import { auditError } from './errors.ts';
import { TenantParams, tenantIdOf } from './http.ts';
import {
  ApprovalRequired,
  AuditEventPage,
  AuditEventSchema,
  ExportFilters,
  ExportQuery,
  SearchQuery,
  VolumePage,
  VolumeQuery,
} from './schemas.ts';
import type { EventView } from './search.ts';
import type { AuditService } from './service.ts';
import type { SinkService } from './sink-service.ts';
import { volumeSvg } from './volume.ts';

const tags = ['audit'];
const JsonLines = Type.String({ description: 'JSON Lines (application/x-ndjson): one AuditEvent per line' });
const NotRequired = strictObject({ status: Type.Literal('not_required'), message: Type.String() });

/** Streams events as JSON Lines; an error after the first line ends the stream (the client sees it cut). */
const jsonLines = (events: AsyncGenerator<EventView>) =>
  Readable.from(
    (async function* () {
      for await (const event of events) yield `${JSON.stringify(event)}\n`;
    })(),
  );

/**
 * Search and export. Tenant routes (`access: 'tenant'`): users with `audit:read`/`audit:export` in the
 * tenant, or operators under an approved elevation. Platform routes: operators, platform events only
 * (row-level security hides every tenant's events from a platform scope).
 */
const SinkKind = Type.Union([Type.Literal('webhook'), Type.Literal('syslog')]);
const Sink = strictObject({
  id: Type.String({ format: 'uuid' }),
  kind: SinkKind,
  url: Type.String({
    description:
      'Where it sends, without query string, fragment or user info (an intake may take its key in the ' +
      'query): as the operator asked for it, less those',
  }),
  state: Type.Union([Type.Literal('active'), Type.Literal('draining')], {
    description: 'draining: disabled, delivering its backlog (the disable notice last), then it stops',
  }),
  createdAt: Type.String({ format: 'date-time' }),
  pending: Type.Integer({
    description:
      'Events waiting for delivery, counted up to the maximum backlog + 1 (AUDIT_SINK_MAX_BACKLOG)',
  }),
  oldestPendingAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  failures: Type.Integer({ description: 'Consecutive failed deliveries; while above 0 the sink is probed' }),
  nextAttemptAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
    description: 'When the sink is tried next while backing off (or leased to a node); null when due',
  }),
  lastErrorClass: Type.Union([Type.String(), Type.Null()], {
    description:
      'Class of the last failure: timeout, connection_refused, http_5xx, http_redirect, tls, dns, ...',
  }),
  lastFailureAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  overflowingSince: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
    description: 'Set while the backlog is at its maximum and its oldest events are dropped',
  }),
  dropped: Type.Integer({ description: 'Events dropped from its backlog since the sink was added' }),
});
const Disabled = strictObject({
  state: Type.Union([Type.Literal('draining'), Type.Literal('stopped')]),
  dropped: Type.Integer({ description: 'Undelivered events dropped (stopping at once)' }),
});

export const auditRoutes: FastifyPluginAsyncTypebox<{ audit: AuditService; sinks: SinkService }> = async (
  app,
  { audit, sinks },
) => {
  app.addSchema(AuditEventSchema);

  app.get(
    '/api/v1/t/:tenant/audit/events',
    {
      config: { access: 'tenant', permission: 'audit:read' },
      schema: {
        tags,
        summary: "Search the tenant's audit trail, newest first",
        params: TenantParams,
        querystring: SearchQuery,
        response: responses({ 200: AuditEventPage }),
      },
    },
    async (request) => audit.search(tenantIdOf(request), request.query, actionContext(request)),
  );

  app.get(
    '/api/v1/t/:tenant/audit/export',
    {
      // Four-eyes by default: the download then needs `approval`, an approved export request of the
      // caller's for exactly these filters, which it uses up (src/access/http.ts, fourEyesGate).
      config: { access: 'tenant', permission: 'audit:export', fourEyes: 'audit.export' },
      schema: {
        tags,
        summary: "Download the tenant's audit events matching the filters as JSON Lines (audited)",
        params: TenantParams,
        querystring: ExportQuery,
        response: responses({ 200: JsonLines }),
      },
    },
    async (request, reply) => {
      const { approval: _approval, ...filters } = request.query;
      const events = await audit.exportEvents(tenantIdOf(request), actionContext(request), filters);
      return reply.type('application/x-ndjson; charset=utf-8').send(jsonLines(events));
    },
  );

  app.post(
    '/api/v1/t/:tenant/audit/export-requests',
    {
      // Answered 202 by the four-eyes gate with the approval request, when the tenant needs one.
      config: { access: 'tenant', permission: 'audit:export', fourEyes: 'audit.export' },
      schema: {
        tags,
        summary: 'Ask a second person to approve an export with these filters (202 with the request)',
        params: TenantParams,
        body: ExportFilters,
        response: responses({ 200: NotRequired }),
      },
    },
    async (request) => {
      audit.checkFilters(request.body);
      return {
        status: 'not_required' as const,
        message: 'This tenant does not require approval for exports: download them directly.',
      };
    },
  );

  app.get(
    '/api/v1/audit/events',
    {
      config: { access: 'operator', permission: 'platform-audit:read' },
      schema: {
        tags,
        summary: 'Search the platform audit trail (operators and platform jobs), newest first',
        querystring: SearchQuery,
        response: responses({ 200: AuditEventPage }),
      },
    },
    async (request) => audit.search(null, request.query),
  );

  app.get(
    '/api/v1/audit/export',
    {
      config: { access: 'operator', permission: 'platform-audit:read' },
      schema: {
        tags,
        summary: 'Download platform audit events matching the filters as JSON Lines (audited)',
        querystring: ExportQuery,
        response: responses({ 200: JsonLines }),
      },
    },
    async (request, reply) => {
      const events = await audit.exportEvents(null, actionContext(request), request.query);
      return reply.type('application/x-ndjson; charset=utf-8').send(jsonLines(events));
    },
  );

  const ActionList = Type.Array(
    strictObject({ action: Type.String(), capability: Type.String(), description: Type.String() }),
  );
  for (const [url, access, permission] of [
    ['/api/v1/audit/actions', 'operator', 'platform-audit:read'],
    ['/api/v1/t/:tenant/audit/actions', 'tenant', 'audit:read'],
  ] as const) {
    app.get(
      url,
      {
        config: { access, permission },
        schema: {
          tags,
          summary: 'The catalogue of audit actions: every action an event may name, with its meaning',
          ...(access === 'tenant' ? { params: TenantParams } : {}),
          response: responses({ 200: ActionList }),
        },
      },
      async () => auditActions(),
    );
  }

  // Audit volume, as numbers and as a picture (volume.ts): counts by outcome, no event read out.
  const Svg = Type.String({ description: 'image/svg+xml: a bar chart, one bar per hour or day' });
  for (const [base, access, permission] of [
    ['/api/v1/audit/volume', 'operator', 'platform-audit:read'],
    ['/api/v1/t/:tenant/audit/volume', 'tenant', 'audit:read'],
  ] as const) {
    const chainOf = (request: Parameters<typeof tenantIdOf>[0]) =>
      access === 'tenant' ? tenantIdOf(request) : null;
    app.get(
      base,
      {
        config: { access, permission },
        schema: {
          tags,
          summary: 'Events per hour or day, by outcome',
          ...(access === 'tenant' ? { params: TenantParams } : {}),
          querystring: VolumeQuery,
          response: responses({ 200: VolumePage }),
        },
      },
      async (request) => audit.volume(chainOf(request), request.query),
    );
    app.get(
      `${base}.svg`,
      {
        config: { access, permission },
        schema: {
          tags,
          summary: 'Events per hour or day, by outcome, as an SVG bar chart',
          ...(access === 'tenant' ? { params: TenantParams } : {}),
          querystring: VolumeQuery,
          response: responses({ 200: Svg }),
        },
      },
      async (request, reply) => {
        const volume = await audit.volume(chainOf(request), request.query);
        const label =
          access === 'tenant' ? `Tenant ${(request.params as { tenant: string }).tenant}` : 'Platform';
        return reply.type('image/svg+xml; charset=utf-8').send(volumeSvg(volume, label));
      },
    );
  }

  app.post(
    '/api/v1/audit/sinks',
    {
      // Four-eyes between two operators, always: the gate records the request and answers 202 with it;
      // another operator approves (POST /api/v1/access/platform-approvals/:id/approve) and the requester
      // runs it once (.../execute), which adds the sink and returns it (with a webhook's secret, once).
      config: { access: 'operator', permission: 'audit-sinks:write', fourEyes: 'audit.sinks' },
      schema: {
        tags,
        summary:
          'Ask to add a SIEM sink (202: another operator approves, then you run it): an HTTPS webhook (signed, Standard Webhooks) or syslog over TLS (RFC 5424/5425)',
        body: strictObject({
          kind: SinkKind,
          url: Type.String({
            minLength: 8,
            maxLength: 2000,
            description:
              'https://... (webhook), syslog+tls://host:6514 (syslog; syslog+tcp:// only on loopback)',
          }),
          caPem: Type.Optional(
            Type.String({
              minLength: 1,
              maxLength: 20_000,
              description: "Syslog over TLS: PEM of the private CA that signs the receiver's certificate",
            }),
          ),
        }),
        response: responses({ 202: ApprovalRequired }),
      },
    },
    async (request) => {
      // Reached only when the gate let the request through, which it never does for valid input: a sink
      // is added only by an approved request's execution. Defence in depth: refuse, never add one here.
      sinks.check(request.body);
      throw auditError('approval_required', 'Adding a SIEM sink needs another operator\u2019s approval.');
    },
  );

  app.get(
    '/api/v1/audit/sinks',
    {
      config: { access: 'operator', permission: 'platform-audit:read' },
      schema: {
        tags,
        summary: 'SIEM sinks still delivering (active and draining), their backlog and delivery state',
        response: responses({ 200: Type.Array(Sink) }),
      },
    },
    async () => sinks.list(),
  );

  app.delete(
    '/api/v1/audit/sinks/:id',
    {
      config: { access: 'operator', permission: 'audit-sinks:write' },
      schema: {
        tags,
        summary:
          'Disable a sink: 202, it drains its backlog and the disable notice, then stops; ?now=true stops it at once (200, its backlog dropped and counted)',
        params: strictObject({ id: Type.String({ format: 'uuid' }) }),
        querystring: strictObject({
          now: Type.Optional(
            Type.Boolean({
              description: 'Stop at once, dropping the undelivered backlog (audited with the count)',
            }),
          ),
        }),
        response: responses({ 200: Disabled, 202: Disabled }),
      },
    },
    async (request, reply) => {
      const result = await sinks.disable(actionContext(request), request.params.id, {
        now: request.query.now === true,
      });
      return reply.status(result.state === 'draining' ? 202 : 200).send(result);
    },
  );
};
