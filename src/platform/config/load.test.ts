import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './load.ts';
import { envNames } from './schema.ts';

const dir = mkdtempSync(join(tmpdir(), 'rampart-config-'));
function configFile(content: unknown): string {
  const path = join(dir, `${randomBytes(4).toString('hex')}.json`);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

/** The problems loadConfig reports for env, or a failed expectation when it accepts it. */
function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  expect.fail(`configuration was accepted: ${JSON.stringify(env)}`);
}

const allEnvNames = [...Object.values(envNames).map((m) => m.env), 'RAMPART_CONFIG'];
/** Every problem must tell the operator which setting to fix. */
function expectEachNamesAVariable(problems: string[]) {
  for (const problem of problems) {
    expect(
      allEnvNames.some((name) => problem.includes(name)),
      problem,
    ).toBe(true);
  }
}

const strongKey = () => randomBytes(32).toString('base64url');
const production = (env: Record<string, string> = {}) => ({
  RAMPART_PROFILE: 'production',
  SECRET_KEY: strongKey(),
  TRUST_PROXY: '10.0.0.0/8',
  PUBLIC_URL: 'https://rampart.example.com',
  DATABASE_URL: 'postgres://rampart_node@db.internal/rampart',
  SMTP_URL: 'smtp://mail.internal:587',
  ...env,
});

describe('loadConfig: sources', () => {
  it('runs with no settings at all in development', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({ profile: 'development', port: 3000, dataDir: './data' });
    expect(config.publicUrl).toBe('http://127.0.0.1:3000');
  });

  it('takes the file named by RAMPART_CONFIG, and environment variables win over it', () => {
    const file = configFile({ port: 4000, logLevel: 'debug', bodyLimitBytes: 4096 });
    expect(loadConfig({ RAMPART_CONFIG: file })).toMatchObject({
      port: 4000,
      logLevel: 'debug',
      bodyLimitBytes: 4096,
    });
    expect(loadConfig({ RAMPART_CONFIG: file, PORT: '5000' })).toMatchObject({
      port: 5000,
      logLevel: 'debug',
    });
  });

  it('treats an empty environment variable as unset', () => {
    expect(loadConfig({ PORT: '', LOG_LEVEL: '' })).toMatchObject({ port: 3000, logLevel: 'info' });
  });

  it('reads lists and booleans from text', () => {
    const config = loadConfig({
      TRUST_PROXY: '10.0.0.1, 192.168.0.0/16,loopback',
      ALLOW_EMBEDDED_IN_PRODUCTION: 'yes',
    });
    expect(config.trustProxy).toEqual(['10.0.0.1', '192.168.0.0/16', 'loopback']);
    expect(config.allowEmbeddedInProduction).toBe(true);
  });
});

