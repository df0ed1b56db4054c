import type { Config } from '../../platform/config/index.ts';
import type { OutboundPolicy } from './client.ts';

export function outboundPolicyFrom(config: Config): OutboundPolicy {
  return {
    allowHosts: config.outboundAllowHosts,
    allowPrivate: config.outboundAllowPrivate,
    tenantAllowPrivate: config.outboundTenantAllowPrivate,
    timeoutMs: config.outboundTimeoutMs,
    maxBytes: config.outboundMaxBytes,
    maxRedirects: config.outboundMaxRedirects,
  };
}
