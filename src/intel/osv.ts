/**
 * Known-malicious package records in the OSV format (the OpenSSF malicious-packages data, and
 * osv.dev's `npm/all.zip`, whose `MAL-` entries are the same records): which npm versions a record
 * names, and the indicators of compromise (domains, URLs, IP addresses) it lists. Pure: reading
 * files and keeping the set are elsewhere (intel/import.ts, the result store).
 */
import { isIP } from 'node:net';
import { isInternalAddress } from '../core/addresses.js';
import semver from 'semver';

/** One record, as phonehome keeps it. */
export interface MaliciousRecord {
  id: string;
  /** The npm package name it is about. */
  name: string;
  /** RFC 3339, as the record says. */
  modified: string;
  published?: string;
  summary?: string;
  /** Versions listed one by one. */
  versions: string[];
  /** OSV SEMVER/ECOSYSTEM ranges: events in order. */
  ranges: RangeEvent[][];
  /** Indicators of compromise, normalised: lower-case names, addresses as written. */
  iocs: { domains: string[]; ips: string[] };
}

export interface RangeEvent {
  introduced?: string;
  fixed?: string;
  last_affected?: string;
}

/** What a record that was read but not kept was (withdrawn, another ecosystem, not a MAL- id). */
export type Skipped = 'withdrawn' | 'not-npm' | 'not-malicious';

const MAX_LIST = 10_000;
const MAX_TEXT = 500;
/** Longer than any version, name or host can be: a longer string is not one, and is dropped. */
const MAX_ITEM = 256;
/** Packages one record may name (typosquat families run to dozens). */
const MAX_NAMES = 1000;

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const strings = (v: unknown): string[] =>
  Array.isArray(v)
    ? v.filter((x): x is string => typeof x === 'string' && x.length <= MAX_ITEM).slice(0, MAX_LIST)
    : [];
/** A range bound as a version: full semver, or a short one (`1.0`) read as npm would. */
const bound = (x: string): semver.SemVer | null =>
  x.length > MAX_ITEM ? null : (semver.parse(x) ?? semver.coerce(x));

/** The host a URL-shaped IOC names (`hxxp://evil[.]example/x` as defanged reports write it too). */
export function iocHost(value: string): string | undefined {
  const refanged = value
    .trim()
    .replace(/^hxxp/i, 'http')
    .replace(/\[\.\]|\(\.\)|\[dot\]/gi, '.');
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(refanged) ? refanged : `http://${refanged}`;
  try {
    const host = new URL(withScheme).hostname.replace(/^\[|\]$/g, '').replace(/\.$/, '');
    return host ? host.toLowerCase() : undefined;
  } catch {
    return undefined;
  }
}

const internal = isInternalAddress;

const NAME = /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,62})?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,62})?)+$/;

/**
 * A record's IOCs as destinations: names (from `domains` and the hosts of `urls`) and addresses.
 * A name that is not a host name with a dot, or an address in private, loopback, link-local or
 * shared space (nothing a package reaches on the internet), is left out.
 */
export function normaliseIocs(raw: unknown): MaliciousRecord['iocs'] {
  const o = (raw ?? {}) as Record<string, unknown>;
  const domains = new Set<string>();
  const ips = new Set<string>();
  const add = (host: string | undefined) => {
    if (!host) return;
    if (isIP(host)) {
      if (!internal(host)) ips.add(host.toLowerCase());
    } else if (NAME.test(host)) domains.add(host);
  };
  for (const d of strings(o.domains)) add(iocHost(d));
  for (const u of strings(o.urls)) add(iocHost(u));
  for (const ip of strings(o.ip_addresses ?? o.ips)) {
    const a = ip.trim().replace(/^\[|\]$/g, '');
    if (isIP(a) && !internal(a)) ips.add(a.toLowerCase());
  }
  return { domains: [...domains].sort(), ips: [...ips].sort() };
}

/**
 * One OSV document read as a record for npm, or why it is not one. Throws on what is not an OSV
 * record at all (no id, no affected list): the caller names the file.
 */
