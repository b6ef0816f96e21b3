/**
 * Following packuments politely: each is asked for with the validators of the last answer
 * (If-None-Match, If-Modified-Since), so an unchanged package costs a 304 and no body; a 429 or
 * 5xx (or no answer) puts that package in a back-off (doubling, from 30 s to an hour, or what
 * Retry-After says) before it is asked again; at most FETCH_CONCURRENCY requests at once.
 * Registries, scopes, credentials and proxies come from the user's npm configuration
 * (npm-registry-fetch, as npm itself).
 */
import npa from 'npm-package-arg';
import { fetchOptions, type NpmConfig } from '../resolve/npmrc.js';
import { registryFor } from '../resolve/npm-lock.js';
import { phonehomeVersion } from '../paths.js';
import type { WatchedPackument } from '../store/store.js';

export const FETCH_CONCURRENCY = 6;
const BACKOFF_MIN_MS = 30_000;
const BACKOFF_MAX_MS = 3_600_000;
/** A packument larger than this is not read (the largest on npm are a few tens of MB). */
const MAX_PACKUMENT_BYTES = 64 * 1024 * 1024;
/** Nor one of more versions than this (the most on npm are a few tens of thousands). */
const MAX_VERSIONS = 100_000;

/** The longest a packument's whole answer may take. */
const FETCH_DEADLINE_MS = 60_000;

/**
 * A response body as text, decoded, or undefined past `limit` decoded bytes: then the request is
 * aborted (destroying the decoder while compressed bytes still arrive throws outside any caller)
 * and what the stream says after that is ignored.
 */
async function readBounded(
  body: AsyncIterable<Buffer | string> | null | undefined,
  limit: number,
  request: AbortController,
): Promise<string | undefined> {
  if (!body) return '';
  const chunks: Buffer[] = [];
  let size = 0;
  const stream = body as AsyncIterable<Buffer | string> & {
    on?: (event: string, f: (e: unknown) => void) => void;
  };
  stream.on?.('error', () => undefined);
  try {
    for await (const c of stream) {
      const b = typeof c === 'string' ? Buffer.from(c) : c;
      size += b.length;
      if (size > limit) {
        request.abort(new Error('too large'));
        return undefined;
      }
      chunks.push(b);
    }
  } catch (e) {
    if (size > limit) return undefined;
    throw e;
  }
  return Buffer.concat(chunks).toString('utf8');
}

export type FetchOutcome =
  | { kind: 'changed'; packument: WatchedPackument }
  | { kind: 'not-modified' }
  | { kind: 'failed'; status?: number; message: string; retryAfterMs?: number };

/** How a pass's requests went, for the log and for tests. */
export interface FetchCounts {
  requests: number;
  notModified: number;
  changed: number;
  failed: number;
  /** Packages not asked this pass: in a back-off after a failure. */
  backingOff: number;
}

export class PackumentFollower {
  private readonly backoff = new Map<string, { until: number; ms: number }>();

  constructor(
    private readonly config: NpmConfig,
    private readonly now: () => number = Date.now,
  ) {}

  registryOf(name: string): string {
    return registryFor(name, this.config);
  }

  /** Whether this package is in a back-off now. */
  waiting(name: string): boolean {
    const b = this.backoff.get(name);
    return !!b && b.until > this.now();
  }

