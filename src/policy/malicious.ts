/**
 * An imported set of known-malicious package records (see intel/osv.ts) as evaluate() uses it:
 * which records name a package version, and which destinations their indicators of compromise
 * name. An IOC is matched as precisely as it can be without a false alarm on an honest package:
 * a name of its owner's own domain matches that name and every name below it; a name under a
 * platform suffix that is not on the shared list matches that name only; a host on or under a
 * shared service (`api.github.com`, `raw.githubusercontent.com`, `x.github.io`, `discord.com`:
 * the host of a URL whose path was what was malicious) or a documented download host is kept
 * with its record but matches nothing, since reaching it is what honest packages do too.
 */
import type { MaliciousRecord } from '../intel/osv.js';
import type { MaliciousSet } from '../store/store.js';
import { parseDestination, type DestinationPattern } from './destination.js';
import type { KnownEgressEntry } from './types.js';
import { icannDomain, ownDomainOf, registrableDomain, type SharedHosts } from './vendor.js';

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
 * Hosts of shared services that sit under a platform suffix of the Public Suffix List's private
 * section, where they look like anyone's own subdomain (`raw.githubusercontent.com` is shaped like
 * `evil.workers.dev`): the hosts malware records name for payloads that honest packages download
 * from too.
 */
const SERVICE_HOSTS = new Set([
  'raw.githubusercontent.com',
  'objects.githubusercontent.com',
  'media.githubusercontent.com',
  'avatars.githubusercontent.com',
  'gist.githubusercontent.com',
  'release-assets.githubusercontent.com',
  'storage.googleapis.com',
  'www.googleapis.com',
  'oauth2.googleapis.com',
  's3.amazonaws.com',
]);

const sharedNames = new WeakMap<SharedHosts, Set<string>>();

/**
 * A host honest packages reach too: a shared service's own host (on the shared list, a service
 * host above, a documented download a known-egress entry names exactly, or any host of a shared
 * company's own domain: `api.github.com`, `cdn.discordapp.com`). Matching it would fail every
 * honest package that reaches it; the record's other IOCs still count, and the attempt is judged
 * by the policy as any other. A user's host under a platform suffix (`evil.workers.dev`,
 * `x.github.io`) is not shared: it is matched exactly.
 */
function isSharedService(
  name: string,
  shared: SharedHosts,
  knownEgress: readonly Pick<KnownEgressEntry, 'destinations'>[],
): boolean {
  const registrable = registrableDomain(name);
  if (!registrable) return true;
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
  if (names.has(name) || SERVICE_HOSTS.has(name)) return true;
  if (
    knownEgress.some((e) =>
      e.destinations.some((p) => p.host && 'exact' in p.host && p.host.exact === name),
    )
  )
    return true;
  // Under a platform suffix the registrable domain is the user's own (x.github.io); elsewhere a
  // shared company's domain covers every host of it.
  const underPlatform = registrable !== icannDomain(name);
  return !underPlatform && names.has(registrable);
}
