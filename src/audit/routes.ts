import { Readable } from 'node:stream';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyRequest } from 'fastify';
import { actionContext } from '../platform/http/context.ts';
import { responses, strictObject } from '../platform/http/schemas.ts';
import { AuditEventPage, AuditEventSchema, ExportQuery, SearchQuery } from './schemas.ts';
import type { EventView } from './search.ts';
import type { AuditService } from './service.ts';

const tags = ['audit'];
const TenantParams = strictObject({ tenant: Type.String({ pattern: '^[a-z][a-z0-9-]{1,38}[a-z0-9]$' }) });
const JsonLines = Type.String({ description: 'JSON Lines (application/x-ndjson): one AuditEvent per line' });

function tenantIdOf(request: FastifyRequest): string {
  const tenant = (request as { tenant?: { id: string } | null }).tenant;
  if (!tenant) throw new Error('tenant route reached without a tenant');
  return tenant.id;
}

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
export const auditRoutes: FastifyPluginAsyncTypebox<{ audit: AuditService }> = async (app, { audit }) => {
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
    async (request) => audit.search(tenantIdOf(request), request.query),
  );

  app.get(
    '/api/v1/t/:tenant/audit/export',
    {
      config: { access: 'tenant', permission: 'audit:export' },
      schema: {
        tags,
        summary: "Download the tenant's audit events matching the filters as JSON Lines (audited)",
        params: TenantParams,
        querystring: ExportQuery,
        response: responses({ 200: JsonLines }),
      },
    },
    async (request, reply) => {
      const events = await audit.exportEvents(tenantIdOf(request), actionContext(request), request.query);
      return reply.type('application/x-ndjson; charset=utf-8').send(jsonLines(events));
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
};
