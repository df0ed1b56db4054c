/** The outbound guard: the one HTTP client for every request the server makes (webhooks, SIEM, feeds). */
export { forbiddenReason } from './addresses.ts';
export {
  createOutboundClient,
  type OutboundClient,
  type OutboundDeps,
  type OutboundPolicy,
  type OutboundRefusal,
  OutboundRefusedError,
  type OutboundRequest,
  type OutboundResponse,
} from './client.ts';
export { outboundPolicyFrom } from './policy.ts';
