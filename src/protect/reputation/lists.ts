import { readFile } from 'node:fs/promises';
import { withoutUrlSecrets } from '../../platform/url-secrets.ts';
import type { OutboundClient } from '../outbound/index.ts';
import { buildCidrSet, type CidrSet } from './cidr-set.ts';
import { isNonGlobalAddress, isNonGlobalRange } from './non-global.ts';
import { parseBlockList } from './parse.ts';

/**
 * A list's name where it is counted or recorded (metric labels, audit details): a feed URL without its
 * query (feeds put access keys there) and without a user and password; a file path as it is.
 */
export function listName(source: string): string {
  if (!/^https?:\/\//i.test(source)) return source;
  try {
    const url = new URL(source);
    return `${url.protocol}//${url.host}${url.pathname}`;
  } catch {
    return source.split('?')[0] ?? source;
  }
}

export interface ListState {
  source: string;
  ranges: number;
  rejectedLines: number;
  /** Entries wholly outside global unicast (bogons): loaded, but no client address ever matches them. */
  neverMatching: number;
  loadedAt: Date | null;
  error: string | null;
}

export interface BlockLists {
  /**
   * The source of the first list that holds the address, or null. An address outside global unicast
   * (loopback, private, link-local, CGNAT...: non-global.ts) is never matched: it is a health probe, the
   * trusted proxy or an internal caller, and lists of bogons would refuse them all.
   */
  match(address: string): string | null;
  refresh(): Promise<void>;
  state(): ListState[];
  /** Starts the refresh schedule (the first refresh is awaited by the caller). */
  schedule(seconds: number): void;
  stop(): void;
}

export interface BlockListDeps {
  outbound: OutboundClient;
  clock: { now(): Date };
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

const isUrl = (source: string) => /^https?:\/\//.test(source);

/**
 * The configured block lists (files or URLs; URLs are fetched through the outbound guard). Each list
 * is replaced only by a complete, parsed new version: a failed refresh keeps the last good one.
 */
export function createBlockLists(sources: string[], deps: BlockListDeps): BlockLists {
  const sets = new Map<string, CidrSet>();
  const states = new Map<string, ListState>(
    sources.map((source) => [
      source,
      { source, ranges: 0, rejectedLines: 0, neverMatching: 0, loadedAt: null, error: null },
    ]),
  );
  let timer: NodeJS.Timeout | null = null;

  async function load(source: string) {
    const state = states.get(source) as ListState;
    // Feeds put access keys in the query (and a URL may carry a user and password): logged masked, at
    // start and on every refresh.
    const shown = withoutUrlSecrets(source);
    try {
      const text = isUrl(source)
        ? await (await deps.outbound.request('ip-list', source)).text()
        : await readFile(source, 'utf8');
      const parsed = parseBlockList(text);
      const set = buildCidrSet(parsed.cidrs);
      const neverMatching = parsed.cidrs.filter(isNonGlobalRange);
      sets.set(source, set);
      Object.assign(state, {
        ranges: set.size.v4 + set.size.v6,
        rejectedLines: parsed.rejected,
        neverMatching: neverMatching.length,
        loadedAt: deps.clock.now(),
        error: null,
      });
      deps.log.info(
        {
          source: shown,
          ranges: state.ranges,
          rejectedLines: parsed.rejected,
          neverMatching: neverMatching.length,
        },
        'IP block list loaded',
      );
      if (neverMatching.length > 0) {
        // Said once per load, so whoever reads the list's numbers knows these entries do nothing here.
        deps.log.info(
          {
            source: shown,
            neverMatching: neverMatching.length,
            examples: neverMatching.slice(0, 5).map(([address, bits]) => `${address.toString()}/${bits}`),
          },
          'IP block list entries outside global unicast (bogons) are never matched: such clients are probes, proxies or internal callers',
        );
      }
    } catch (error) {
      state.error = error instanceof Error ? error.message : String(error);
      // The error's message and type only: an error object can carry the URL whole (Node's invalid-URL
      // error keeps it as `input`, which the log serializer would print).
      const { name, code } = error as { name?: unknown; code?: unknown };
      const err = {
        type: typeof name === 'string' ? name : typeof error,
        ...(typeof code === 'string' ? { code } : {}),
        message: state.error.replaceAll(source, shown),
      };
      deps.log.warn(
        { source: shown, error: err },
        'IP block list could not be loaded; keeping the previous version',
      );
    }
  }

  return {
    match(address) {
      if (isNonGlobalAddress(address)) return null;
      for (const [source, set] of sets) if (set.has(address)) return source;
      return null;
    },
    async refresh() {
      await Promise.all(sources.map(load));
    },
    state: () => [...states.values()].map((s) => ({ ...s })),
    schedule(seconds) {
      if (sources.length === 0 || timer) return;
      timer = setInterval(() => void this.refresh(), seconds * 1000);
      timer.unref();
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = null;
    },
  };
}
