import { describe, expect, it } from 'vitest';
import { createSecretBox, deriveKey, UnreadableSealError } from './keys.ts';

const key = (name: string) => deriveKey(Buffer.from(`keys-test-root-${name}`), 'test');

describe('createSecretBox with previous keys (SECRET_KEY rotation)', () => {
  const [a, b, c] = [key('a'), key('b'), key('c')];

  it('opens a value of a previous key and hands it back sealed under the current one', () => {
    const old = createSecretBox(a).seal('seed', 'aad');
    const rotated = createSecretBox([b, c, a]);
    const opened = rotated.unseal(old, 'aad');
    expect(opened.plaintext).toBe('seed');
    expect(opened.resealed).not.toBeNull();
    // The new value opens under the current key alone, and needs no resealing there.
    expect(createSecretBox(b).unseal(opened.resealed ?? '', 'aad')).toEqual({
      plaintext: 'seed',
      resealed: null,
    });
  });

  it('seals under the first key only', () => {
    const sealed = createSecretBox([b, a]).seal('seed', 'aad');
    expect(() => createSecretBox(a).open(sealed, 'aad')).toThrow(UnreadableSealError);
  });

  it('refuses a value of no configured key, or bound to another purpose, with UnreadableSealError', () => {
    const box = createSecretBox([b, a]);
    expect(() => box.open(createSecretBox(c).seal('seed', 'aad'), 'aad')).toThrow(UnreadableSealError);
    expect(() => box.open(box.seal('seed', 'aad'), 'other')).toThrow(UnreadableSealError);
    expect(() => box.open('v2.x.y.z', 'aad')).toThrow('unknown sealed format');
  });
});
