import { type RuleId, type WorkingHours, withinLocalHours } from './alert-rules.ts';
import type { AlertSettingsView } from './alert-service.ts';
import { auditableUrl, shownUrl } from './details.ts';

/** Settings as answered to readers: the webhook URL without its query (it may hold an intake's key). */
export const shownSettings = <T extends AlertSettingsView>(v: T): T => {
  const url = v.channels.webhookUrl;
  return url === null ? v : { ...v, channels: { ...v.channels, webhookUrl: shownUrl(url) } };
};

/**
 * A webhook URL sent back as reads show it means the stored one, unchanged: a read-modify-write must
 * not drop the query reads leave out (nor get a new signing secret).
 */
export function keepStoredUrl(next: AlertSettingsView, current: AlertSettingsView): AlertSettingsView {
  const stored = current.channels.webhookUrl;
  const sent = next.channels.webhookUrl;
  if (stored === null || sent === null || sent === stored || sent !== shownUrl(stored)) return next;
  return { ...next, channels: { ...next.channels, webhookUrl: stored } };
}

/** A webhook as the weakening lines name it: they go into audit details and approval summaries. */
const shown = (url: string | null) => (url === null ? 'none' : auditableUrl(url));

/**
 * Which way a rule setting makes alerts rarer. A higher threshold needs more matches, a longer look-back
 * counts more addresses as known, a shorter window fits fewer matches in: each raises fewer alerts.
 */
const weakerWhen: Record<string, 'higher' | 'lower'> = {
  perAccount: 'higher',
  perIp: 'higher',
  perTenant: 'higher',
  threshold: 'higher',
  lookbackDays: 'higher',
  windowSeconds: 'lower',
};

function ruleWeakenings(before: AlertSettingsView['rules'], next: AlertSettingsView['rules']): string[] {
  const found: string[] = [];
  for (const id of Object.keys(next) as RuleId[]) {
    const was = before[id] as Record<string, number | boolean>;
    for (const [field, value] of Object.entries(next[id] as Record<string, number | boolean>)) {
      const old = was[field];
      if (old === undefined || old === value) continue;
      const direction = weakerWhen[field];
      const weaker =
        field === 'enabled'
          ? value === false
          : // A setting not in the table: any change counts as weakening until someone says which way.
            direction === undefined ||
            (direction === 'higher' ? Number(value) > Number(old) : Number(value) < Number(old));
      if (weaker) found.push(field === 'enabled' ? `${id} off` : `${id}.${field} ${old} → ${value}`);
    }
  }
  return found;
}

/** Whether every minute of the week inside `next` was inside `before` (so off-hours grew or stayed). */
function hoursNarrowed(before: WorkingHours, next: WorkingHours): boolean {
  if (before.timeZone !== next.timeZone) return false;
  for (let day = 1; day <= 7; day++) {
    for (let minute = 0; minute < 1440; minute++) {
      if (withinLocalHours(next, day, minute) && !withinLocalHours(before, day, minute)) return false;
    }
  }
  return true;
}

const hoursLine = (h: WorkingHours | null) =>
  h ? `${h.days.join('')} ${h.start}-${h.end} ${h.timeZone}` : 'none (privileged.off_hours never fires)';

/**
 * What in `next` makes the chain's alerting weaker than `before` (a line each; none: it passes alone).
 * Weaker: a rule turned off; a threshold raised, a window shortened, the look-back lengthened; working
 * hours removed, or widened anywhere (another time zone counts as widened), since off-hours privileged
 * actions then raise nothing; and any change of where alerts go (an address added, removed or changed,
 * the webhook set, changed or removed): removing one mutes someone, adding one sends alert contents
 * (account and address keys) to a new place. Stronger changes (a rule on, a lower threshold, a longer
 * window, a shorter look-back, working hours set or narrowed) pass alone.
 */
export function alertSettingsWeakening(before: AlertSettingsView, next: AlertSettingsView): string[] {
  const found = ruleWeakenings(before.rules, next.rules);
  const b = before.workingHours;
  const n = next.workingHours;
  if (b !== null && (n === null || !hoursNarrowed(b, n))) {
    found.push(`working hours ${hoursLine(b)} → ${hoursLine(n)}`);
  }
  // Counted, not named (as the audit event counts them): the addresses are in the request's parameters.
  const added = next.channels.emails.filter((e) => !before.channels.emails.includes(e)).length;
  const removed = before.channels.emails.filter((e) => !next.channels.emails.includes(e)).length;
  if (added + removed > 0) found.push(`alert emails: ${added} added, ${removed} removed`);
  if (before.channels.webhookUrl !== next.channels.webhookUrl) {
    found.push(`alert webhook ${shown(before.channels.webhookUrl)} → ${shown(next.channels.webhookUrl)}`);
  }
  return found;
}
