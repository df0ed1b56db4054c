/**
 * The audit action catalogue: every action an event may name, `capability.object.verb`, with what it
 * records. Writing an event whose action is not here is a programming error (record.ts refuses it), so
 * a SIEM can map every action Rampart emits from this list (`GET /api/v1/audit/actions`).
 */
export interface AuditActionDef {
  action: string;
  capability: string;
  description: string;
}

const catalogue = new Map<string, AuditActionDef>();

/** Adds a capability's actions. Exported so a test can define actions of its own for fixtures. */
export function defineAuditActions(capability: string, entries: Record<string, string>): void {
  for (const [action, description] of Object.entries(entries)) {
    if (!/^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){2,}$/.test(action) || !action.startsWith(`${capability}.`)) {
      throw new Error(`audit action "${action}" is not ${capability}.object.verb`);
    }
    if (catalogue.has(action)) throw new Error(`audit action "${action}" is defined twice`);
    catalogue.set(action, { action, capability, description });
  }
}

export const isKnownAuditAction = (action: string): boolean => catalogue.has(action);
export const auditActions = (): AuditActionDef[] =>
  [...catalogue.values()].sort((a, b) => a.action.localeCompare(b.action));

defineAuditActions('tenancy', {
  'tenancy.tenant.created': 'A tenant was created',
  'tenancy.tenant.suspended': 'A tenant was suspended: its users are refused',
  'tenancy.tenant.resumed': 'A suspended tenant was reactivated',
});
defineAuditActions('identity', {
  'identity.signin.password': 'A sign-in attempt with a password (outcome and reason tell how it ended)',
  'identity.signin.second_factor': 'A second-factor step of a sign-in (TOTP or recovery code)',
  'identity.operator.signin': "An operator's sign-in attempt (password and TOTP together)",
  'identity.operator.created': 'An operator account was created',
  'identity.operator.setup_started': 'An operator chose a password from a set-up link',
  'identity.operator.setup_completed': 'An operator confirmed their TOTP and finished set-up',
  'identity.operator.signed_out': 'An operator ended the credential they were using (sign-out)',
  'identity.operator.token_issued':
    'A further API token was issued to an operator (label, expiry, scopes: null means every platform permission)',
  'identity.operator.token_revoked': 'An operator revoked one of their own credentials',
  'identity.operator.tokens_revoked': 'Every live credential of an operator was revoked, with the count',
  'identity.operator.disabled': 'An operator was disabled (every credential revoked), with the reason',
  'identity.operator.enabled': 'A disabled operator was enabled again',
  'identity.operator.seeds_resealed':
    "Operators' TOTP seeds were sealed under the current SECRET_KEY (`rampart keys rewrap`), with the count",
  'identity.operator.locked': 'An operator was locked after consecutive sign-in failures',
  'identity.operator.unlocked': "An operator's sign-in lockout was cleared",
  'identity.user.invited': 'A user was invited',
  'identity.user.invitation_accepted': 'An invited user set a password',
  'identity.user.signup': 'A user signed up (self-service)',
  'identity.user.email_verified': "A user's email address was verified",
  'identity.user.imported': 'A user was imported with an existing password hash',
  'identity.user.locked': 'An account was locked after consecutive failures',
  'identity.user.unlocked': 'An account was unlocked',
  'identity.user.disabled': 'A user was disabled (sessions ended, no permission held), with the reason',
  'identity.user.enabled': 'A disabled user was enabled again',
  'identity.password.changed':
    'A user changed their password; as a failure, a refused attempt (reason: wrong_current, locked, throttled, busy…)',
  'identity.password.reset_requested': 'A password reset link was asked for',
  'identity.password.reset': 'A password was reset with a link',
  'identity.password.hashes_wrapped':
    'Fast legacy password hashes (imported salted SHA-256, cheap bcrypt) were wrapped in argon2id, with the count',
  'identity.link.refused':
    'A mailed link (invitation, email verification, password reset) was refused: unknown, used, expired or its user disabled',
  'identity.policy.weakened':
    'The password policy, lockout, self sign-up or session limits were made weaker (details.weakened names which)',
  'identity.settings.updated': "The tenant's identity settings (policy, lockout, sessions, 2FA) changed",
  'identity.session.revoked': 'A session was ended',
  'identity.session.revoked_all': "All of a user's sessions were ended",
  'identity.mfa.enrolment_started':
    'TOTP enrolment began; as a failure, its current-password check refused (reason: wrong_current, locked, throttled, busy…)',
  'identity.mfa.enrolment_failed': 'A TOTP enrolment code was wrong',
  'identity.mfa.enrolment_discarded':
    'A pending TOTP enrolment was discarded after too many wrong codes (it must be started again)',
  'identity.mfa.enrolled': 'TOTP was enrolled',
  'identity.mfa.recovery_regenerated': 'New recovery codes were issued',
  'identity.mfa.reset':
    "An administrator reset a user's second factor: authenticator and recovery codes removed, every session ended (details: sessionsEnded, recoveryRemoved)",
  'identity.mfa.removed':
    'A user removed their own authenticator (step-up and password): authenticator and recovery codes removed, every session ended (details: sessionsEnded, recoveryRemoved); as a failure, its current-password check refused (reason)',
  'identity.mfa.seeds_resealed':
    "Users' TOTP seeds were sealed under the current SECRET_KEY (`rampart keys rewrap`), with the count",
});
defineAuditActions('access', {
  'access.request.denied': 'A request was refused for want of a permission (403)',
  'access.role.created': 'A custom role was created',
  'access.role.updated': 'A custom role was changed',
  'access.role.deleted': 'A custom role was deleted',
  'access.role.granted': 'A role was granted to a user',
  'access.role.removed': 'A role was taken from a user',
  'access.settings.updated': "The tenant's access settings (four-eyes list, approvers) changed",
  'access.elevation.requested': 'An operator asked for time-boxed access to a tenant',
  'access.elevation.approved': 'An approver approved an elevation request',
  'access.elevation.granted': 'An elevation got all its approvals and started',
  'access.elevation.rejected': 'An elevation request was rejected',
  'access.elevation.revoked': 'An active elevation was ended before its expiry',
  'access.elevation.approval_refused':
    'A tenant approver was refused: they lack a permission the elevation gives, or elevations:decide itself',
  'access.elevation.approval_dropped':
    'An earlier approval of an elevation stopped counting when it would have activated it (its approver lost the right to approve, or the tenant changed who approves); the request stays pending',
  'access.approval.requested': 'A critical action was asked for (four-eyes)',
  'access.approval.approved': 'A critical action was approved by a second person',
  'access.approval.rejected': 'A critical action was rejected',
  'access.approval.expired': 'A critical action request or approval expired unused',
  'access.approval.params_refused': 'A critical action was run with parameters other than those approved',
  'access.approval.executed': 'An approved critical action ran',
  'access.approval.failed': 'An approved critical action failed when run',
  'access.approval.approver_lost':
    'An approved critical action was refused: its approver no longer holds approvals:decide, or would now benefit from it (back to pending)',
  'access.approval.conflicted':
    'An approved critical action kept colliding with concurrent changes and did not run; the approval is usable again',
  'access.approval.refused':
    "A decision on a critical action was refused: an operator may not decide an elevated operator's lasting access",
  'access.approval.state_changed':
    'An approved critical action was refused: what it changes was changed after it was asked for',
});
defineAuditActions('audit', {
  'audit.trail.exported': 'Audit events were exported (JSON Lines)',
  'audit.trail.searched':
    "An operator (under an elevation) searched a tenant's audit trail, with the filters",
  'audit.trail.pruned': 'Events older than the retention were deleted up to a signed checkpoint',
  'audit.checkpoint.refused':
    'The checkpoint job refused to sign a chain: an event since its last checkpoint has no matching MAC (forged), or the events since it do not lead to the head (missing, modified or unlinked event, or a head moved on its own), or the head row holds other chain constants (mac_from_seq, legacy_events) than its signed checkpoints',
  'audit.chain.forgery_acknowledged':
    'An operator acknowledged a forged event (bad or missing MAC) of a chain, with the reason, once another operator approved (the approval named): the checkpoint job signs over it again',
  'audit.forged_event.acknowledged':
    "On the tenant's own chain: the platform's operators acknowledged a forged event of it (seq, event id and hash, the acknowledgement, who asked and who approved; the reason stays on the platform chain): the checkpoint job signs over it again",
  'audit.reads.counted':
    'Data one actor read (answered GETs of permission-protected routes) in the last minute, with the count',
  'audit.retention.updated': "The tenant's audit retention changed",
  'audit.sink.created': 'A SIEM sink was added',
  'audit.sink.secrets_resealed':
    'Signing secrets of SIEM sinks were sealed under the current SECRET_KEY (`rampart keys rewrap`), with the count',
  'audit.sink.disabled':
    'A SIEM sink was disabled: it receives no new events and drains its backlog (this event included)',
  'audit.sink.stopped':
    'A disabled SIEM sink stopped: its backlog was delivered, or an operator stopped it at once (dropped count)',
  'audit.sink.overflowed':
    "A SIEM sink's backlog reached its maximum: its oldest undelivered events are being dropped (counted)",
  'audit.sink.recovered':
    'A SIEM sink that was overflowing receives again, with the number of events it lost',
  'audit.alert.raised': 'An anomaly rule raised an alert',
  'audit.alert.acknowledged': 'An alert was acknowledged',
  'audit.alert.secret_resealed':
    "The chain's alert webhook secret was sealed under the current SECRET_KEY (`rampart keys rewrap`)",
  'audit.alert.pruned': 'Acknowledged alerts older than the retention were deleted',
  'audit.alert.delivery_failed':
    'An alert delivery (webhook or mail) still failed at its maximum age and is no longer attempted',
  'audit.alert.delivery_dropped':
    "An alert delivery was dropped unsent: its channel is no longer in the chain's alert settings",
  'audit.alert_settings.updated': 'Anomaly rule thresholds, working hours or alert channels changed',
});
defineAuditActions('protect', {
  'protect.tenant_policy.updated': "The tenant's admin address allowlist or CORS origins changed",
  'protect.ratelimit.store_unavailable':
    'The rate-limit store was unreachable (once a minute per class and node)',
  'protect.outbound.refused': 'The egress guard refused an outbound request',
  'protect.ip.blocked': 'A request from an address on a block list was refused (sampled)',
  'protect.waf.blocked': 'An upstream WAF reported a request it blocked (sampled)',
  'protect.blocks.counted':
    'Requests refused by rate limits, block lists and the upstream WAF in the last minute, per source',
});
