import ipaddr from 'ipaddr.js';
import { recordAuditEvent } from '../../audit/index.ts';
import { createInvalidatedCache, type InvalidationBus } from '../../platform/bus/index.ts';
import type { ActionContext, Clock } from '../../platform/context.ts';
import { asTenantId, type Database, type TenantTx } from '../../platform/db/index.ts';
import { protectError } from '../errors.ts';
import { parseCidrs } from '../outbound/addresses.ts';
import type { TenantPolicy } from './schemas.ts';

interface PolicyTables {
  protect_tenant_policy: {
    tenant_id: string;
    admin_allow_cidrs: string[];
    cors_origins: string[];
    updated_at: Date;
  };
}

export interface LoadedPolicy extends TenantPolicy {
  /** True when the address may act as an administrator of the tenant. */
  adminAllowed(address: string): boolean;
}

const TOPIC = 'protect.tenant-policy';
const empty: TenantPolicy = { adminAllowCidrs: [], corsOrigins: [] };

function load(policy: TenantPolicy): LoadedPolicy {
  const networks = parseCidrs(policy.adminAllowCidrs, 'adminAllowCidrs');
  return {
    ...policy,
    adminAllowed(address) {
      if (networks.length === 0) return true;
      let parsed: ipaddr.IPv4 | ipaddr.IPv6;
      try {
        parsed = ipaddr.process(address);
      } catch {
        return false;
      }
      return networks.some(([net, bits]) => net.kind() === parsed.kind() && parsed.match(net, bits));
    },
  };
}

/** An origin as browsers send it: scheme, host and port only, lower case; anything else is refused. */
function normaliseOrigin(value: string): string | null {
  try {
    const url = new URL(value);
    if (url.protocol !== 'https:' && url.protocol !== 'http:') return null;
    return url.origin === value.toLowerCase() ? url.origin : null;
  } catch {
    return null;
  }
}

function validate(input: TenantPolicy, callerIp: string): TenantPolicy {
  const badCidrs = input.adminAllowCidrs.filter((c) => {
    try {
      parseCidrs([c], 'adminAllowCidrs');
      return false;
    } catch {
      return true;
    }
  });
  const origins = input.corsOrigins.map((o) => [o, normaliseOrigin(o)] as const);
  const badOrigins = origins.filter(([, o]) => o === null).map(([raw]) => raw);
  if (badCidrs.length > 0 || badOrigins.length > 0) {
    throw protectError('invalid_policy', 'Some entries are not valid; each is named below.', {
      errors: [
        ...badCidrs.map((c) => ({
          pointer: '/body/adminAllowCidrs',
          message: `"${c}" is not an address or CIDR`,
        })),
        ...badOrigins.map((o) => ({
          pointer: '/body/corsOrigins',
          message: `"${o}" is not an origin (scheme://host[:port], nothing after it)`,
        })),
      ],
    });
  }
  const policy = { adminAllowCidrs: input.adminAllowCidrs, corsOrigins: origins.map(([, o]) => o as string) };
  if (!load(policy).adminAllowed(callerIp)) {
    throw protectError(
      'would_lock_out',
      `adminAllowCidrs does not include your current address (${callerIp}); add it, or you could not administer the tenant any more.`,
    );
  }
  return policy;
}

/** Per-tenant network policy: admin address allowlist and CORS origins; cached on every node, invalidated through the bus. */
export function createTenantPolicyService(deps: {
  db: Database;
  clock: Clock;
  bus: InvalidationBus;
  /** A publish that failed after its change committed (the update itself succeeded). */
  onBackgroundError?: (error: unknown) => void;
}) {
  const cache = createInvalidatedCache<LoadedPolicy>({
    bus: deps.bus,
    topic: TOPIC,
    maxEntries: 10_000,
    ttlMs: 60_000,
  });
  const read = (tx: TenantTx<PolicyTables>) =>
    tx.selectFrom('protect_tenant_policy').selectAll().executeTakeFirst();

  async function get(tenantId: string): Promise<LoadedPolicy> {
    const now = deps.clock.now().getTime();
    const cached = cache.get(tenantId, now);
    if (cached) return cached;
    const mark = cache.mark();
    const row = await deps.db.withTenant<PolicyTables, Awaited<ReturnType<typeof read>>>(
      asTenantId(tenantId),
      read,
    );
    const policy = load(
      row ? { adminAllowCidrs: row.admin_allow_cidrs, corsOrigins: row.cors_origins } : empty,
    );
    cache.put(tenantId, policy, mark, now);
    return policy;
  }

  async function update(tenantId: string, ctx: ActionContext, input: TenantPolicy): Promise<TenantPolicy> {
    const policy = validate(input, ctx.ip ?? '');
    await deps.db.withTenant<PolicyTables, void>(asTenantId(tenantId), async (tx) => {
      const values = {
        admin_allow_cidrs: policy.adminAllowCidrs,
        cors_origins: policy.corsOrigins,
        updated_at: deps.clock.now(),
      };
      await tx
        .insertInto('protect_tenant_policy')
        .values({ tenant_id: tenantId, ...values })
        .onConflict((oc) => oc.column('tenant_id').doUpdateSet(values))
        .execute();
      await recordAuditEvent(tx, deps.clock, ctx, {
        tenantId,
        action: 'protect.tenant_policy.updated',
        outcome: 'success',
        target: { type: 'tenant', id: tenantId },
        details: {
          adminAllowCidrs: policy.adminAllowCidrs.join(','),
          corsOrigins: policy.corsOrigins.join(','),
        },
      });
    });
    // After the commit: every node drops its copy (the cache's TTL bounds a lost message). A failed
    // publish is reported, not answered: the change stands, and a 500 would say it did not.
    await deps.bus.publish(TOPIC, tenantId).catch((error: unknown) => deps.onBackgroundError?.(error));
    return policy;
  }

  return { get, update, close: () => cache.close() };
}

export type TenantPolicyService = ReturnType<typeof createTenantPolicyService>;
