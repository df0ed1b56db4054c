import { describe, expect, it } from 'vitest';
import { checkDetails, REDACTED } from './details.ts';

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
});
