import { describe, expect, it } from 'vitest';
import { auditableUrl, checkDetails, REDACTED } from './details.ts';

describe('audit details', () => {
  it('keeps a flat map of short facts as it is', () => {
    const details = { email: 'ann@example.test', attempt: 3, locked: false, reason: null };
    expect(checkDetails(details)).toEqual(details);
  });

  it('refuses a structure and names where it is', () => {
    expect(() => checkDetails({ roles: ['a'] } as never)).toThrow(/schema at \/roles/);
    expect(() => checkDetails({ 'bad name!': 1 })).toThrow(/schema at/);
  });

  it('refuses a key that names a secret', () => {
    expect(() => checkDetails({ passwordHash: 'x' })).toThrow(/looks like a secret/);
  });

  it('redacts a value shaped like a credential', () => {
    const hash = '$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA';
    expect(checkDetails({ note: hash })).toEqual({ note: REDACTED });
  });

  it('redacts every credential shape, the shortest of each included, and keeps look-alikes', () => {
    const secrets = [
      '$argon2d$',
      'x $2b$10$ y',
      '-----BEGIN CERTIFICATE-----',
      '-----BEGIN RSA PRIVATE KEY-----',
      'eyJhbGciOiJ.eyJzdWIiOiJ',
      `sha1 ${'a1'.repeat(20)}`,
      'tok Zk3qL9vR2mX8pT4wY7nB1cD6fG0hJ5sA end',
    ];
    for (const note of secrets) expect(checkDetails({ note }), note).toEqual({ note: REDACTED });
    const harmless = [
      '$5 refund',
      'ann@example.test',
      '0193a1b2-0000-7000-8000-000000000001',
      'eyJhbGciO.eyJzdWIiOi',
      'z'.repeat(40),
      'Content-Security-Policy-Report-Only-Header',
    ];
    for (const note of harmless) expect(checkDetails({ note }), note).toEqual({ note });
  });

  it('refuses a secret-named key every time, not only the first', () => {
    for (let i = 0; i < 3; i++) expect(() => checkDetails({ totpSeed: 'x' })).toThrow(/looks like a secret/);
    expect(checkDetails({ factor: 'totp' })).toEqual({ factor: 'totp' });
  });

  it('keeps a URL without its query, fragment or user info (they may hold a credential)', () => {
    expect(auditableUrl('https://user:pw@siem.example.com:8443/hook?token=abc#x')).toBe(
      'https://siem.example.com:8443/hook (query left out)',
    );
    expect(auditableUrl('syslog+tls://logs.example.com:6514')).toBe('syslog+tls://logs.example.com:6514');
    expect(auditableUrl('https://hooks.example.com/rampart')).toBe('https://hooks.example.com/rampart');
    expect(auditableUrl('not a url')).toBe('[not a URL]');
  });
});
