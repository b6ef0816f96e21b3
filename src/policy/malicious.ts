/**
 * An imported set of known-malicious package records (see intel/osv.ts) as evaluate() uses it:
 * which records name a package version, and which destinations their indicators of compromise
 * name. An IOC is matched as precisely as it can be without a false alarm on an honest package:
 * a name of its owner's own domain matches that name and every name below it; a user's host on a
 * platform (`evil.workers.dev`, `x.github.io`, a bucket) matches that name only; a shared
 * service's own host (`api.github.com`, `raw.githubusercontent.com`, `discord.com`: the host of
 * a URL whose path was what was malicious) or a documented download host is kept with its record
 * but matches nothing, since reaching it is what honest packages do too (see isSharedService).
 */
import type { MaliciousRecord } from '../intel/osv.js';
import type { MaliciousSet } from '../store/store.js';
import { parseDestination, type DestinationPattern } from './destination.js';
import type { KnownEgressEntry } from './types.js';
import { ownDomainOf, type SharedHosts } from './vendor.js';

export interface MaliciousDestination {
  pattern: DestinationPattern;
  /** The records that name it. */
  records: string[];
}

export interface MaliciousIntel {
  source: string;
  importedAt: string;
  records: number;
  newestModified: string | null;
  affecting(name: string, version: string): MaliciousRecord[];
  destinations: MaliciousDestination[];
  /** IOC hosts of shared services, kept with their records but not matched. */
  sharedIocs: string[];
}

export function maliciousIntel(
  set: MaliciousSet,
  shared: SharedHosts,
  knownEgress: readonly Pick<KnownEgressEntry, 'destinations'>[] = [],
): MaliciousIntel {
  const byPattern = new Map<string, { pattern: DestinationPattern; records: Set<string> }>();
  const sharedIocs = new Set<string>();
  const add = (text: string, record: string) => {
    let e = byPattern.get(text);
    if (!e) {
      const p = parseDestination(text);
      if (typeof p === 'string') return;
      e = { pattern: p, records: new Set() };
      byPattern.set(text, e);
    }
    e.records.add(record);
  };
  for (const r of set.withIocs) {
    for (const ip of r.iocs.ips) add(ip.includes(':') ? `[${ip}]` : ip, r.id);
    for (const name of r.iocs.domains) {
      if (isSharedService(name, shared, knownEgress)) sharedIocs.add(name);
      else if (ownDomainOf(name, shared)) {
        add(name, r.id);
        add(`*.${name}`, r.id);
      } else add(name, r.id);
    }
  }
  return {
    source: set.source,
    importedAt: set.importedAt,
    records: set.records,
    newestModified: set.newestModified,
    affecting: (name, version) => set.affecting(name, version),
    destinations: [...byPattern.values()].map((e) => ({
      pattern: e.pattern,
      records: [...e.records].sort(),
    })),
    sharedIocs: [...sharedIocs].sort(),
  };
}

/**
 * Domains on the shared list whose every host is the company's own service, not a user's
 * (`api.github.com`, `objects.githubusercontent.com`, `sheets.googleapis.com`,
 * `dynamodb.us-east-1.amazonaws.com`), but for the hosts USER_HOSTS names. Every other domain on
 * the shared list hands out subdomains to its users (`evil.workers.dev`, `x.glitch.me`,
 * `abc.devtunnels.ms`): those are an attacker's as much as anyone's, and are matched exactly.
 */
const COMPANY_DOMAINS = new Set([
  'github.com',
  'githubusercontent.com',
  'githubassets.com',
  'google.com',
  'googleapis.com',
  'googleusercontent.com',
  'gstatic.com',
  'amazonaws.com',
  'dropbox.com',
  'dropboxusercontent.com',
  'facebook.com',
  'linkedin.com',
  'twitter.com',
  'x.com',
  'youtube.com',
  'reddit.com',
  'stackoverflow.com',
  'npmjs.com',
  'npmjs.org',
  'yarnpkg.com',
  'pnpm.io',
  'jsdelivr.net',
  'unpkg.com',
  'cdnjs.com',
  'jsr.io',
  'deno.land',
  'esm.sh',
  'skypack.dev',
  'discord.gg',
  't.me',
]);

/** Users' hosts under a company domain: buckets and instances, named by their owners. */
const USER_HOSTS = [
  // <bucket>.s3.amazonaws.com, <bucket>.s3.<region>.amazonaws.com, <bucket>.s3-<region>.…
  /^(?!s3[.-])[^.]+\.s3(?:[.-][a-z0-9-]+)*\.amazonaws\.com$/,
  // EC2 instances and load balancers.
  /\.(?:compute(?:-1)?|elb)\.(?:[a-z0-9-]+\.)?amazonaws\.com$/,
  // <bucket>.storage.googleapis.com
  /^[^.]+\.storage\.googleapis\.com$/,
];

const sharedNames = new WeakMap<SharedHosts, Set<string>>();

/**
 * A host honest packages reach too: a shared service's own host (a name on the shared list, a
 * host an indicator names exactly, a documented download a known-egress entry names exactly, or
 * any host of a company domain above). Matching it would fail every honest package that reaches
 * it; the record's other IOCs still count, and the attempt is judged by the policy as any other.
 * A user's host (under a platform on the shared list, a Public Suffix List platform, a bucket) is
 * not shared: it is matched exactly.
 */
function isSharedService(
  name: string,
  shared: SharedHosts,
  knownEgress: readonly Pick<KnownEgressEntry, 'destinations'>[],
): boolean {
  // The shared list, and the hosts indicators name exactly (a chat service's `discord.com`; their
  // `*.zone` patterns name users' hosts, which do count as an IOC's own).
  let names = sharedNames.get(shared);
  if (!names) {
    names = new Set([
      ...shared.names,
      ...shared.patterns.flatMap((p) => (p.host && 'exact' in p.host ? [p.host.exact] : [])),
    ]);
    sharedNames.set(shared, names);
  }
  if (names.has(name)) return true;
  if (
    knownEgress.some((e) =>
      e.destinations.some((p) => p.host && 'exact' in p.host && p.host.exact === name),
    )
  )
    return true;
  if (USER_HOSTS.some((re) => re.test(name))) return false;
  const labels = name.split('.');
  return labels.some((_, i) => i > 0 && COMPANY_DOMAINS.has(labels.slice(i).join('.')));
}
