import { isIP } from 'node:net';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { responses, strictObject, Timestamp } from '../platform/http/schemas.ts';
import { protectError } from './errors.ts';
import type { Protection } from './protection.ts';

const WafEvent = strictObject({
  at: Timestamp,
  clientIp: Type.String({ minLength: 2, maxLength: 45, description: 'The client address the WAF saw' }),
  action: Type.Union([Type.Literal('blocked'), Type.Literal('detected')], {
    description: 'Whether the WAF refused the request or only flagged it',
  }),
  ruleId: Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9._:-]+$' }),
});

const WafReport = strictObject({
  source: Type.String({
    minLength: 1,
    maxLength: 64,
    pattern: '^[a-z0-9][a-z0-9._-]*$',
    description: 'Which WAF reports (e.g. edge-modsecurity)',
  }),
  events: Type.Array(WafEvent, { minItems: 1, maxItems: 1000 }),
});

/**
 * Intake of an upstream WAF's events (ModSecurity, Coraza, a CDN's firewall), sent by its log shipper.
 * Blocked requests are counted into the audit trail like Rampart's own refusals (`protect.blocks.counted`,
 * kind `waf`), so the `protect.blocks` rule sees WAF, rate-limit and block-list refusals together, and a
 * sample is written as `protect.waf.blocked`.
 */
export const wafRoutes: FastifyPluginAsyncTypebox<{ protection: Protection }> = async (
  app,
  { protection },
) => {
  app.post(
    '/api/v1/protect/waf-events',
    {
      config: { access: 'operator', permission: 'waf-events:write' },
      schema: {
        tags: ['protect'],
        summary: "Report an upstream WAF's events (up to 1,000 per request)",
        body: WafReport,
        response: responses({ 202: strictObject({ accepted: Type.Integer(), blocked: Type.Integer() }) }),
      },
    },
    async (request, reply) => {
      const { source, events } = request.body;
      const bad = events.findIndex((e) => isIP(e.clientIp) === 0);
      if (bad >= 0) {
        throw protectError('invalid_waf_event', `events[${bad}].clientIp is not an IPv4 or IPv6 address.`, {
          errors: [
            { pointer: `/events/${bad}/clientIp`, message: 'Give the client address as an IP address.' },
          ],
        });
      }
      const blocked = events.filter((e) => e.action === 'blocked');
      for (const e of blocked) protection.recordWafBlocked(source, e.clientIp, e.ruleId);
      return reply.status(202).send({ accepted: events.length, blocked: blocked.length });
    },
  );
};
