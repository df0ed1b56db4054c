import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { Value } from '@sinclair/typebox/value';
import { jsonSyntaxErrorAt } from './json-error.ts';
import { type Config, configSchema, envNames, rateLimitRouteClasses } from './schema.ts';
import { smtpUrlProblems } from './smtp-url.ts';

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

const numberKeys = new Set<keyof Config>([
  'port',
  'databasePoolMax',
  'databaseStatementTimeoutMs',
  'databaseIdleInTransactionTimeoutMs',
  'operatorTokenTtlDays',
  'elevationMaxMinutes',
  'bodyLimitBytes',
  'shutdownGraceMs',
  'argon2MemoryKiB',
  'argon2Iterations',
  'argon2Parallelism',
  'tlsReloadIntervalMs',
  'hstsMaxAgeSeconds',
  'outboundTimeoutMs',
  'outboundMaxBytes',
  'outboundMaxRedirects',
  'ipBlocklistRefreshSeconds',
  'auditCheckpointSeconds',
  'auditRetentionDays',
  'auditPlatformRetentionDays',
  'auditPruneSeconds',
  'legacyHashWrapSeconds',
  'auditAlertDeliveryMaxHours',
  'syslogEnterpriseNumber',
  'auditSinkMaxBacklog',
  'auditSearchEventsPerDay',
]);
const booleanKeys = new Set<keyof Config>(['allowEmbeddedInProduction', 'rateLimitEnabled']);
const listKeys = new Set<keyof Config>([
  'trustProxy',
  'secretKeyPrevious',
  'tlsCiphers',
  'rateLimits',
  'rateLimitFailClosed',
  'outboundAllowHosts',
  'outboundAllowPrivate',
  'outboundTenantAllowPrivate',
  'ipBlocklists',
]);

const defaults = {
  profile: 'development',
  host: '127.0.0.1',
  port: 3000,
  dataDir: './data',
  databasePoolMax: 10,
  databaseStatementTimeoutMs: 60_000,
  databaseIdleInTransactionTimeoutMs: 30_000,
  allowEmbeddedInProduction: false,
  trustProxy: [],
  secretKeyPrevious: [],
  bootstrapOperatorEmail: 'admin@localhost',
  operatorTokenTtlDays: 30,
  elevationMaxMinutes: 480,
  bodyLimitBytes: 1024 * 1024,
  logLevel: 'info',
  shutdownGraceMs: 10_000,
  argon2MemoryKiB: 19_456,
  argon2Iterations: 2,
  argon2Parallelism: 1,
  breachedOnline: 'off',
  breachedRangeUrl: 'https://api.pwnedpasswords.com/range/',
  mailFrom: 'Rampart <no-reply@localhost>',
  tlsCiphers: [],
  tlsReloadIntervalMs: 5000,
  hstsMaxAgeSeconds: 31_536_000,
  rateLimitEnabled: true,
  rateLimitStore: 'auto',
  rateLimits: [],
  rateLimitFailClosed: ['signin', 'token'],
  outboundAllowHosts: [],
  outboundAllowPrivate: [],
  outboundTenantAllowPrivate: [],
  outboundTimeoutMs: 10_000,
  outboundMaxBytes: 32 * 1024 * 1024,
  outboundMaxRedirects: 3,
  ipBlocklists: [],
  ipBlocklistRefreshSeconds: 3600,
  auditCheckpointSeconds: 300,
  auditRetentionDays: 400,
  auditPlatformRetentionDays: 400,
  auditPruneSeconds: 3600,
  legacyHashWrapSeconds: 60,
  auditAlertDeliveryMaxHours: 72,
  syslogEnterpriseNumber: 32473,
  auditSinkMaxBacklog: 1_000_000,
  auditSearchEventsPerDay: 10_000,
} satisfies Partial<Config>;

function coerce(key: keyof Config, raw: string): unknown {
  if (numberKeys.has(key)) return /^\d+$/.test(raw.trim()) ? Number(raw) : raw;
  if (booleanKeys.has(key)) {
    if (/^(1|true|yes)$/i.test(raw)) return true;
    if (/^(0|false|no)$/i.test(raw)) return false;
    return raw;
  }
  if (listKeys.has(key))
    return raw
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  return raw;
}

function readFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError([`RAMPART_CONFIG: cannot read ${path} (${(error as NodeJS.ErrnoException).code})`]);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    // The place only: V8's message can quote the file, and the file holds the secret key.
    const { line, column } = jsonSyntaxErrorAt(text, error);
    throw new ConfigError([
      `RAMPART_CONFIG: ${path} is not a JSON object (JSON syntax error at line ${line}, column ${column})`,
    ]);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
    throw new ConfigError([`RAMPART_CONFIG: ${path} is not a JSON object`]);
  return parsed as Record<string, unknown>;
}