describe('loadConfig: every error names what to fix', () => {
  it.each([
    [{ PORT: 'eighty' }, 'PORT'],
    [{ PORT: '70000' }, 'PORT'],
    [{ RAMPART_PROFILE: 'staging' }, 'RAMPART_PROFILE'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [{ BODY_LIMIT_BYTES: '10' }, 'BODY_LIMIT_BYTES'],
    [{ DATABASE_URL: 'mysql://db/rampart' }, 'DATABASE_URL'],
    [{ DATABASE_POOL_MAX: '0' }, 'DATABASE_POOL_MAX'],
    [{ ALLOW_EMBEDDED_IN_PRODUCTION: 'perhaps' }, 'ALLOW_EMBEDDED_IN_PRODUCTION'],
    [{ BOOTSTRAP_OPERATOR_EMAIL: 'nobody' }, 'BOOTSTRAP_OPERATOR_EMAIL'],
    [{ SECRET_KEY: 'too-short' }, 'SECRET_KEY'],
    [{ METRICS_TOKEN: 'short' }, 'METRICS_TOKEN'],
    // Regression: a token with a space could never match the Authorization parser, so /metrics was
    // refused to everyone with no hint why.
    [{ METRICS_TOKEN: 'a metrics token with spaces in it, long enough' }, 'METRICS_TOKEN'],
    // Regression: TRUST_PROXY=yes passed validation and then crashed Fastify with "invalid IP address".
    [{ TRUST_PROXY: 'yes' }, 'TRUST_PROXY'],
    [{ TRUST_PROXY: '10.0.0.0/33' }, 'TRUST_PROXY'],
    [{ SHUTDOWN_GRACE_MS: '-1' }, 'SHUTDOWN_GRACE_MS'],
    [{ PUBLIC_URL: 'rampart.example.com' }, 'PUBLIC_URL'],
  ])('%o is refused naming %s', (env, name) => {
    const problems = problemsOf(env);
    expect(problems.join('\n')).toContain(name);
    expectEachNamesAVariable(problems);
  });

  it('reports every problem at once', () => {
    const problems = problemsOf({ PORT: 'x', LOG_LEVEL: 'loud' });
    expect(problems).toHaveLength(2);
  });

  it('names RAMPART_CONFIG when the file is missing or not a JSON object', () => {
    for (const path of [join(dir, 'missing.json'), configFile('{not json'), configFile('[1, 2]')]) {
      const problems = problemsOf({ RAMPART_CONFIG: path });
      expect(problems.join('\n')).toContain('RAMPART_CONFIG');
      expect(problems.join('\n')).toContain(path);
    }
  });

  it('refuses an unknown setting in the file, naming it', () => {
    const problems = problemsOf({ RAMPART_CONFIG: configFile({ prot: 3000 }) });
    expect(problems.join('\n')).toMatch(/unknown setting "prot"/);
  });

  it('names the environment variable for a bad value that came from the file', () => {
    expect(problemsOf({ RAMPART_CONFIG: configFile({ port: 'x' }) }).join('\n')).toContain('PORT');
  });
});

describe('loadConfig: the production profile', () => {
  it('accepts a complete, safe production configuration', () => {
    expect(loadConfig(production())).toMatchObject({ profile: 'production' });
    const tls = production({ TLS_CERT_FILE: '/etc/rampart/cert.pem', TLS_KEY_FILE: '/etc/rampart/key.pem' });
    delete (tls as Record<string, string>).TRUST_PROXY;
    expect(loadConfig(tls).tlsCertFile).toBe('/etc/rampart/cert.pem');
    // A relay on this machine may go without TLS.
    expect(
      loadConfig(production({ SMTP_URL: 'smtp://127.0.0.1:25?requireTLS=false' })).smtpUrl,
    ).toBeDefined();
    const embedded = production({ ALLOW_EMBEDDED_IN_PRODUCTION: 'true' });
    delete (embedded as Record<string, string>).DATABASE_URL;
    expect(loadConfig(embedded).databaseUrl).toBeUndefined();
  });

  it.each([
    ['a missing SECRET_KEY', { SECRET_KEY: '' }, 'SECRET_KEY'],
    ['a repetitive SECRET_KEY', { SECRET_KEY: 'x'.repeat(48) }, 'SECRET_KEY'],
    ['a low-variety SECRET_KEY', { SECRET_KEY: 'ab'.repeat(30) }, 'SECRET_KEY'],
    ['neither TLS nor a trusted proxy', { TRUST_PROXY: '' }, 'TRUST_PROXY'],
    ['a TLS certificate without its key', { TRUST_PROXY: '', TLS_CERT_FILE: '/c.pem' }, 'TLS_KEY_FILE'],
    ['an http:// PUBLIC_URL', { PUBLIC_URL: 'http://rampart.example.com' }, 'PUBLIC_URL'],
    ['the embedded database', { DATABASE_URL: '' }, 'ALLOW_EMBEDDED_IN_PRODUCTION'],
    ['no SMTP server', { SMTP_URL: '' }, 'SMTP_URL'],
    // Regression: SMTP_URL's query overrides the mailer's required STARTTLS and certificate checks.
    ['SMTP without STARTTLS', { SMTP_URL: 'smtp://u:p@mail.internal:587?requireTLS=false' }, 'SMTP_URL'],
    ['SMTP ignoring TLS', { SMTP_URL: 'smtp://u:p@mail.internal:587?ignoreTLS=true' }, 'SMTP_URL'],
    [
      'SMTP with certificates unchecked',
      { SMTP_URL: 'smtps://u:p@mail.internal:465?tls.rejectUnauthorized=false' },
      'SMTP_URL',
    ],
  ])('refuses %s', (_what, env, name) => {
    const problems = problemsOf(production(env));
    expect(problems.join('\n')).toContain(name);
    expect(problems.join('\n')).not.toContain('u:p@'); // SMTP_URL holds the password: never echoed
    expectEachNamesAVariable(problems);
  });

  it('applies none of the production refusals in development', () => {
    expect(loadConfig({ SECRET_KEY: 'x'.repeat(48), PUBLIC_URL: 'http://localhost:3000' }).profile).toBe(
      'development',
    );
  });
});

describe('consistency checks (any profile)', () => {
  it('refuses DATABASE_OWNER_URL without DATABASE_URL, naming both', () => {
    expect(() => loadConfig({ DATABASE_OWNER_URL: 'postgres://owner@db/rampart' })).toThrow(
      /DATABASE_OWNER_URL.*DATABASE_URL/,
    );
  });
  it('refuses DATABASE_URL without SECRET_KEY, since nodes must share it', () => {
    expect(() => loadConfig({ DATABASE_URL: 'postgres://app@db/rampart' })).toThrow(/SECRET_KEY/);
  });
  it('takes SECRET_KEY_PREVIOUS as a list of keys, none of them the current one', () => {
    const [current, old1, old2] = [strongKey(), strongKey(), strongKey()];
    expect(
      loadConfig({ SECRET_KEY: current, SECRET_KEY_PREVIOUS: `${old1}, ${old2}` }).secretKeyPrevious,
    ).toEqual([old1, old2]);
    expect(loadConfig({}).secretKeyPrevious).toEqual([]);
    expect(problemsOf({ SECRET_KEY: current, SECRET_KEY_PREVIOUS: 'short' })[0]).toMatch(
      /SECRET_KEY_PREVIOUS/,
    );
    expect(problemsOf({ SECRET_KEY: current, SECRET_KEY_PREVIOUS: `${old1},${current}` })[0]).toMatch(
      /SECRET_KEY_PREVIOUS: lists the current SECRET_KEY/,
    );
  });
});
