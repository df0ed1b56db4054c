import { type Static, Type } from '@sinclair/typebox';

/**
 * The rate-limit route classes (src/protect/rate-limit/policy.ts takes its list from here). Named in the
 * configuration's module because RATE_LIMIT_FAIL_CLOSED is checked before any capability loads, and
 * platform/ imports no capability.
 */
export const rateLimitRouteClasses = ['signin', 'token', 'api', 'public'] as const;

/**
 * The highest argon2id costs Rampart hashes and verifies with (src/identity/passwords/params.ts takes
 * them from here, also as the ceiling on an imported hash's). Named in the configuration's module so
 * ARGON2_* is held to the same bounds at load, by name, as the hasher: `config check` passed 4 GiB and
 * 64 passes, and `start` then failed in the hasher without naming the variable.
 */
export const argon2Limits = Object.freeze({ maxMemoryKiB: 1_048_576, maxIterations: 32, maxParallelism: 16 });

/** Every setting Rampart reads, with the environment variable that sets it. */
export const configSchema = Type.Object(
  {
    profile: Type.Union([Type.Literal('development'), Type.Literal('production')]),
    host: Type.String({ minLength: 1 }),
    port: Type.Integer({ minimum: 0, maximum: 65535 }),
    publicUrl: Type.String({ pattern: '^https?://[^\\s/]+(/.*)?$' }),
    dataDir: Type.String({ minLength: 1 }),
    databaseUrl: Type.Optional(Type.String({ pattern: '^postgres(ql)?://' })),
    databaseOwnerUrl: Type.Optional(Type.String({ pattern: '^postgres(ql)?://' })),
    databasePoolMax: Type.Integer({ minimum: 1, maximum: 500 }),
    databaseStatementTimeoutMs: Type.Integer({ minimum: 0, maximum: 3_600_000 }),
    databaseIdleInTransactionTimeoutMs: Type.Integer({ minimum: 0, maximum: 3_600_000 }),
    allowEmbeddedInProduction: Type.Boolean(),
    trustProxy: Type.Array(Type.String({ minLength: 1 })),
    tlsCertFile: Type.Optional(Type.String({ minLength: 1 })),
    tlsKeyFile: Type.Optional(Type.String({ minLength: 1 })),
    secretKey: Type.Optional(Type.String({ minLength: 43 })),
    secretKeyPrevious: Type.Array(Type.String({ minLength: 43 })),
    // The bearer syntax of RFC 6750 (what the Authorization parser accepts): any other character would
    // make a token that can never authenticate.
    metricsToken: Type.Optional(
      Type.String({ minLength: 32, maxLength: 512, pattern: '^[A-Za-z0-9._~+/-]+=*$' }),
    ),
    bootstrapOperatorEmail: Type.String({ pattern: '^[^@\\s]+@[^@\\s]+$' }),
    operatorTokenTtlDays: Type.Integer({ minimum: 1, maximum: 365 }),
    elevationMaxMinutes: Type.Integer({ minimum: 5, maximum: 1440 }),
    bodyLimitBytes: Type.Integer({ minimum: 1024, maximum: 50 * 1024 * 1024 }),
    logLevel: Type.Union(
      ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((level) => Type.Literal(level)),
    ),
    shutdownGraceMs: Type.Integer({ minimum: 0, maximum: 120_000 }),
    argon2MemoryKiB: Type.Integer({ minimum: 1024, maximum: argon2Limits.maxMemoryKiB }),
    argon2Iterations: Type.Integer({ minimum: 1, maximum: argon2Limits.maxIterations }),
    argon2Parallelism: Type.Integer({ minimum: 1, maximum: argon2Limits.maxParallelism }),
    breachedFilterFile: Type.Optional(Type.String({ minLength: 1 })),
    breachedOnline: Type.Union([Type.Literal('off'), Type.Literal('fail-open'), Type.Literal('fail-closed')]),
    breachedRangeUrl: Type.String({ pattern: '^https?://' }),
    smtpUrl: Type.Optional(Type.String({ pattern: '^smtps?://' })),
    mailFrom: Type.String({ minLength: 3, maxLength: 320 }),
    redisUrl: Type.Optional(Type.String({ pattern: '^rediss?://' })),
    // Protect (src/protect): TLS policy, rate limits, outbound guard, IP reputation.
    tlsCiphers: Type.Array(Type.String({ pattern: '^[A-Z0-9-]+$' })),
    tlsReloadIntervalMs: Type.Integer({ minimum: 0, maximum: 3_600_000 }),
    hstsMaxAgeSeconds: Type.Integer({ minimum: 0, maximum: 63_072_000 }),
    rateLimitEnabled: Type.Boolean(),
    rateLimitStore: Type.Union(['auto', 'memory', 'redis', 'postgres'].map((s) => Type.Literal(s))),
    rateLimits: Type.Array(Type.String({ pattern: '^[a-z]+\\.[a-z]+=\\d+/\\d+$' })),
    // Each entry is checked against rateLimitRouteClasses in load.ts (a message naming the classes).
    rateLimitFailClosed: Type.Array(Type.String({ minLength: 1 })),
    outboundAllowHosts: Type.Array(Type.String({ minLength: 1 })),
    outboundAllowPrivate: Type.Array(Type.String({ minLength: 1 })),
    outboundTenantAllowPrivate: Type.Array(Type.String({ minLength: 1 })),
    outboundTimeoutMs: Type.Integer({ minimum: 100, maximum: 300_000 }),
    outboundMaxBytes: Type.Integer({ minimum: 1024, maximum: 1024 * 1024 * 1024 }),
    outboundMaxRedirects: Type.Integer({ minimum: 0, maximum: 10 }),
    ipBlocklists: Type.Array(Type.String({ minLength: 1 })),
    ipBlocklistRefreshSeconds: Type.Integer({ minimum: 60, maximum: 7 * 86_400 }),
    auditCheckpointSeconds: Type.Integer({ minimum: 10, maximum: 86_400 }),
    auditRetentionDays: Type.Integer({ minimum: 30, maximum: 36_500 }),
    auditPlatformRetentionDays: Type.Integer({ minimum: 30, maximum: 36_500 }),
    auditPruneSeconds: Type.Integer({ minimum: 60, maximum: 7 * 86_400 }),
    legacyHashWrapSeconds: Type.Integer({ minimum: 10, maximum: 86_400 }),
    auditAlertDeliveryMaxHours: Type.Integer({ minimum: 1, maximum: 720 }),
    syslogEnterpriseNumber: Type.Integer({ minimum: 1, maximum: 2_147_483_647 }),
    auditSinkMaxBacklog: Type.Integer({ minimum: 1000, maximum: 100_000_000 }),
    auditSearchEventsPerDay: Type.Integer({ minimum: 0, maximum: 100_000_000 }),
  },
  { additionalProperties: false },
);

