import { sql } from 'kysely';
import type { Database } from '../platform/db/index.ts';
import { auditError } from './errors.ts';
import { chainFilter, inChain } from './store.ts';

/**
 * Audit volume: how many events a chain (a tenant's, or the platform's) recorded per hour or per day,
 * split by outcome, as numbers (`GET …/audit/volume`) and as a picture (`…/audit/volume.svg`, and bars in
 * the terminal from `rampart audit volume`). A sudden rise of failures or denials, or a silence where
 * there is always traffic, is seen here before anyone searches.
 */
export type VolumeBucket = 'hour' | 'day';

export interface VolumeInput {
  bucket?: VolumeBucket | undefined;
  from?: string | undefined;
  to?: string | undefined;
}

export interface VolumePoint {
  /** Start of the bucket (UTC, RFC 3339). */
  start: string;
  total: number;
  failure: number;
  denied: number;
}

export interface Volume {
  bucket: VolumeBucket;
  from: string;
  to: string;
  points: VolumePoint[];
}

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
const bucketMs = { hour: HOUR_MS, day: DAY_MS } as const;
/** The most bars one answer has: a week of hours, 400 days (the default retention) of days. */
const MAX_BUCKETS = { hour: 168, day: 400 } as const;
/** Without `from`: the last two days of hours, the last 30 days. */
const DEFAULT_BUCKETS = { hour: 48, day: 30 } as const;
// The range search accepts (search.ts): years 1-9999 in UTC.
const FIRST_MS = Date.parse('0001-01-01T00:00:00Z');
const END_MS = Date.parse('9999-12-31T00:00:00Z');

/** The buckets covering [from, to), each aligned to its UTC hour or day. */
export function volumeRange(input: VolumeInput, now: Date): { bucket: VolumeBucket; from: Date; to: Date } {
  const bucket = input.bucket ?? 'day';
  const size = bucketMs[bucket];
  const parse = (value: string, name: string) => {
    const ms = Date.parse(value);
    if (Number.isNaN(ms) || ms < FIRST_MS || ms > END_MS) {
      throw auditError(
        'bad_filter',
        `\`${name}\` must be an RFC 3339 time between the years 1 and 9999 (UTC).`,
      );
    }
    return ms;
  };
  // `to` rounded up to the end of its bucket (the current hour or day included), `from` down to a start.
  const toMs = Math.ceil((input.to ? parse(input.to, 'to') : now.getTime() + 1) / size) * size;
  const fromMs = input.from
    ? Math.floor(parse(input.from, 'from') / size) * size
    : toMs - DEFAULT_BUCKETS[bucket] * size;
  if (fromMs >= toMs) throw auditError('bad_filter', '`from` must be before `to`.');
  if ((toMs - fromMs) / size > MAX_BUCKETS[bucket]) {
    throw auditError(
      'range_too_large',
      `Volume by ${bucket} covers at most ${MAX_BUCKETS[bucket]} ${bucket}s; narrow \`from\`/\`to\`` +
        (bucket === 'hour' ? ', or ask by day.' : '.'),
    );
  }
  return { bucket, from: new Date(fromMs), to: new Date(toMs) };
}

/** Counts per bucket, every bucket of the range present (zeros where nothing was recorded). */
export async function auditVolume(
  db: Database,
  tenantId: string | null,
  input: VolumeInput,
  now: Date,
): Promise<Volume> {
  const { bucket, from, to } = volumeRange(input, now);
  const { rows } = await inChain(db, tenantId, (tx) =>
    sql<{ start: Date; total: number; failure: number; denied: number }>`
      SELECT date_trunc(${bucket}, occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS start,
        count(*)::int AS total,
        (count(*) FILTER (WHERE outcome = 'failure'))::int AS failure,
        (count(*) FILTER (WHERE outcome = 'denied'))::int AS denied
      FROM audit_events
      WHERE ${chainFilter(tenantId)} AND occurred_at >= ${from} AND occurred_at < ${to}
      GROUP BY 1`.execute(tx),
  );
  const counted = new Map(rows.map((r) => [new Date(r.start).getTime(), r]));
  const points: VolumePoint[] = [];
  for (let ms = from.getTime(); ms < to.getTime(); ms += bucketMs[bucket]) {
    const row = counted.get(ms);
    points.push({
      start: new Date(ms).toISOString(),
      total: row?.total ?? 0,
      failure: row?.failure ?? 0,
      denied: row?.denied ?? 0,
    });
  }
  return { bucket, from: from.toISOString(), to: to.toISOString(), points };
}

