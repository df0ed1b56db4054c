/**
 * Adding a SIEM sink (and enabling an operator) is a platform four-eyes action: one operator asks (202),
 * another approves, the first runs it. Suites add their sinks through this whole flow over HTTP.
 */
import { expect } from 'vitest';
import type { SinkApproval } from '../src/audit/index.ts';
import { operatorSession } from './access-helpers.ts';
import type { TestApp } from './helpers.ts';

type Clock = { now(): Date; advance(ms: number): void };

/** For suites that call the sink service directly: an approval whose re-check always stands. */
export const approvedForTest: SinkApproval = {
  guard: async () => {},
  approvalId: '00000000-0000-4000-8000-000000000000',
  approvedBy: null,
};

let made = 0;

/**
 * Two new operators of this app, each signed in (password + TOTP) now: one asks, the other approves.
 * New ones each time, so suites that move their clock backwards (a TOTP step is accepted once) or by
 * hours (sign-in tokens expire) can add sinks at any point.
 */
export async function sinkOperators(t: TestApp, clock: Clock) {
  made += 1;
  return {
    requester: await operatorSession(t, `sink-requester-${made}@ops.test`, clock),
    approver: await operatorSession(t, `sink-approver-${made}@ops.test`, clock),
  };
}

export interface AddedSink {
  id: string;
  kind: 'webhook' | 'syslog';
  url: string;
  secret?: string;
  approvalId: string;
}

/**
 * A platform four-eyes action through HTTP: a new operator asks (202), another approves, the first runs
 * it with `params` (deciding and running need a sign-in within 5 minutes: both signed in moments ago).
 * Returns the run's result and the approval's id.
 */
export async function runPlatformAction(
  t: TestApp,
  clock: Clock,
  ask: { method: 'POST'; url: string; payload?: object },
  params: object,
): Promise<{ result: Record<string, unknown>; approvalId: string }> {
  const { requester, approver } = await sinkOperators(t, clock);
  const asked = await t.app.inject({ ...ask, headers: requester.headers });
  expect(asked.statusCode, asked.body).toBe(202);
  const approvalId = asked.json().approval.id as string;
  const approved = await t.app.inject({
    method: 'POST',
    url: `/api/v1/access/platform-approvals/${approvalId}/approve`,
    headers: approver.headers,
  });
  expect(approved.statusCode, approved.body).toBe(200);
  const run = await t.app.inject({
    method: 'POST',
    url: `/api/v1/access/platform-approvals/${approvalId}/execute`,
    headers: requester.headers,
    payload: { params },
  });
  expect(run.statusCode, run.body).toBe(200);
  return { result: run.json().result, approvalId };
}

/** Adds a sink through four-eyes (above); the sink as the run answered it. */
export async function addSinkApproved(t: TestApp, clock: Clock, payload: object): Promise<AddedSink> {
  const { result, approvalId } = await runPlatformAction(
    t,
    clock,
    { method: 'POST', url: '/api/v1/audit/sinks', payload },
    payload,
  );
  return { ...(result as Omit<AddedSink, 'approvalId'>), approvalId };
}
