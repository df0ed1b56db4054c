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
/** Bus topic of new tenants; the key is the tenant's id (drops "no such tenant" answers on every node). */
export const TENANT_IDS_TOPIC = 'tenancy.tenant-ids';
// Ids no tenant has are remembered briefly: a stream of made-up ids then costs one read per id, not one
// per check. New tenants are announced, so the TTL only bounds a lost message.
const UNKNOWN_TTL_MS = 10_000;
const UNKNOWN_MAX_ENTRIES = 10_000;

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
  const unknownIds = bus
    ? createInvalidatedCache<true>({
        bus,
        topic: TENANT_IDS_TOPIC,
        maxEntries: UNKNOWN_MAX_ENTRIES,
        ttlMs: UNKNOWN_TTL_MS,
      })
    : null;

  const slugById = new Map<string, string>();
  // Reads by id in flight, joined by checks of the same tenant that arrive together (one batch) unless
  // an invalidation arrived since the read started.
  const readsById = new Map<string, { marks: string; active: Promise<boolean> }>();
  const marks = () => `${cache?.mark() ?? 0}:${unknownIds?.mark() ?? 0}`;

  async function readById(id: string, nowMs: number): Promise<boolean> {
    const mark = cache?.mark() ?? 0;
    const unknownMark = unknownIds?.mark() ?? 0;
    const row = await system((tx) => createTenantRepository(tx).byId(id));
    if (!row) {
      unknownIds?.put(id, true, unknownMark, nowMs);
      return false;
    }
    const tenant = toTenant(row);
    if (slugById.size >= CACHE_MAX_ENTRIES) slugById.clear();
    slugById.set(id, tenant.slug);
    cache?.put(tenant.slug, tenant, mark, nowMs);
    return tenant.status === 'active';
  }

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
      // Locked: of two suspends (or resumes) sent together, the second sees the first's status and is
      // refused, instead of writing its reason over the first's and auditing a second change.
      const row = await createTenantRepository(tx).lockBySlug(slug);
      if (!row) throw tenancyError('tenant_not_found', `No tenant has the slug "${slug}".`);
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
      const created = await system(async (tx) => {
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
      // After the commit: a node that answered "no such tenant" for this id forgets it.
      await bus?.publish(TENANT_IDS_TOPIC, created.id).catch((error: unknown) => onBackgroundError?.(error));
      return created;
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
     * invalidation; its status comes from the same bus-invalidated cache as requireActive's. An id no
     * tenant has is answered from a short-lived cache of such ids; `id` must be a uuid.
     */
    activeById(id: string): boolean | Promise<boolean> {
      const nowMs = clock.now().getTime();
      const slug = slugById.get(id);
      const cached = slug === undefined ? undefined : cache?.get(slug, nowMs);
      if (cached) return cached.status === 'active';
      if (unknownIds?.get(id, nowMs)) return false;
      const current = marks();
      const pending = readsById.get(id);
      if (pending?.marks === current) return pending.active;
      const active = readById(id, nowMs).finally(() => {
        if (readsById.get(id)?.active === active) readsById.delete(id);
      });
      readsById.set(id, { marks: current, active });
      return active;
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
