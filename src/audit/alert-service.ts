import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import type { ActionContext, Clock } from '../platform/context.ts';
import type { SecretBox } from '../platform/crypto/keys.ts';
import type { Database, SystemTx } from '../platform/db/index.ts';
import { alertSecretPurpose } from './alert-delivery.ts';
import { type AlertRow, type AlertView, parsed, readAlertSettings, toAlertView } from './alert-engine.ts';
import { effectiveRules, type RuleSettings, timeZoneProblem, type WorkingHours } from './alert-rules.ts';
import { alertSettingsWeakening, keepStoredUrl, shownSettings } from './alert-weakening.ts';
import { auditableUrl } from './details.ts';
import { auditError } from './errors.ts';
import { recordAuditEvent } from './record.ts';
import { checkSinkUrl, type SinkApproval } from './sink-input.ts';
import { type ChainTx, chainFilter, inChain } from './store.ts';
import type { AuditTables } from './tables.ts';

export interface AlertSettingsView {
  rules: RuleSettings;
  workingHours: WorkingHours | null;
  channels: { emails: string[]; webhookUrl: string | null };
}

export interface AlertServiceDeps {
  db: Database;
  clock: Clock;
  box: SecretBox;
  /** Identity's email normalisation: the lower-cased address, or null when it is not one. */
  normaliseEmail(raw: string): string | null;
  /**
   * Access's check that the caller may make this change of a tenant's alert settings (where its alerts
   * go; what in it weakens the rules), run on the locked settings row (throws 403). Absent: not checked.
   */
  checkTenantChange?: (ctx: ActionContext, change: { channels: boolean; weakened: string[] }) => void;
  /**
   * The egress guard's verdict on a webhook URL a tenant sets (Protect's `precheck`, chosen by the
   * tenant): why it would be refused, or null. A tenant admin learns at once that 127.0.0.1 or
   * 169.254.169.254 is not a destination, instead of from a delivery given up days later.
   */
  tenantWebhookRefusal?: (url: string) => string | null;
  /**
   * Access's check that the caller may acknowledge this alert of a tenant (throws 403), run with its row
   * updated and locked, so a refusal rolls the acknowledgement back. Absent: not checked.
   */
  checkTenantAcknowledgement?: (ctx: ActionContext, alert: { rule: string }) => void;
}

function encodeCursor(row: Pick<AlertRow, 'raised_at' | 'id'>): string {
  return Buffer.from(`${row.raised_at.toISOString()}|${row.id}`, 'utf8').toString('base64url');
}