export function readOsvRecord(doc: unknown): MaliciousRecord[] | Skipped {
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new Error('not a JSON object');
  const d = doc as Record<string, unknown>;
  const id = str(d.id);
  if (!id || id.length > 200) throw new Error('no "id"');
  const modified = str(d.modified);
  if (!modified || modified.length > 64) throw new Error(`${id}: no "modified"`);
  if (!Array.isArray(d.affected)) throw new Error(`${id}: no "affected" list`);
  if (!id.startsWith('MAL-')) return 'not-malicious';
  if (str(d.withdrawn)) return 'withdrawn';
  const npm = d.affected.filter(
    (a): a is Record<string, unknown> =>
      !!a &&
      typeof a === 'object' &&
      str((a as { package?: { ecosystem?: unknown } }).package?.ecosystem) === 'npm' &&
      typeof (a as { package?: { name?: unknown } }).package?.name === 'string',
  );
  if (npm.length === 0) return 'not-npm';
  const byName = new Map<string, Record<string, unknown>[]>();
  for (const a of npm) {
    const n = String((a.package as { name: string }).name);
    if (n.length === 0 || n.length > 214) continue;
    const list = byName.get(n) ?? [];
    list.push(a);
    // Past MAX_NAMES packages the rest of the record's names are left out, its IOCs kept.
    if (!byName.has(n) && byName.size >= MAX_NAMES) continue;
    byName.set(n, list);
  }
  const summary = str(d.summary)?.slice(0, MAX_TEXT);
  const published = str(d.published);
  // The record's own IOCs, read once for every package it names.
  const recordIocs = normaliseIocs(
    (d.database_specific as Record<string, unknown> | undefined)?.iocs,
  );
  // One record per package it names (a record may name several, a typosquat family).
  return [...byName].map(([name, entries]): MaliciousRecord => {
    const versions = new Set<string>();
    const ranges: RangeEvent[][] = [];
    const domains = new Set(recordIocs.domains);
    const ips = new Set(recordIocs.ips);
    for (const a of entries) {
      for (const v of strings(a.versions)) versions.add(v);
      for (const r of Array.isArray(a.ranges) ? a.ranges.slice(0, 100) : []) {
        const type = str((r as { type?: unknown })?.type);
        if (type !== 'SEMVER' && type !== 'ECOSYSTEM') continue;
        const events = ((r as { events?: unknown }).events ?? []) as unknown[];
        if (!Array.isArray(events)) continue;
        ranges.push(
          events.slice(0, 100).flatMap((e): RangeEvent[] => {
            const ev = e as Record<string, unknown>;
            for (const k of ['introduced', 'fixed', 'last_affected'] as const) {
              const v = ev[k];
              if (typeof v === 'string' && v.length <= MAX_ITEM) return [{ [k]: v }];
            }
            return [];
          }),
        );
      }
      const own = (a.database_specific as Record<string, unknown> | undefined)?.iocs;
      if (own) {
        const n = normaliseIocs(own);
        for (const x of n.domains) domains.add(x);
        for (const x of n.ips) ips.add(x);
      }
    }
    const iocs = { domains: [...domains].sort(), ips: [...ips].sort() };
    return {
      id,
      name,
      modified,
      ...(published && published.length <= 64 ? { published } : {}),
      ...(summary ? { summary } : {}),
      versions: [...versions],
      ranges,
      iocs,
    };
  });
}

/**
 * Whether a record names this version: listed, or inside one of its ranges (OSV's rule: walking
 * the events in version order, `introduced` opens, `fixed` closes before, `last_affected` closes
 * after; `introduced: "0"` is every version).
 */
export function recordAffects(
  r: Pick<MaliciousRecord, 'versions' | 'ranges'>,
  version: string,
): boolean {
  if (r.versions.includes(version)) return true;
  const v = semver.parse(version);
  if (!v) return false;
  for (const events of r.ranges) {
    const at = (x: string) => (x === '0' ? undefined : bound(x));
    // At one version, what opens comes before what closes.
    const rank = (e: RangeEvent) => (e.introduced !== undefined ? 0 : 1);
    const sorted = events
      .map((e) => ({ e, ver: at(e.introduced ?? e.fixed ?? e.last_affected ?? '') }))
      .filter((x) => x.ver !== null)
      .sort(
        (a, b) =>
          (a.ver && b.ver ? semver.compare(a.ver, b.ver) : a.ver ? 1 : b.ver ? -1 : 0) ||
          rank(a.e) - rank(b.e),
      );
    let affected = false;
    for (const { e, ver } of sorted) {
      const cmp = ver ? semver.compare(v, ver) : 1;
      if (e.introduced !== undefined && cmp >= 0) affected = true;
      else if (e.fixed !== undefined && cmp >= 0) affected = false;
      else if (e.last_affected !== undefined && cmp > 0) affected = false;
    }
    if (affected) return true;
  }
  return false;
}
