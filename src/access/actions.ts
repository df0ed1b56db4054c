import type { RetentionService } from '../audit/index.ts';
import type { IdentityService } from '../identity/index.ts';
import type { Clock } from '../platform/context.ts';
import { wireAdminGrantActions } from './admin-grant-actions.ts';
import { wireAuditTrailActions } from './audit-trail-actions.ts';
import type { CriticalActions } from './critical.ts';
import type { RoleService } from './roles.ts';
import type { AccessSettingsService } from './settings.ts';
import { wireSettingsActions } from './settings-actions.ts';

/**
 * The tenant critical actions that exist today, with the gates of the routes that perform them, in three
 * groups: granting administrator powers (admin-grant-actions.ts: role assignment, a custom role's change,
 * invitation, enabling a user), weakening the tenant's settings (settings-actions.ts: the password
 * policy with lockout, self sign-up and session limits, 2FA enforcement, taking actions off the
 * four-eyes list), and the audit trail (audit-trail-actions.ts: shortening retention, exporting). Each
 * runs through the same service call as the direct route. The platform's are platform-actions.ts.
 */
export function wireCriticalActions(
  critical: CriticalActions,
  deps: {
    identity: IdentityService;
    roles: RoleService;
    settings: AccessSettingsService;
    retention: RetentionService;
    clock: Clock;
  },
) {
  wireAdminGrantActions(critical, deps);
  wireSettingsActions(critical, deps);
  wireAuditTrailActions(critical, deps);
}
