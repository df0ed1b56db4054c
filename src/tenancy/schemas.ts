import { Type } from '@sinclair/typebox';
import { strictObject, Text, Timestamp, Uuid } from '../platform/http/schemas.ts';

export const Slug = Type.String({
  pattern: '^[a-z][a-z0-9-]{1,38}[a-z0-9]$',
  description: '3–40 characters: lowercase letters, digits and hyphens; starts with a letter.',
  examples: ['acme-bank'],
});

export const Region = Type.String({
  pattern: '^[a-z]{2}(-[a-z0-9]{2,12})?$',
  description: 'Residency label: a two-letter area, optionally a location (eu-de, eu-fr, us-east1).',
  examples: ['eu-de'],
});

export const TenantSchema = strictObject(
  {
    id: Uuid,
    slug: Slug,
    displayName: Type.String(),
    region: Region,
    status: Type.Union([Type.Literal('active'), Type.Literal('suspended')]),
    suspendedReason: Type.Union([Type.String(), Type.Null()]),
    suspendedAt: Type.Union([Timestamp, Type.Null()]),
    createdAt: Timestamp,
  },
  { $id: 'Tenant' },
);

export const CreateTenantBody = strictObject({
  slug: Slug,
  displayName: Text({ minLength: 1, maxLength: 200 }),
  region: Region,
});

export const SlugParams = strictObject({ slug: Slug });

export const SuspendBody = strictObject({ reason: Text({ minLength: 1, maxLength: 500, multiline: true }) });

export const ListQuery = strictObject({
  limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
  cursor: Type.Optional(Type.String({ maxLength: 200, description: 'nextCursor from the previous page' })),
});

export const TenantPage = strictObject({
  items: Type.Array(Type.Ref('Tenant')),
  nextCursor: Type.Union([Type.String(), Type.Null()]),
});