export type Config = Static<typeof configSchema>;

/** Environment variable for each setting: the README's configuration table is generated from this. */
export const envNames: Record<keyof Config, { env: string; doc: string; default?: string }> = {
  profile: {
    env: 'RAMPART_PROFILE',
    doc: '`development` or `production` (strict checks).',
    default: 'development',
  },
  host: { env: 'HOST', doc: 'Address to listen on.', default: '127.0.0.1' },
  port: { env: 'PORT', doc: 'Port to listen on (0 picks a free one).', default: '3000' },
  publicUrl: {
    env: 'PUBLIC_URL',
    doc: 'External base URL, used in links.',
    default: 'http://127.0.0.1:3000',
  },
  dataDir: {
    env: 'DATA_DIR',
    doc: 'Embedded database directory, made private (mode 0700) at every start; `memory://` keeps it in memory.',
    default: './data',
  },
  databaseUrl: {
    env: 'DATABASE_URL',
    doc: 'PostgreSQL URL of the application role; unset = embedded PGlite.',
  },
  databaseOwnerUrl: {
    env: 'DATABASE_OWNER_URL',
    doc: 'PostgreSQL URL of the schema owner; when set, migrations run at start.',
  },
  databasePoolMax: { env: 'DATABASE_POOL_MAX', doc: 'PostgreSQL connections per node.', default: '10' },
  databaseStatementTimeoutMs: {
    env: 'DATABASE_STATEMENT_TIMEOUT_MS',
    doc: 'PostgreSQL `statement_timeout` in every transaction of the app (SET LOCAL): a statement running longer is cancelled, answered 503 (0 = none).',
    default: '60000',
  },
  databaseIdleInTransactionTimeoutMs: {
    env: 'DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS',
    doc: 'PostgreSQL `idle_in_transaction_session_timeout` in every transaction of the app (SET LOCAL): a transaction left idle longer is ended with its connection, and its locks go (0 = none).',
    default: '30000',
  },
  allowEmbeddedInProduction: {
    env: 'ALLOW_EMBEDDED_IN_PRODUCTION',
    doc: 'Let the production profile run on PGlite (single node only).',
    default: 'false',
  },
  trustProxy: {
    env: 'TRUST_PROXY',
    doc: 'Comma-separated addresses/CIDRs of reverse proxies whose X-Forwarded-For is believed (a /0 prefix, trusting everyone, is refused).',
    default: '(none)',
  },
  tlsCertFile: { env: 'TLS_CERT_FILE', doc: 'PEM certificate chain; with TLS_KEY_FILE, serve HTTPS.' },
  tlsKeyFile: { env: 'TLS_KEY_FILE', doc: 'PEM private key.' },
  secretKey: {
    env: 'SECRET_KEY',
    doc: 'At least 32 random bytes, base64url (43+ chars). Required in production.',
  },
  secretKeyPrevious: {
    env: 'SECRET_KEY_PREVIOUS',
    doc: 'Comma-separated earlier SECRET_KEYs during a rotation: sealed TOTP seeds and webhook secrets still open, recovery codes still verify (docs/audit.md, "Key rotation").',
    default: '(none)',
  },
  metricsToken: { env: 'METRICS_TOKEN', doc: 'Bearer token for /metrics; unset = loopback callers only.' },
  bootstrapOperatorEmail: {
    env: 'BOOTSTRAP_OPERATOR_EMAIL',
    doc: 'Email of the operator created on first run.',
    default: 'admin@localhost',
  },
  operatorTokenTtlDays: {
    env: 'OPERATOR_TOKEN_TTL_DAYS',
    doc: 'Lifetime of operator API tokens.',
    default: '30',
  },
  elevationMaxMinutes: {
    env: 'ELEVATION_MAX_MINUTES',
    doc: 'Longest time-boxed access an operator may ask for in a tenant (default 8 hours).',
    default: '480',
  },
  bodyLimitBytes: { env: 'BODY_LIMIT_BYTES', doc: 'Largest accepted request body.', default: '1048576' },
  logLevel: { env: 'LOG_LEVEL', doc: 'pino log level.', default: 'info' },
  argon2MemoryKiB: {
    env: 'ARGON2_MEMORY_KIB',
    doc: 'argon2id memory per hash (KiB, 1024 to 1048576: 1 GiB).',
    default: '19456',
  },
  argon2Iterations: { env: 'ARGON2_ITERATIONS', doc: 'argon2id passes (1 to 32).', default: '2' },
  argon2Parallelism: { env: 'ARGON2_PARALLELISM', doc: 'argon2id lanes (1 to 16).', default: '1' },
  breachedFilterFile: {
    env: 'BREACHED_FILTER_FILE',
    doc: 'Filter built by `rampart breached import`; loaded at start.',
  },
  breachedOnline: {
    env: 'BREACHED_ONLINE',
    doc: 'Pwned Passwords range API: `off`, `fail-open` or `fail-closed`.',
    default: 'off',
  },
  breachedRangeUrl: {
    env: 'BREACHED_RANGE_URL',
    doc: 'Range API base URL (k-anonymity).',
    default: 'https://api.pwnedpasswords.com/range/',
  },
  smtpUrl: {
    env: 'SMTP_URL',
    doc: 'Outgoing mail server (smtp://user:pass@host:587, STARTTLS required, or smtps://...; `?requireTLS=false`: a relay without TLS, on loopback only in production); unset = dev outbox.',
  },
  mailFrom: { env: 'MAIL_FROM', doc: 'Sender of outgoing mail.', default: 'Rampart <no-reply@localhost>' },
  redisUrl: {
    env: 'REDIS_URL',
    doc: 'Redis URL (`redis://` or `rediss://`) for state shared between nodes; unset = PostgreSQL/in-process.',
  },
  tlsCiphers: {
    env: 'TLS_CIPHERS',
    doc: 'TLS 1.2 cipher suites (OpenSSL names, comma-separated); unset = the four ECDHE AES-GCM/CBC-SHA2 suites of the key type.',
    default: '(by key type)',
  },
  tlsReloadIntervalMs: {
    env: 'TLS_RELOAD_INTERVAL_MS',
    doc: 'How often the certificate and key files are checked for changes (0 = never reload).',
    default: '5000',
  },
  hstsMaxAgeSeconds: {
    env: 'HSTS_MAX_AGE',
    doc: 'Strict-Transport-Security max-age when served over HTTPS (0 = no header).',
    default: '31536000',
  },
  rateLimitEnabled: { env: 'RATE_LIMIT_ENABLED', doc: 'Rate limiting on or off.', default: 'true' },
  rateLimitStore: {
    env: 'RATE_LIMIT_STORE',
    doc: 'Rate-limit counters: `memory` (one node), `redis`, `postgres`; `auto` = redis with REDIS_URL, else memory.',
    default: 'auto',
  },
  rateLimits: {
    env: 'RATE_LIMITS',
    doc: 'Overrides of the default limits, `class.scope=points/seconds` comma-separated (docs/protect.md).',
    default: '(defaults)',
  },
  rateLimitFailClosed: {
    env: 'RATE_LIMIT_FAIL_CLOSED',
    doc: 'Route classes (`signin`, `token`, `api`, `public`) refused (503) while the shared counter store is unreachable or does not answer; the others are let through.',
    default: 'signin,token',
  },
  outboundAllowHosts: {
    env: 'OUTBOUND_ALLOW_HOSTS',
    doc: 'Hosts outbound requests may reach (`*.example.com` allowed); unset = any public host.',
    default: '(any public)',
  },
  outboundAllowPrivate: {
    env: 'OUTBOUND_ALLOW_PRIVATE',
    doc: 'CIDRs of private/loopback addresses outbound requests may reach anyway (destinations operators chose).',
    default: '(none)',
  },
  outboundTenantAllowPrivate: {
    env: 'OUTBOUND_TENANT_ALLOW_PRIVATE',
    doc: 'CIDRs of private/loopback addresses destinations tenants chose (alert webhooks) may reach; OUTBOUND_ALLOW_PRIVATE does not apply to them.',
    default: '(none)',
  },
  outboundTimeoutMs: { env: 'OUTBOUND_TIMEOUT_MS', doc: 'Outbound request time limit.', default: '10000' },
  outboundMaxBytes: {
    env: 'OUTBOUND_MAX_BYTES',
    doc: 'Largest outbound response body read.',
    default: '33554432',
  },
  outboundMaxRedirects: {
    env: 'OUTBOUND_MAX_REDIRECTS',
    doc: 'Redirects followed per request.',
    default: '3',
  },
  ipBlocklists: {
    env: 'IP_BLOCKLISTS',
    doc: 'Files or https URLs of CIDR blocklists (FireHOL netset, Spamhaus DROP), comma-separated; only global unicast clients are matched (never private, loopback, ... nor /healthz, /readyz).',
    default: '(none)',
  },
  ipBlocklistRefreshSeconds: {
    env: 'IP_BLOCKLIST_REFRESH_SECONDS',
    doc: 'How often blocklists are reloaded.',
    default: '3600',
  },
  shutdownGraceMs: {
    env: 'SHUTDOWN_GRACE_MS',
    doc: 'How long in-flight requests may run after SIGTERM.',
    default: '10000',
  },
  auditCheckpointSeconds: {
    env: 'AUDIT_CHECKPOINT_SECONDS',
    doc: 'How often each audit hash chain head is signed (Ed25519 checkpoint).',
    default: '300',
  },
  auditRetentionDays: {
    env: 'AUDIT_RETENTION_DAYS',
    doc: "Days a tenant's audit events are kept unless the tenant sets its own (30 to 36500).",
    default: '400',
  },
  auditPlatformRetentionDays: {
    env: 'AUDIT_PLATFORM_RETENTION_DAYS',
    doc: 'Days the platform audit chain (operators, platform jobs) keeps its events (30 to 36500).',
    default: '400',
  },
  auditPruneSeconds: {
    env: 'AUDIT_PRUNE_SECONDS',
    doc: 'How often audit chains are pruned to their retention (up to a signed checkpoint).',
    default: '3600',
  },
  legacyHashWrapSeconds: {
    env: 'LEGACY_HASH_WRAP_SECONDS',
    doc: 'How often the background job wraps fast imported password hashes (salted SHA-256, bcrypt below cost 10) in argon2id (10 to 86400).',
    default: '60',
  },
  auditAlertDeliveryMaxHours: {
    env: 'AUDIT_ALERT_DELIVERY_MAX_HOURS',
    doc: 'Hours an alert delivery (webhook, mail) is retried once due, then marked failed (1 to 720); SIEM sinks retry forever.',
    default: '72',
  },
  syslogEnterpriseNumber: {
    env: 'SYSLOG_ENTERPRISE_NUMBER',
    doc: "IANA private enterprise number in syslog sinks' SD-ID (`rampart@<number>`); set your own. 32473 is reserved for documentation (RFC 5612).",
    default: '32473',
  },
  auditSinkMaxBacklog: {
    env: 'AUDIT_SINK_MAX_BACKLOG',
    doc: 'Undelivered events one SIEM sink may hold (1000 to 100000000); beyond it the oldest are dropped, counted and audited.',
    default: '1000000',
  },
  auditSearchEventsPerDay: {
    env: 'AUDIT_SEARCH_EVENTS_PER_DAY',
    doc: "Audit events one person may page through by search per tenant and UTC day while the tenant's exports need a second approver (0: no cap); beyond it they request an export.",
    default: '10000',
  },
};
