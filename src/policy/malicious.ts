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
import { matchesDestination, parseDestination, type DestinationPattern } from './destination.js';
import type { KnownEgressEntry } from './types.js';
import { ownDomainOf, registrableDomain, type SharedHosts } from './vendor.js';

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
 * A host honest packages reach too: it, or a domain it lies in, is on the shared list
 * (`raw.githubusercontent.com` under `githubusercontent.com`, `x.github.io` under `github.io`),
 * an indicator lists it (a request catcher's hosts are flagged by that indicator already), or a
 * known-egress entry names it (a documented download such as `storage.googleapis.com`). Matching
 * such a host would fail every honest package that downloads from it; the record's other IOCs
 * still count, and the attempt is judged by the policy as any other.
 */
function isSharedService(
  name: string,
  shared: SharedHosts,
  knownEgress: readonly Pick<KnownEgressEntry, 'destinations'>[],
): boolean {
  if (!registrableDomain(name)) return true;
  const labels = name.split('.');
  const suffixes = labels.map((_, i) => labels.slice(i).join('.'));
  if (suffixes.some((d) => shared.names.includes(d))) return true;
  const t = { names: [name], anyPort: true };
  if (shared.patterns.some((p) => p.host && matchesDestination(p, t))) return true;
  return knownEgress.some((e) => e.destinations.some((p) => p.host && matchesDestination(p, t)));
}
