import canonicalize from 'canonicalize';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type ChainedEvent, canonicalEvent } from './canonical.ts';

/** The documented object (docs/audit.md), built here independently of canonical.ts. */
const documented = (e: ChainedEvent) => ({
  v: 1,
  id: e.id,
  tenant: e.tenantId,
  at: e.occurredAt.toISOString(),
  actor: { type: e.actorType, id: e.actorId, elevation: e.actorElevationId },
  action: e.action,
  target: e.targetType === null && e.targetId === null ? null : { type: e.targetType, id: e.targetId },
  outcome: e.outcome,
  ip: e.ip,
  userAgent: e.userAgent,
  requestId: e.requestId,
  details: e.details,
});

/** What `canonicalize` makes of it: its text, or the error it throws. */
function reference(e: ChainedEvent): { text: string } | { error: true } {
  try {
    return { text: canonicalize(documented(e)) as string };
  } catch {
    return { error: true };
  }
}

function fast(e: ChainedEvent): { text: string } | { error: true } {
  try {
    return { text: canonicalEvent(e) };
  } catch {
    return { error: true };
  }
}

// Strings of any UTF-16 code units: ASCII, controls, quotes and backslashes, astral characters and
// lone surrogates (which RFC 8785 cannot express: both must refuse them).
const anyText = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.string({ unit: 'grapheme', maxLength: 12 }),
  fc.string({ maxLength: 12 }),
  fc.constantFrom('', '"', '\\', '\u2028', '\u007f', '\ud800', '\udc00x', '\ud83d\ude00', 'é', '\u0000'),
);
const maybeText = fc.option(anyText, { nil: null });
const flatValue = fc.oneof(
  anyText,
  fc.double(),
  fc.integer(),
  fc.constantFrom(
    0,
    -0,
    1e21,
    1e-7,
    5e-324,
    Number.MAX_SAFE_INTEGER + 2,
    Number.NaN,
    Number.POSITIVE_INFINITY,
  ),
  fc.boolean(),
  fc.constant(null),
);
// Off the documented shape (nested values): the fast path must hand these to canonicalize.
const nestedValue = fc.oneof(
  fc.array(flatValue, { maxLength: 3 }),
  fc.dictionary(anyText, flatValue, { maxKeys: 3 }),
);
const details = fc.oneof(
  { weight: 5, arbitrary: fc.dictionary(anyText, flatValue, { maxKeys: 8 }) },
  { weight: 1, arbitrary: fc.dictionary(anyText, fc.oneof(flatValue, nestedValue), { maxKeys: 4 }) },
);

const event: fc.Arbitrary<ChainedEvent> = fc.record({
  id: anyText,
  tenantId: maybeText,
  occurredAt: fc.date({ min: new Date(-8.64e15), max: new Date(8.64e15), noInvalidDate: true }),
  actorType: anyText,
  actorId: maybeText,
  actorElevationId: maybeText,
  action: anyText,
  targetType: maybeText,
  targetId: maybeText,
  outcome: anyText,
  ip: maybeText,
  userAgent: maybeText,
  requestId: maybeText,
  details: details as fc.Arbitrary<Record<string, unknown>>,
});

describe('canonicalEvent', () => {
  it('writes the same bytes as canonicalize (RFC 8785) for any event, or refuses the same events', () => {
    fc.assert(
      fc.property(event, (e) => {
        expect(fast(e)).toEqual(reference(e));
      }),
      { numRuns: 20_000 },
    );
    // Seconds on a quiet machine; a loaded one (CI beside other jobs) may need far more.
  }, 120_000);

  // canonical.ts remembers the last details' keys (sorted and quoted) and the last value of several
  // fields: runs of events whose keys come from a few (some off the fast path), in any order and
  // number, so that consecutive events often share all, the first or none of them, must each match.
  it('matches canonicalize over runs of events that share details keys and fields', () => {
    const pool = ['a', 'B', 'é', '\ud83d\ude00', '\ud800', '"', 'zz', ''];
    const run = fc.array(
      fc.tuple(
        fc.shuffledSubarray(pool, { maxLength: 4 }),
        fc.array(flatValue, { minLength: 4, maxLength: 4 }),
        event,
      ),
      { minLength: 2, maxLength: 12 },
    );
    fc.assert(
      fc.property(run, (items) => {
        for (const [keys, values, e] of items) {
          const details = Object.fromEntries(keys.map((key, i) => [key, values[i]]));
          const withDetails = { ...e, details };
          expect(fast(withDetails)).toEqual(reference(withDetails));
        }
      }),
      { numRuns: 3_000 },
    );
  }, 120_000);

  it('matches canonicalize on a typical event (a check that the property above can fail)', () => {
    const e: ChainedEvent = {
      id: '0b7f6c1e-7c1d-4c59-9d55-2f3a1e0c9b11',
      tenantId: null,
      occurredAt: new Date('2026-01-01T00:00:00.000Z'),
      actorType: 'user',
      actorId: 'u1',
      actorElevationId: null,
      action: 'identity.signin.password',
      targetType: 'user',
      targetId: 'u1',
      outcome: 'success',
      ip: '203.0.113.7/32',
      userAgent: 'agent "x"',
      requestId: null,
      details: { zeta: 1.5, alpha: 'a', Beta: true, é: null, '\ud83d\ude00': 1e21, '\uffff': 'last' },
    };
    const text = canonicalEvent(e);
    expect(text).toBe(canonicalize(documented(e)));
    expect(text.startsWith('{"action":"identity.signin.password","actor":{"elevation":null')).toBe(true);
    expect(text).toContain(
      '"details":{"Beta":true,"alpha":"a","zeta":1.5,"é":null,"😀":1e+21,"\uffff":"last"}',
    );
  });
});
