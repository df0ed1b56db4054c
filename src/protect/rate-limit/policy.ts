/**
 * Rate-limit policy: which class a route belongs to, and how many requests each scope of a class may
 * make per window. Routes declare `config: { rateLimit: 'signin' }` (or `false` for none); a route
 * that declares nothing gets a class derived from its method and URL, so every route is limited.
 */
import { rateLimitRouteClasses } from '../../platform/config/index.ts';

// The list lives with the configuration, which checks RATE_LIMIT_FAIL_CLOSED against it before any
// capability loads (platform/ imports no capability).
export const routeClasses = rateLimitRouteClasses;
export type RouteClass = (typeof routeClasses)[number];

/** ip: the client address; account: the signed-in actor, or the account named in a sign-in; tenant: the :tenant of the URL. */
export const scopes = ['ip', 'account', 'tenant'] as const;
export type Scope = (typeof scopes)[number];

export interface Limit {
  points: number;
  seconds: number;
}

export type Limits = Record<RouteClass, Partial<Record<Scope, Limit>>> & { failures: { ip: Limit } };

const per = (points: number, seconds = 60): Limit => ({ points, seconds });

/**
 * Defaults for one deployment. Sign-in also has the per-account lockout (identity) and the per-address
 * failure budget (`failures.ip`, charged only by failed sign-ins: credential stuffing spreads over
 * accounts); the per-account limit here only stops one account's verifications from hogging the CPU.
 */
export function defaultLimits(): Limits {
  return {
    signin: { ip: per(100), account: per(60), tenant: per(3000) },
    token: { ip: per(300), account: per(120), tenant: per(6000) },
    api: { ip: per(3000), account: per(1200), tenant: per(20_000) },
    public: { ip: per(600), tenant: per(20_000) },
    failures: { ip: per(50, 300) },
  };
}

/** Applies RATE_LIMITS entries (`class.scope=points/seconds`); returns the problems it found. */
export function applyOverrides(limits: Limits, entries: string[]): string[] {
  const problems: string[] = [];
  for (const entry of entries) {
    const match = /^([a-z]+)\.([a-z]+)=(\d+)\/(\d+)$/.exec(entry);
    const [, cls = '', scope = '', points = '0', seconds = '0'] = match ?? [];
    const knownClass = (routeClasses as readonly string[]).includes(cls) || cls === 'failures';
    const knownScope = cls === 'failures' ? scope === 'ip' : (scopes as readonly string[]).includes(scope);
    if (!match || !knownClass || !knownScope || Number(points) < 1 || Number(seconds) < 1) {
      problems.push(
        `RATE_LIMITS: "${entry}" is not class.scope=points/seconds with class one of ${routeClasses.join(', ')}, failures and scope one of ${scopes.join(', ')}`,
      );
      continue;
    }
    const byScope = (limits as unknown as Record<string, Record<string, Limit>>)[cls];
    if (byScope) byScope[scope] = per(Number(points), Number(seconds));
  }
  return problems;
}

// Changing the password and starting a TOTP enrolment check the current one, so they are limited like a
// sign-in (a password oracle); so is every form that takes a code or a link token (routes.test.ts checks
// every POST whose body has a password, code or token field is in this class).
const signinPath =
  /\/(auth\/signin|auth\/second-factor|signin(\/code)?|signup|password\/(forgot|reset)|forgot|reset|invite|operator\/signin|operator\/setup(\/confirm)?|invitations\/accept|email\/verify|verify-email|me\/password|account\/password|account\/two-step\/(recovery-codes|remove)|me\/mfa\/totp(\/confirm|\/remove)?|mfa\/enrol(\/start)?)$/;
const tokenPath = /\/(token|introspect|revoke|device_authorization)$/;

/**
 * The class of a route that declares none. Health probes and metrics are left out: load balancers poll
 * them and they carry no data (metrics has its own access rule).
 */
export function deriveClass(method: string, url: string): RouteClass | false {
  if (url === '/healthz' || url === '/readyz' || url === '/metrics') return false;
  if (method === 'POST' && signinPath.test(url)) return 'signin';
  if (method === 'POST' && tokenPath.test(url)) return 'token';
  if (url.startsWith('/api/')) return 'api';
  return 'public';
}
