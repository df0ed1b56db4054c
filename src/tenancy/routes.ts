import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { actionContext } from '../platform/http/context.ts';
import { responses } from '../platform/http/schemas.ts';
import { tenancyError } from './errors.ts';
import { CreateTenantBody, ListQuery, SlugParams, SuspendBody, TenantPage, TenantSchema } from './schemas.ts';
import type { TenancyService } from './service.ts';

const tags = ['tenants'];
const readTenants = { access: 'operator', permission: 'tenants:read' } as const;
const writeTenants = { access: 'operator', permission: 'tenants:write' } as const;
const tenantRef = Type.Ref('Tenant');

// Cursors are opaque to clients: base64url of the last slug of the previous page.
const encodeCursor = (slug: string) => Buffer.from(slug, 'utf8').toString('base64url');
function decodeCursor(cursor: string | undefined): string | null {
  if (cursor === undefined) return null;
  const slug = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!/^[a-z][a-z0-9-]{1,38}[a-z0-9]$/.test(slug) || encodeCursor(slug) !== cursor) {
    throw tenancyError('bad_cursor', 'The cursor is not one this API returned; start again without it.');
  }
  return slug;
}

export const tenancyRoutes: FastifyPluginAsyncTypebox<{ tenancy: TenancyService }> = async (
  app,
  { tenancy },
) => {
  app.addSchema(TenantSchema);

  app.post(
    '/api/v1/tenants',
    {
      config: writeTenants,
      schema: {
        tags,
        summary: 'Create a tenant',
        body: CreateTenantBody,
        response: responses({ 201: tenantRef }),
      },
    },
    async (request, reply) =>
      reply.status(201).send(await tenancy.create(actionContext(request), request.body)),
  );

  app.get(
    '/api/v1/tenants',
    {
      config: readTenants,
      schema: {
        tags,
        summary: 'List tenants by slug',
        querystring: ListQuery,
        response: responses({ 200: TenantPage }),
      },
    },
    async (request) => {
      const page = await tenancy.list(decodeCursor(request.query.cursor), request.query.limit);
      const last = page.items.at(-1);
      return { items: page.items, nextCursor: page.more && last ? encodeCursor(last.slug) : null };
    },
  );

  app.get(
    '/api/v1/tenants/:slug',
    {
      config: readTenants,
      schema: { tags, summary: 'Get a tenant', params: SlugParams, response: responses({ 200: tenantRef }) },
    },
    async (request) => tenancy.get(request.params.slug),
  );

  app.post(
    '/api/v1/tenants/:slug/suspend',
    {
      config: writeTenants,
      schema: {
        tags,
        summary: 'Suspend a tenant: every tenant-facing request is refused until it is resumed',
        params: SlugParams,
        body: SuspendBody,
        response: responses({ 200: tenantRef }),
      },
    },
    async (request) => tenancy.suspend(actionContext(request), request.params.slug, request.body.reason),
  );

  app.post(
    '/api/v1/tenants/:slug/resume',
    {
      config: writeTenants,
      schema: {
        tags,
        summary: 'Resume a suspended tenant',
        params: SlugParams,
        response: responses({ 200: tenantRef }),
      },
    },
    async (request) => tenancy.resume(actionContext(request), request.params.slug),
  );
};
