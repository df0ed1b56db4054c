import { type Static, Type } from '@sinclair/typebox';
import { strictObject } from '../../platform/http/schemas.ts';

export const TenantPolicy = strictObject({
  adminAllowCidrs: Type.Array(Type.String({ minLength: 2, maxLength: 49 }), {
    maxItems: 100,
    description: 'Addresses or CIDRs administrators may work from; empty = anywhere.',
  }),
  corsOrigins: Type.Array(Type.String({ minLength: 8, maxLength: 300 }), {
    maxItems: 50,
    description: 'Browser origins (scheme://host[:port]) allowed to call this tenant’s API; empty = none.',
  }),
});
export type TenantPolicy = Static<typeof TenantPolicy>;
