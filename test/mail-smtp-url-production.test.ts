/**
 * What the production profile accepts in SMTP_URL's query. Regression (security review, medium): the
 * guard knew `requireTLS=false|0` and `ignoreTLS=true|1` only, but nodemailer turns any number-like query
 * value into a number, so `?requireTLS=` (empty), `=00` or `=0.0` is 0 to it: STARTTLS became optional and
 * the SMTP password went out in plain text to a server (or a path attacker stripping STARTTLS) that
 * offered none. Production now reads the URL with nodemailer's own parser and takes only a short list of
 * query settings; development takes any.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSmtpMailer } from '../src/mail/index.ts';
import { ConfigError, loadConfig } from '../src/platform/config/index.ts';
import { plaintextAuthServer } from './mail-helpers.ts';

const password = 'S3cret-smtp-pass';

// A server that offers no STARTTLS but takes a password in plain text: what a stripped EHLO looks like.
const plaintextAuth = plaintextAuthServer();
beforeAll(async () => {
  await plaintextAuth.listen();
});
afterAll(async () => {
  await plaintextAuth.close();
});

const production = (smtpUrl: string) => ({
  RAMPART_PROFILE: 'production',
  SECRET_KEY: 'c2VjcmV0LWtleS1mb3ItdGhlLWNsaS10ZXN0cy0wMTIzNDU2Nzg5YWJjZGVm',
  TRUST_PROXY: '10.0.0.0/8',
  PUBLIC_URL: 'https://rampart.example.com',
  ALLOW_EMBEDDED_IN_PRODUCTION: 'true',
  SMTP_URL: smtpUrl,
});

/** The problems production reports for the URL ([] when it is accepted). */
function problemsOf(smtpUrl: string): string[] {
  try {
    loadConfig(production(smtpUrl));
    return [];
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
}

describe('SMTP_URL in production', () => {
  it.each(['requireTLS=', 'requireTLS=00', 'requireTLS=0.0', 'requireTLS=%20', 'requireTLS=false'])(
    '?%s: the mailer would authenticate in plain text, so production refuses it by name',
    async (query) => {
      // What nodemailer does with it: no STARTTLS offered, and the password goes out anyway.
      const mailer = createSmtpMailer(
        `smtp://rampart:${password}@127.0.0.1:${plaintextAuth.port()}?${query}`,
        'Rampart <no-reply@rampart.test>',
      );
      plaintextAuth.passwordsSeen.length = 0;
      await mailer.send({ to: 'someone@example.test', subject: 'Reset', text: 'link' });
      expect(plaintextAuth.passwordsSeen).toEqual([password]);

      // A relay off this machine (on loopback a relay may go without TLS, as the mailer above did).
      const problems = problemsOf(`smtp://rampart:${password}@mail.example.com:587?${query}`);
      expect(problems).toEqual([expect.stringMatching(/^SMTP_URL: .*requireTLS .*STARTTLS optional/)]);
      expect(problems.join('\n')).not.toContain(password);
    },
  );

  it.each([
    ['ignoreTLS=yes', /ignoreTLS is set/],
    ['ignoreTLS=2', /ignoreTLS is set/],
    ['tls.rejectUnauthorized=', /tls\.rejectUnauthorized is off/],
    ['tls.rejectUnauthorized=0.0', /tls\.rejectUnauthorized is off/],
    ['tls.rejectUnauthorized=false', /tls\.rejectUnauthorized is off/],
  ])('refuses ?%s, naming the setting', (query, message) => {
    const problems = problemsOf(`smtp://rampart:${password}@mail.example.com:587?${query}`);
    expect(problems).toEqual([expect.stringMatching(/^SMTP_URL: /)]);
    expect(problems[0]).toMatch(message);
    expect(problems[0]).not.toContain(password);
  });

  it('checks certificates on loopback and over smtps:// too', () => {
    expect(problemsOf('smtp://127.0.0.1:25?tls.rejectUnauthorized=')[0]).toMatch(/tls\.rejectUnauthorized/);
    expect(problemsOf('smtps://mail.example.com:465?tls.rejectUnauthorized=0')[0]).toMatch(
      /tls\.rejectUnauthorized/,
    );
  });

  it.each([
    ['service=gmail', 'service'], // another host and port, with our password
    ['secured=true', 'secured'], // the plain connection taken for an encrypted one
    ['opportunisticTLS=true', 'opportunisticTLS'],
    ['proxy=http://proxy.example.com:3128', 'proxy'],
    ['debug=true&logger=true', 'debug, logger'],
    ['pool=true', 'pool'],
    ['tls.minVersion=TLSv1', 'tls.minVersion'],
    ['tls=1', 'tls'],
    // nodemailer's names are case-sensitive: this one it ignores, so whoever wrote it meant something else.
    ['RequireTLS=true', 'RequireTLS'],
  ])('refuses the query setting ?%s, naming it', (query, named) => {
    const problems = problemsOf(`smtp://rampart:${password}@mail.example.com:587?${query}`);
    expect(problems).toEqual([
      expect.stringMatching(/^SMTP_URL: production takes only these query settings/),
    ]);
    expect(problems[0]).toMatch(new RegExp(`remove ${named}$`));
  });

  it('refuses a timeout that is not a number of milliseconds', () => {
    expect(problemsOf('smtp://mail.example.com:587?connectionTimeout=soon')).toEqual([
      'SMTP_URL: connectionTimeout must be a number of milliseconds above 0',
    ]);
  });

  it('accepts the settings that keep verified TLS, and a relay on loopback without TLS', () => {
    const safe =
      'requireTLS=true&ignoreTLS=false&tls.rejectUnauthorized=true&tls.servername=mail.example.com' +
      '&connectionTimeout=5000&greetingTimeout=5000&socketTimeout=20000&dnsTimeout=5000' +
      '&name=rampart.example.com&authMethod=PLAIN';
    expect(problemsOf(`smtp://rampart:${password}@mail.example.com:587?${safe}`)).toEqual([]);
    expect(problemsOf(`smtps://rampart:${password}@mail.example.com:465?${safe}`)).toEqual([]);
    expect(problemsOf('smtp://127.0.0.1:25?requireTLS=')).toEqual([]);
    expect(problemsOf('smtp://localhost:25?requireTLS=false')).toEqual([]);
    expect(problemsOf('smtp://[::1]:25?ignoreTLS=true')).toEqual([]);
  });
});

describe('SMTP_URL in development', () => {
  it('takes any query setting (a local catcher such as Mailpit offers no TLS)', () => {
    const config = loadConfig({
      SMTP_URL: 'smtp://mail.example.test:1025?requireTLS=&ignoreTLS=true&debug=true',
    });
    expect(config.smtpUrl).toBe('smtp://mail.example.test:1025?requireTLS=&ignoreTLS=true&debug=true');
  });
});