const escapeXml = (text: string) =>
  text.replace(
    /[<>&"']/g,
    (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c] ?? c,
  );

/**
 * The volume as an SVG bar chart: one bar per bucket (successes, then failures and denials stacked on
 * them in their own colours), the largest count and the range as text, a <title> per bar for its figures.
 * Presentation attributes only (no style element or attribute, no script): it renders under the API's
 * `default-src 'none'` policy.
 */
export function volumeSvg(volume: Volume, label: string): string {
  const bar = volume.points.length > 100 ? 4 : 8;
  const gap = 1;
  const plotHeight = 120;
  const left = 8;
  const top = 28;
  const width = Math.max(320, left * 2 + volume.points.length * (bar + gap));
  const height = top + plotHeight + 24;
  const max = Math.max(1, ...volume.points.map((p) => p.total));
  const scale = (n: number) => (n / max) * plotHeight;
  const bars = volume.points.map((p, i) => {
    const x = left + i * (bar + gap);
    const base = top + plotHeight;
    const ok = p.total - p.failure - p.denied;
    const parts = [
      { n: ok, fill: '#4a7bd1' },
      { n: p.failure, fill: '#d9534f' },
      { n: p.denied, fill: '#e8a33d' },
    ];
    let y = base;
    const rects = parts
      .filter((part) => part.n > 0)
      .map((part) => {
        const h = scale(part.n);
        y -= h;
        return `<rect x="${x}" y="${y.toFixed(2)}" width="${bar}" height="${h.toFixed(2)}" fill="${part.fill}"/>`;
      });
    const title = `${p.start}: ${p.total} events, ${p.failure} failures, ${p.denied} denied`;
    return `<g><title>${escapeXml(title)}</title>${rects.join('')}<rect x="${x}" y="${top}" width="${bar}" height="${plotHeight}" fill="transparent"/></g>`;
  });
  const total = volume.points.reduce((sum, p) => sum + p.total, 0);
  const heading = `${label}: ${total} events by ${volume.bucket}, largest ${max === 1 && total === 0 ? 0 : max}`;
  const footer = `${volume.from.slice(0, 16)}Z to ${volume.to.slice(0, 16)}Z; blue success, red failure, orange denied`;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeXml(heading)}">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${left}" y="18" font-family="sans-serif" font-size="12" fill="#222222">${escapeXml(heading)}</text>`,
    `<line x1="${left}" y1="${top + plotHeight + 0.5}" x2="${width - left}" y2="${top + plotHeight + 0.5}" stroke="#888888"/>`,
    ...bars,
    `<text x="${left}" y="${height - 8}" font-family="sans-serif" font-size="10" fill="#555555">${escapeXml(footer)}</text>`,
    '</svg>',
  ].join('\n');
}

const BLOCKS = ' ▁▂▃▄▅▆▇█';

/** The volume as terminal lines: one per bucket, a bar of block characters and the counts. */
export function volumeLines(volume: Volume): string[] {
  const max = Math.max(1, ...volume.points.map((p) => p.total));
  const width = 40;
  return volume.points.map((p) => {
    const eighths = Math.round((p.total / max) * width * 8);
    const bar = '█'.repeat(Math.floor(eighths / 8)) + (eighths % 8 ? (BLOCKS[eighths % 8] ?? '') : '');
    const when = volume.bucket === 'hour' ? `${p.start.slice(0, 13)}h` : p.start.slice(0, 10);
    const extra = p.failure || p.denied ? `  (${p.failure} failed, ${p.denied} denied)` : '';
    return `${when}  ${bar.padEnd(width)}  ${p.total}${extra}`;
  });
}
