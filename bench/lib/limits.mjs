// Rate limits high enough that a benchmark's own load is never refused, so the limiter still runs
// (its cost is part of what is measured) but a throughput figure is not a count of 429s.
const HUGE = 1_000_000_000;
const scopes = {
  signin: ['ip', 'account', 'tenant'],
  token: ['ip', 'account', 'tenant'],
  api: ['ip', 'account', 'tenant'],
  public: ['ip', 'tenant'],
};

export const benchRateLimits = Object.entries(scopes)
  .flatMap(([routeClass, list]) => list.map((scope) => `${routeClass}.${scope}=${HUGE}/60`))
  .join(',');
