import type { Kysely } from 'kysely';
import { describe, expect, it } from 'vitest';
import { findMatches } from './alert-matchers.ts';
import { defaultRuleSettings, type RuleEvent } from './alert-rules.ts';
import type { AuditTables } from './tables.ts';

const signIn = (seq: number, userId: string): RuleEvent => ({
  id: `event-${seq}`,
  seq,
  occurredAt: new Date('2026-11-26T10:00:00Z'),
  actorType: 'user',
  actorId: userId,
  actorElevationId: null,
  action: 'identity.signin.password',
  targetType: 'user',
  targetId: userId,
  outcome: 'success',
  ip: '192.0.2.1',
  userAgent: 'test',
  details: {},
});

describe('signin.new_location', () => {
  // Regression: the rule asked whether the user is staff once per sign-in event, one statement each,
  // so every sign-in cost the evaluator a query a second later.
  it('asks whether a user is staff once per user and batch, not once per sign-in', async () => {
    const asked: string[] = [];
    const events = [1, 2, 3, 4, 5, 6].map((seq) => signIn(seq, seq % 2 ? 'user-a' : 'user-b'));
    const matches = await findMatches(
      {
        // Members only: the rule stops at isStaff and reads nothing else.
        tx: {} as Kysely<AuditTables>,
        tenantId: 'tenant-1',
        rules: defaultRuleSettings(),
        workingHours: null,
        isStaff: async (_tx, userId) => {
          asked.push(userId);
          return false;
        },
      },
      events,
    );
    expect(matches).toEqual([]);
    expect(asked.sort()).toEqual(['user-a', 'user-b']);
  });
});

describe('protect.incident', () => {
  it('raises a platform alert keyed by the chain when the checkpoint job refuses to sign it', async () => {
    const refused: RuleEvent = {
      ...signIn(7, 'audit-checkpoint'),
      actorType: 'system',
      action: 'audit.checkpoint.refused',
      targetType: 'audit_chain',
      targetId: 'tenant-x',
      outcome: 'failure',
      details: { seq: 5, eventId: 'e-5', reason: 'mac_mismatch' },
    };
    const matches = await findMatches(
      {
        tx: {} as Kysely<AuditTables>,
        tenantId: null,
        rules: defaultRuleSettings(),
        workingHours: null,
        isStaff: async () => false,
      },
      [refused],
    );
    expect(matches).toMatchObject([{ rule: 'protect.incident', keys: ['chain:tenant-x'] }]);
  });
});
