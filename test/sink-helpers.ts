/**
 * Adding a SIEM sink is a platform four-eyes action: one operator asks (202), another approves, the first
 * runs it. Suites about delivery add their sinks through this whole flow over HTTP.
 */
import { expect } from 'vitest';
import type { SinkApproval } from '../src/audit/index.ts';
import { operatorSession } from './access-helpers.ts';
import type { TestApp } from './helpers.ts';

type Clock = { now(): Date; advance(ms: number): void };
type Operator = Awaited<ReturnType<typeof operatorSession>>;

/** For suites that call the sink service directly: an approval whose re-check always stands. */
export const approvedForTest: SinkApproval = {
  guard: async () => {},
  approvalId: '00000000-0000-4000-8000-000000000000',
  approvedBy: null,
};

const pairs = new WeakMap<TestApp, Promise<{ requester: Operator; approver: Operator }>>();

/** Two operators of this app, made once: one asks for sinks, the other approves them. */
export function sinkOperators(t: TestApp, clock: Clock) {
  let pair = pairs.get(t);
  if (!pair) {
    pair = (async () => ({
      requester: await operatorSession(t, 'sink-requester@ops.test', clock),
      approver: await operatorSession(t, 'sink-approver@ops.test', clock),
    }))();
    pairs.set(t, pair);
  }
  return pair;
}

export interface AddedSink {
  id: string;
  kind: 'webhook' | 'syslog';
  url: string;
  secret?: string;
  approvalId: string;
}

/**
 * Asks for a sink, has the other operator approve it (each with a fresh sign-in: deciding and running
 * need a second factor within 5 minutes) and runs it; the sink as the run answered it.
 */
export async function addSinkApproved(t: TestApp, clock: Clock, payload: object): Promise<AddedSink> {
  const { requester, approver } = await sinkOperators(t, clock);
  const asked = await t.app.inject({
    method: 'POST',
    url: '/api/v1/audit/sinks',
    headers: requester.headers,
    payload,
  });
  expect(asked.statusCode, asked.body).toBe(202);
  const approvalId = asked.json().approval.id as string;
  const approved = await t.app.inject({
    method: 'POST',
    url: `/api/v1/access/platform-approvals/${approvalId}/approve`,
    headers: await approver.signInAgain(),
  });
  expect(approved.statusCode, approved.body).toBe(200);
  const run = await t.app.inject({
    method: 'POST',
    url: `/api/v1/access/platform-approvals/${approvalId}/execute`,
    headers: await requester.signInAgain(),
    payload: { params: payload },
  });
  expect(run.statusCode, run.body).toBe(200);
  return { ...(run.json().result as Omit<AddedSink, 'approvalId'>), approvalId };
}
