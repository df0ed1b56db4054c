import { recordAuditEvent } from '../audit/index.ts';
import { createInvalidatedCache, type InvalidationBus } from '../platform/bus/index.ts';
import type { ActionContext, Clock } from '../platform/context.ts';
import { asTenantId, type Database, enterTenant, type SystemTx } from '../platform/db/index.ts';
import { tenancyError } from './errors.ts';
import { createTenantRepository, createTenantSettingsRepository, type TenantRow } from './repository.ts';
import type { TenancyTables } from './tables.ts';

export interface Tenant {
  id: string;
  slug: string;
  displayName: string;
  region: string;
  status: 'active' | 'suspended';
  suspendedReason: string | null;
  suspendedAt: string | null;
  createdAt: string;
}

export const toTenant = (row: TenantRow): Tenant => ({
  id: row.id,
  slug: row.slug,
  displayName: row.display_name,
  region: row.region,
  status: row.status,
  suspendedReason: row.suspended_reason,
  suspendedAt: row.suspended_at?.toISOString() ?? null,
  createdAt: row.created_at.toISOString(),
});

export interface TenancyDeps {
  db: Database;
  clock: Clock;
  /**
   * Suspension and resumption are announced on it, and requireActive caches tenants by slug while it
   * is given. Without one (CLI commands that neither suspend nor serve), nothing is cached.
   */
  bus?: InvalidationBus;
  /** A publish that failed after its change committed (the command itself succeeded). */
  onBackgroundError?: (error: unknown) => void;
}

/** Bus topic of tenant changes; the key is the tenant's slug. */
export const TENANTS_TOPIC = 'tenancy.tenants';
// The bus drops a tenant on every node when it is suspended or resumed; the TTL bounds a lost message.
const CACHE_TTL_MS = 30_000;
const CACHE_MAX_ENTRIES = 10_000;

export function createTenancyService({ db, clock, bus, onBackgroundError }: TenancyDeps) {
  const system = <R>(fn: (tx: SystemTx<TenancyTables>) => Promise<R>) => db.withSystem(fn);
  const cache = bus
    ? createInvalidatedCache<Tenant>({
        bus,
        topic: TENANTS_TOPIC,
        maxEntries: CACHE_MAX_ENTRIES,
        ttlMs: CACHE_TTL_MS,
      })
    : null;

  const slugById = new Map<string, string>();

  async function mustFind(tx: SystemTx<TenancyTables>, slug: string): Promise<TenantRow> {
    const row = await createTenantRepository(tx).bySlug(slug);
    if (!row) throw tenancyError('tenant_not_found', `No tenant has the slug "${slug}".`);
    return row;
  }

  async function changeStatus(
    ctx: ActionContext,
    slug: string,
    to: 'active' | 'suspended',
    reason: string | null,
  ) {
    const changed = await system(async (tx) => {
      const row = await mustFind(tx, slug);
      if (row.status === to) {
        throw tenancyError('tenant_state_conflict', `Tenant "${slug}" is already ${to}.`);
      }
      const now = clock.now();
      const updated = await createTenantRepository(tx).setStatus(
        row.id,
        to,
        to === 'suspended' ? reason : null,
        to === 'suspended' ? now : null,
      );
      await recordAuditEvent(tx, clock, ctx, {
        tenantId: null,
        action: to === 'suspended' ? 'tenancy.tenant.suspended' : 'tenancy.tenant.resumed',
        outcome: 'success',
        target: { type: 'tenant', id: row.id },
        details: { slug, reason },
      });
      return toTenant(updated);
    });
    // After the commit: every node drops its copy and reads the new status at its next request.
    await bus?.publish(TENANTS_TOPIC, slug).catch((error: unknown) => onBackgroundError?.(error));
    return changed;
  }

  return {
    async create(ctx: ActionContext, input: { slug: string; displayName: string; region: string }) {
      return system(async (tx) => {
        const row = await createTenantRepository(tx).insert({
          slug: input.slug,
          display_name: input.displayName,
          region: input.region,
        });
        if (!row) throw tenancyError('slug_taken', `The slug "${input.slug}" is taken; choose another.`);
        await recordAuditEvent(tx, clock, ctx, {
          tenantId: null,
          action: 'tenancy.tenant.created',
          outcome: 'success',
          target: { type: 'tenant', id: row.id },
          details: { slug: row.slug, region: row.region },
        });
        const scoped = await enterTenant(tx, asTenantId(row.id));
        await createTenantSettingsRepository(scoped).create(row.id);
        return toTenant(row);
      });
    },
    get: (slug: string) => system(async (tx) => toTenant(await mustFind(tx, slug))),
    async list(after: string | null, limit: number) {
      const rows = await system((tx) => createTenantRepository(tx).page(after, limit + 1));
      return { items: rows.slice(0, limit).map(toTenant), more: rows.length > limit };
    },
    suspend: (ctx: ActionContext, slug: string, reason: string) =>
      changeStatus(ctx, slug, 'suspended', reason),
    resume: (ctx: ActionContext, slug: string) => changeStatus(ctx, slug, 'active', null),
    /**
     * Whether the tenant with this id exists and is active: synchronous when this node holds it (the
     * decision API's hot path). A tenant's slug never changes, so the id-to-slug map needs no
     * invalidation; its status comes from the same bus-invalidated cache as requireActive's.
     */
    activeById(id: string): boolean | Promise<boolean> {
      const nowMs = clock.now().getTime();
      const slug = slugById.get(id);
      const cached = slug === undefined ? undefined : cache?.get(slug, nowMs);
      if (cached) return cached.status === 'active';
      const mark = cache?.mark() ?? 0;
      return system((tx) => createTenantRepository(tx).byId(id)).then((row) => {
        if (!row) return false;
        const tenant = toTenant(row);
        if (slugById.size >= CACHE_MAX_ENTRIES) slugById.clear();
        slugById.set(id, tenant.slug);
        cache?.put(tenant.slug, tenant, mark, nowMs);
        return tenant.status === 'active';
      });
    },
    /**
     * For every tenant-facing capability: the tenant behind a slug, refused when suspended. Served from
     * this node's cache when it holds the tenant; suspension is published on the bus, so every node
     * refuses from its next request after the message arrives.
     */
    async requireActive(slug: string): Promise<Tenant> {
      const nowMs = clock.now().getTime();
      let tenant = cache?.get(slug, nowMs);
      if (!tenant) {
        const mark = cache?.mark() ?? 0;
        tenant = await this.get(slug);
        cache?.put(slug, tenant, mark, nowMs);
      }
      if (tenant.status === 'suspended') {
        throw tenancyError(
          'tenant_suspended',
          `Tenant "${slug}" is suspended; contact the platform operator.`,
        );
      }
      return tenant;
    },
  };
}

export type TenancyService = ReturnType<typeof createTenancyService>;