/**
 * Builds the configuration from defaults, then the optional JSON file named by RAMPART_CONFIG,
 * then environment variables (which win). Throws ConfigError listing every problem at once.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const fromFile = env.RAMPART_CONFIG ? readFile(env.RAMPART_CONFIG) : {};
  const merged: Record<string, unknown> = { ...defaults, ...fromFile };
  for (const [key, meta] of Object.entries(envNames) as [keyof Config, { env: string }][]) {
    const raw = env[meta.env];
    if (raw !== undefined && raw !== '') merged[key] = coerce(key, raw);
  }
  merged.publicUrl ??= `http://${merged.host}:${merged.port}`;
  const problems = [...Value.Errors(configSchema, merged)].map((e) => describe(e.path, e.message));
  problems.push(...proxyProblems(merged.trustProxy), ...failClosedProblems(merged.rateLimitFailClosed));
  if (problems.length > 0) throw new ConfigError(problems);
  const config = merged as Config;
  const unsafe = [...consistencyProblems(config), ...productionProblems(config)];
  if (unsafe.length > 0) throw new ConfigError(unsafe);
  return config;
}

/** Combinations that would silently do something other than what was meant, in any profile. */
export function consistencyProblems(config: Config): string[] {
  const problems: string[] = [];
  if (config.databaseOwnerUrl && !config.databaseUrl) {
    problems.push(
      'DATABASE_OWNER_URL is set without DATABASE_URL: set both to use PostgreSQL (else the embedded database is used)',
    );
  }
  if (config.databaseUrl && !config.secretKey) {
    problems.push(
      'SECRET_KEY: required with DATABASE_URL, so every node shares one key (TOTP seeds, recovery codes and CSRF tokens are bound to it)',
    );
  }
  if (config.secretKey && config.secretKeyPrevious.includes(config.secretKey)) {
    problems.push('SECRET_KEY_PREVIOUS: lists the current SECRET_KEY; name only the keys it replaced');
  }
  return problems;
}

const proxyPresets = new Set(['loopback', 'linklocal', 'uniquelocal']);

/** An address, a CIDR or a preset name, as Fastify's trustProxy takes them. */
function isProxyEntry(entry: string): boolean {
  if (proxyPresets.has(entry)) return true;
  const [address = '', prefix, ...rest] = entry.split('/');
  const family = isIP(address);
  if (family === 0 || rest.length > 0) return false;
  if (prefix === undefined) return true;
  return /^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128);
}

/** A CIDR with prefix 0 (0.0.0.0/0, ::/0): every address. */
const trustsEveryone = (entry: string) => /\/0+$/.test(entry);

// Checked here because Fastify would otherwise fail later with "invalid IP address: yes" (or, for a /0,
// "invalid range on address"), naming no setting.
function proxyProblems(value: unknown): string[] {
  if (!Array.isArray(value)) return [];
  const entries = value.filter((entry): entry is string => typeof entry === 'string');
  const bad = entries.filter((entry) => !isProxyEntry(entry));
  const everyone = entries.filter((entry) => isProxyEntry(entry) && trustsEveryone(entry));
  const problems: string[] = [];
  if (bad.length > 0)
    problems.push(
      `TRUST_PROXY (trustProxy): ${bad.map((b) => JSON.stringify(b)).join(', ')} is not an address, a CIDR ` +
        'or one of loopback, linklocal, uniquelocal',
    );
  if (everyone.length > 0)
    problems.push(
      `TRUST_PROXY (trustProxy): ${everyone.map((e) => JSON.stringify(e)).join(', ')} would trust every ` +
        'address, so any client could choose its own address with X-Forwarded-For (for rate limits, block ' +
        "lists and the audit trail); list your reverse proxies' own addresses or CIDRs",
    );
  return problems;
}

// Checked here because a misspelt class ("sigin") was accepted and did nothing: sign-in then failed open
// while the counter store was down, the brute-force window the setting exists to close.
function failClosedProblems(value: unknown): string[] {
  if (!Array.isArray(value)) return [];
  const classes: readonly string[] = rateLimitRouteClasses;
  const bad = value.filter((entry): entry is string => typeof entry === 'string' && !classes.includes(entry));
  return bad.length === 0
    ? []
    : [
        `RATE_LIMIT_FAIL_CLOSED (rateLimitFailClosed): ${bad.map((b) => JSON.stringify(b)).join(', ')} is not ` +
          `a rate-limit route class; name some of ${classes.join(', ')} (default signin,token)`,
      ];
}

function describe(path: string, message: string): string {
  const key = path.split('/')[1] as keyof Config | undefined;
  if (key && key in envNames) return `${envNames[key].env} (${key}): ${message}`;
  if (key) return `unknown setting "${key}" in the config file: remove it`;
  return message;
}

const weakSecret = /^(changeme|secret|password|default|x+|0+)$/i;

/** The production profile refuses settings that would make the deployment insecure. */
export function productionProblems(config: Config): string[] {
  if (config.profile !== 'production') return [];
  const problems: string[] = [];
  if (!config.secretKey || weakSecret.test(config.secretKey) || new Set(config.secretKey).size < 16) {
    problems.push(
      'SECRET_KEY: production needs 32+ random bytes (try: openssl rand -base64 32 | tr "+/" "-_")',
    );
  }
  const tls = Boolean(config.tlsCertFile && config.tlsKeyFile);
  if (Boolean(config.tlsCertFile) !== Boolean(config.tlsKeyFile)) {
    problems.push('TLS_CERT_FILE and TLS_KEY_FILE: set both or neither');
  }
  if (!tls && config.trustProxy.length === 0) {
    problems.push(
      'production needs TLS (TLS_CERT_FILE + TLS_KEY_FILE) or a TLS-terminating proxy in TRUST_PROXY',
    );
  }
  if (!config.publicUrl.startsWith('https://')) problems.push('PUBLIC_URL: production needs an https:// URL');
  if (!config.smtpUrl) {
    problems.push(
      'SMTP_URL: production sends real mail (invitations, resets); the development outbox is not for it',
    );
  }
  if (config.smtpUrl) problems.push(...smtpUrlProblems(config.smtpUrl));
  if (!config.databaseUrl && !config.allowEmbeddedInProduction) {
    problems.push(
      'DATABASE_URL: production runs on PostgreSQL; set ALLOW_EMBEDDED_IN_PRODUCTION=true to accept the embedded database',
    );
  }
  return problems;
}
