/** Protect: TLS policy, security headers, rate limits, IP reputation, the outbound guard. */
export { registerProtectCommands } from './cli.ts';
export { API_CSP, securityHeaders } from './headers.ts';
export { protectPlugin } from './plugin.ts';
export { TLS12_ECDSA_SUITES, TLS12_RSA_SUITES, tlsOptions } from './tls.ts';