const cursorText =
  /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\|([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;

/**
 * Only a cursor encodeCursor wrote: its exact time (years 1-9999: PGlite answers later ones with an
 * error, a 500) and a lower-case UUID, encoded back to the same text.
 */
function decodeCursor(cursor: string | undefined): { at: Date; id: string } | null {
  if (cursor === undefined) return null;
  const [, at, id] = cursorText.exec(Buffer.from(cursor, 'base64url').toString('utf8')) ?? [];
  const time = new Date(at ?? '');
  const exact = at !== undefined && !at.startsWith('0000') && !Number.isNaN(time.getTime());
  if (!exact || !id || time.toISOString() !== at || encodeCursor({ raised_at: time, id }) !== cursor) {
    throw auditError('bad_cursor', 'The cursor is not one this API returned; start again without it.');
  }
  return { at: time, id };
}

/**
 * The chain's settings row, locked until the transaction ends. While the chain has none (the defaults
 * apply) there is nothing to lock, so an advisory lock on the chain serialises writers first: two never
 * decide against settings the other is about to replace.
 */
async function lockSettings(tx: ChainTx, tenantId: string | null) {
  await sql`SELECT pg_advisory_xact_lock(hashtext('rampart.audit_alert_settings'), hashtext(${tenantId ?? 'platform'}))`.execute(
    tx,
  );
  return readAlertSettings(tx, tenantId, true);
}

/** Alert settings, listing and acknowledgement of one chain: a tenant's (RLS-scoped) or the platform's. */
/** Whether `next` sends alerts anywhere `before` did not, or stops sending them somewhere it did. */
function channelsChange(before: AlertSettingsView, next: AlertSettingsView): boolean {
  const emails = (v: AlertSettingsView) => [...v.channels.emails].sort().join('\n');
  return emails(before) !== emails(next) || before.channels.webhookUrl !== next.channels.webhookUrl;
}

export function createAlertService(deps: AlertServiceDeps) {
  const { db, clock } = deps;
  const scoped = <R>(tenantId: string | null, fn: (tx: ChainTx) => Promise<R>) => inChain(db, tenantId, fn);

  const view = (row: Awaited<ReturnType<typeof readAlertSettings>>): AlertSettingsView => ({
    rules: effectiveRules(parsed(row?.rules)),
    workingHours: (parsed(row?.working_hours) ?? null) as WorkingHours | null,
    channels: { emails: row?.emails ?? [], webhookUrl: row?.webhook_url ?? null },
  });

  function checkSettings(input: AlertSettingsView, tenantId: string | null): AlertSettingsView {
    const problem = input.workingHours ? timeZoneProblem(input.workingHours.timeZone) : null;
    if (problem) throw auditError('bad_alert_settings', problem);
    const emails = input.channels.emails.map((raw) => {
      const email = deps.normaliseEmail(raw);
      if (!email) throw auditError('bad_alert_settings', `"${raw.slice(0, 100)}" is not an email address.`);
      return email;
    });
    const webhookUrl =
      input.channels.webhookUrl === null
        ? null
        : checkSinkUrl(input.channels.webhookUrl, 'bad_alert_settings');
    const refusal = webhookUrl !== null && tenantId !== null ? deps.tenantWebhookRefusal?.(webhookUrl) : null;
    if (refusal) {
      throw auditError(
        'bad_alert_settings',
        `The egress guard refuses this webhook URL (${refusal}): a tenant's webhook reaches public addresses only.`,
      );
    }
    return { ...input, channels: { emails: [...new Set(emails)], webhookUrl } };
  }

  return {
    getSettings: (tenantId: string | null) =>
      scoped(tenantId, async (tx) => shownSettings(view(await readAlertSettings(tx, tenantId)))),

    /**
     * For the platform's four-eyes gate: the checked settings and what in them weakens the platform's
     * alerting now (none: they pass alone). Input no change could run with is refused (400) here.
     * `next` is as sent (the webhook URL as reads show it stays so: it becomes the approval's params).
     */
    async planPlatformUpdate(input: AlertSettingsView) {
      const next = checkSettings(input, null);
      const current = view(await scoped(null, (tx) => readAlertSettings(tx, null)));
      return { next, current, weakened: alertSettingsWeakening(current, keepStoredUrl(next, current)) };
    },

    /** The platform's settings read in the caller's platform transaction, locked until it commits. */
    lockedPlatform: async (tx: SystemTx<AuditTables>) => view(await lockSettings(tx, null)),

    /**
     * Replaces the chain's alert settings. A new webhook URL gets a new signing secret, returned once.
     * Audited with what changed in outline (rules off, channels), never the secret.
     */
    updateSettings: (
      tenantId: string | null,
      ctx: ActionContext,
      input: AlertSettingsView,
      // An approved weakening of the platform's settings (four-eyes): its re-check and ids.
      approval?: SinkApproval,
    ) =>
      scoped(tenantId, async (tx) => {
        const checked = checkSettings(input, tenantId);
        if (approval) await approval.guard(tx as SystemTx<AuditTables>);
        const before = await lockSettings(tx, tenantId);
        const was = view(before);
        const next = keepStoredUrl(checked, was);
        // The gate compared before this transaction: decided again here on the locked row, so a change
        // committed meanwhile never turns this into a weakening that runs unapproved.
        const weakened = alertSettingsWeakening(was, next);
        if (tenantId === null && weakened.length > 0 && !approval) {
          throw auditError(
            'alert_settings_changed',
            `Against the platform's alert settings now, this would weaken them (${weakened.join('; ')}), ` +
              'which needs another operator’s approval (they changed while this request was checked). ' +
              'Nothing was changed; send the request again to ask for approval.',
          );
        }
        // Who may change where a tenant's alerts go, or weaken its rules, is Access's to say (docs/access.md).
        if (tenantId !== null) {
          deps.checkTenantChange?.(ctx, { channels: channelsChange(was, next), weakened });
        }
        const url = next.channels.webhookUrl;
        const keepSecret = url !== null && url === before?.webhook_url && before.webhook_secret_sealed;
        const secret = url !== null && !keepSecret ? `whsec_${randomBytes(32).toString('base64')}` : null;
        const sealed = keepSecret
          ? before.webhook_secret_sealed
          : secret
            ? deps.box.seal(secret, alertSecretPurpose(tenantId))
            : null;
        const values = sql`${JSON.stringify(next.rules)}::jsonb, ${next.workingHours ? JSON.stringify(next.workingHours) : null}::jsonb,
          ${sql.val(next.channels.emails)}::text[], ${url}, ${sealed}, ${clock.now()}`;
        if (before) {
          await sql`UPDATE audit_alert_settings SET (rules, working_hours, emails, webhook_url,
              webhook_secret_sealed, updated_at) = (${values}) WHERE ${chainFilter(tenantId)}`.execute(tx);
        } else {
          await sql`INSERT INTO audit_alert_settings (tenant_id, rules, working_hours, emails, webhook_url,
              webhook_secret_sealed, updated_at) VALUES (${tenantId}, ${values})`.execute(tx);
        }
        const off = Object.entries(next.rules)
          .filter(([, r]) => !r.enabled)
          .map(([id]) => id);
        await recordAuditEvent(tx, clock, ctx, {
          tenantId,
          action: 'audit.alert_settings.updated',
          outcome: 'success',
          details: {
            rulesOff: off.join(',') || null,
            workingHours: next.workingHours
              ? `${next.workingHours.days.join('')} ${next.workingHours.start}-${next.workingHours.end} ${next.workingHours.timeZone}`
              : null,
            emails: next.channels.emails.length,
            webhookUrl: url === null ? null : auditableUrl(url),
            newWebhookSigner: secret !== null,
            // What this change weakens, on every path: a threshold raised a thousandfold switches a
            // rule off in all but name, and the event is the only record of it.
            weakened: weakened.join('; ') || null,
            ...(approval
              ? {
                  approval: approval.approvalId,
                  approvedBy: approval.approvedBy,
                }
              : {}),
          },
        });
        return { ...shownSettings(next), ...(secret ? { webhookSecret: secret } : {}) };
      }),

    list: (
      tenantId: string | null,
      input: { status?: 'open' | 'acknowledged'; rule?: string; limit: number; cursor?: string },
    ) =>
      scoped(tenantId, async (tx) => {
        const after = decodeCursor(input.cursor);
        const { rows } = await sql<AlertRow>`
          SELECT * FROM audit_alerts WHERE ${chainFilter(tenantId)}
            ${input.status ? sql`AND status = ${input.status}` : sql``}
            ${input.rule ? sql`AND rule = ${input.rule}` : sql``}
            ${after ? sql`AND (raised_at, id) < (${after.at}, ${after.id}::uuid)` : sql``}
          ORDER BY raised_at DESC, id DESC LIMIT ${input.limit + 1}`.execute(tx);
        const page = rows.slice(0, input.limit);
        const last = page.at(-1);
        return {
          items: page.map(toAlertView),
          nextCursor: rows.length > input.limit && last ? encodeCursor(last) : null,
        };
      }),

    /** Marks an open alert as handled by this person (audited); matches soon after still add to it. */
    acknowledge: (tenantId: string | null, ctx: ActionContext, id: string, note: string | null) =>
      scoped(tenantId, async (tx): Promise<AlertView> => {
        const actor = ctx.actor.id === null ? ctx.actor.type : `${ctx.actor.type}:${ctx.actor.id}`;
        const { rows } = await sql<AlertRow>`
          UPDATE audit_alerts SET status = 'acknowledged', acknowledged_at = ${clock.now()},
            acknowledged_by = ${actor}, acknowledgement_note = ${note}
          WHERE ${chainFilter(tenantId)} AND id = ${id} AND status = 'open' RETURNING *`.execute(tx);
        const row = rows[0];
        if (!row) {
          const { rows: found } = await sql`SELECT 1 FROM audit_alerts
            WHERE ${chainFilter(tenantId)} AND id = ${id}`.execute(tx);
          throw found.length > 0
            ? auditError('alert_acknowledged', 'This alert has been acknowledged already.')
            : auditError('alert_not_found', 'There is no alert with that id here.');
        }
        // An alert keyed on the caller's own actions (a mass export, a burst of refusals) is for someone
        // else to close: acknowledged by its subject, later matches would add to it unseen.
        if (row.keys.includes(`actor:${actor}`)) {
          throw auditError(
            'alert_about_yourself',
            'This alert is about your own actions; another person with alerts:write must acknowledge it.',
          );
        }
        if (tenantId !== null) deps.checkTenantAcknowledgement?.(ctx, { rule: row.rule });
        await recordAuditEvent(tx, clock, ctx, {
          tenantId,
          action: 'audit.alert.acknowledged',
          outcome: 'success',
          target: { type: 'audit_alert', id },
          details: { rule: row.rule, note: note?.slice(0, 500) ?? null },
        });
        return toAlertView(row);
      }),
  };
}

export type AlertService = ReturnType<typeof createAlertService>;
