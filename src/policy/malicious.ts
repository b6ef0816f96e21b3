/**
 * An imported set of known-malicious package records (see intel/osv.ts) as evaluate() uses it:
 * which records name a package version, and which destinations their indicators of compromise
 * name. An IOC is matched as precisely as it can be without a false alarm on an honest package:
 * a name of its owner's own domain matches that name and every name below it; a name under a
 * platform suffix (`x.github.io`, `y.workers.dev`) matches that name only; a shared service's own
 * host (`api.github.com`, `discord.com`: the host of a URL whose path is what was malicious) is
 * kept with its record but matches nothing, since reaching it is what honest packages do too.
 */
import type { MaliciousRecord } from '../intel/osv.js';
import type { MaliciousSet } from '../store/store.js';
import { parseDestination, type DestinationPattern } from './destination.js';
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

export function maliciousIntel(set: MaliciousSet, shared: SharedHosts): MaliciousIntel {
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
      const own = ownDomainOf(name, shared);
      if (own) {
        add(name, r.id);
        add(`*.${name}`, r.id);
      } else if (registrableDomain(name) && !isSharedService(name, shared)) add(name, r.id);
      else sharedIocs.add(name);
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
 * A shared service's own host: the name, or its registrable domain, is on the shared list or an
 * indicator's host list (a request catcher's `*.webhook.site` names user-specific hosts below it,
 * which do count as an IOC's own).
 */
function isSharedService(name: string, shared: SharedHosts): boolean {
  const d = registrableDomain(name);
  if (!d) return true;
  if (shared.names.some((n) => n === name || n === d)) return true;
  return shared.patterns.some(
    (p) => p.host && 'exact' in p.host && (p.host.exact === name || p.host.exact === d),
  );
}