  async fetch(
    name: string,
    last: WatchedPackument | undefined,
    signal?: AbortSignal,
  ): Promise<FetchOutcome> {
    const { default: fetch } = await import('npm-registry-fetch');
    const headers: Record<string, string> = { accept: 'application/json' };
    if (last?.etag) headers['if-none-match'] = last.etag;
    if (last?.lastModified) headers['if-modified-since'] = last.lastModified;
    // One deadline for the whole transfer (a registry that trickles a byte at a time must not
    // hold the pass), and the way to stop reading past the size bound without breaking the
    // decoder mid-stream: the request is aborted.
    const own = new AbortController();
    const deadline = setTimeout(() => own.abort(new Error('timed out')), FETCH_DEADLINE_MS);
    const both = signal ? AbortSignal.any([signal, own.signal]) : own.signal;
    const outcome = await (async (): Promise<FetchOutcome> => {
      try {
        const res = await fetch(`/${npa(name).escapedName ?? encodeURIComponent(name)}`, {
          ...fetchOptions(this.config),
          spec: name,
          headers,
          // Who asks, for a registry's logs (npm's own requests say npm/<version>).
          userAgent: `phonehome/${phonehomeVersion()} watch (node ${process.version})`,
          // Retries are this module's (a back-off across passes), not a burst within one.
          retry: { retries: 0 },
          fetchRetries: 0,
          signal: both,
        });
        if (res.status === 304)
          // Unchanged since what? Without an earlier answer a 304 says nothing (a proxy's, or a
          // registry's mistake): the package's versions are unknown, never "nothing new".
          return headers['if-none-match'] || headers['if-modified-since']
            ? { kind: 'not-modified' }
            : {
                kind: 'failed',
                status: 304,
                message: 'answered 304 to a request without validators',
              };
        const text = await readBounded(res.body, MAX_PACKUMENT_BYTES, own);
        if (text === undefined)
          return {
            kind: 'failed',
            status: res.status,
            message: `a packument larger than ${MAX_PACKUMENT_BYTES / 1024 ** 2} MB`,
          };
        const doc = JSON.parse(text) as {
          versions?: Record<
            string,
            { dist?: { integrity?: string }; deprecated?: unknown; engines?: unknown }
          >;
          time?: Record<string, string>;
          'dist-tags'?: Record<string, string>;
        };
        if (!doc || typeof doc !== 'object' || typeof doc.versions !== 'object')
          return { kind: 'failed', status: res.status, message: 'not a packument' };
        if (Object.keys(doc.versions ?? {}).length > MAX_VERSIONS)
          return {
            kind: 'failed',
            status: res.status,
            message: `more than ${MAX_VERSIONS} versions`,
          };
        const versions: WatchedPackument['versions'] = {};
        for (const [v, m] of Object.entries(doc.versions ?? {})) {
          const time = doc.time?.[v];
          versions[v] = {
            ...(typeof m?.dist?.integrity === 'string' ? { integrity: m.dist.integrity } : {}),
            ...(typeof time === 'string' ? { time } : {}),
            ...(m?.deprecated ? { deprecated: true } : {}),
            ...(typeof (m?.engines as { node?: unknown } | undefined)?.node === 'string' &&
            String((m?.engines as { node: string }).node).length <= 256
              ? { engines: (m?.engines as { node: string }).node }
              : {}),
          };
        }
        return {
          kind: 'changed',
          packument: {
            etag: res.headers.get('etag'),
            lastModified: res.headers.get('last-modified'),
            versions,
            fetchedAt: new Date(this.now()).toISOString(),
            distTags: Object.fromEntries(
              Object.entries(doc['dist-tags'] ?? {}).filter(
                (e): e is [string, string] => typeof e[1] === 'string',
              ),
            ),
          },
        };
      } catch (e) {
        if (signal?.aborted) throw signal.reason;
        if (own.signal.aborted)
          return {
            kind: 'failed',
            message: `no whole answer in ${FETCH_DEADLINE_MS / 1000} s`,
          };
        const err = e as {
          statusCode?: number;
          headers?: Record<string, string | string[] | undefined>;
          message?: string;
        };
        const status = err.statusCode;
        // npm-registry-fetch's error keeps the headers as a plain object of lists.
        const raw = err.headers?.['retry-after'];
        const value = Array.isArray(raw) ? raw[0] : raw;
        // Seconds, or an HTTP date.
        const after = /^\d+$/.test(value ?? '')
          ? Number(value)
          : (Date.parse(value ?? '') - this.now()) / 1000;
        return {
          kind: 'failed',
          ...(status ? { status } : {}),
          message: err.message ?? String(e),
          ...(Number.isFinite(after) && after > 0 ? { retryAfterMs: after * 1000 } : {}),
        };
      }
    })().finally(() => clearTimeout(deadline));
    if (outcome.kind === 'failed') {
      // A 404 or 401 will not get better by asking sooner either.
      const prev = this.backoff.get(name)?.ms ?? 0;
      const ms = Math.min(
        BACKOFF_MAX_MS,
        Math.max(outcome.retryAfterMs ?? 0, prev ? prev * 2 : BACKOFF_MIN_MS),
      );
      this.backoff.set(name, { until: this.now() + ms, ms });
    } else {
      this.backoff.delete(name);
    }
    return outcome;
  }
}
