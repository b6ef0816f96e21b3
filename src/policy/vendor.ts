/**
 * A package's own vendor: the registrable domains of the web addresses it names for itself
 * (homepage, repository, bugs), and the domain named like its scope or, unscoped, like itself
 * (`@sentry/node` → `sentry.io`, `stripe` → `stripe.com`). An SDK that reaches its vendor's API when its methods are called
 * is doing its job; evaluate() judges such runtime attempts `own-vendor` (low by default, see
 * Policy.ownVendor) instead of the phase's default.
 *
 * A shared host is nobody's own domain: a code host or a registry, a page or app platform
 * (every suffix of the Public Suffix List's private section: github.io, vercel.app, …), a URL
 * shortener, and every service the indicators list (paste sites, request catchers, tunnels, chat
 * webhooks, IP lookups, cloud hosts). A package whose homepage is there gets no vendor excuse.
 */
import { createRequire } from 'node:module';
import type { DestinationPattern, Target } from './destination.js';

interface Parsed {
  domain: string | null;
  domainWithoutSuffix: string | null;
  publicSuffix: string | null;
  isPrivate: boolean | null;
  isIp: boolean | null;
}

// Loaded on first use: most runs judge no attempt against a vendor.
let tldts: { parse(host: string, o: { allowPrivateDomains: boolean }): Parsed } | undefined;
function parse(host: string): Parsed {
  tldts ??= createRequire(import.meta.url)('tldts') as typeof tldts & object;
  return tldts.parse(host, { allowPrivateDomains: true });
}

/** The registrable domain of a host name (below a private suffix too), if it has one. */
export function registrableDomain(host: string): string | undefined {
  const p = parse(host);
  return p.isIp ? undefined : (p.domain ?? undefined);
}

/** What makes a domain shared: the indicators' host patterns and the shipped list of shared hosts. */
export interface SharedHosts {
  patterns: readonly DestinationPattern[];
  names: readonly string[];
}

const within = (name: string, domain: string) => name === domain || name.endsWith(`.${domain}`);

/** The registrable domain of a host that is the vendor's own, or undefined when it is shared. */
export function ownDomainOf(host: string, shared: SharedHosts): string | undefined {
  const p = parse(host);
  if (p.isIp || !p.domain || p.isPrivate) return undefined;
  const d = p.domain;
  if (shared.names.some((n) => within(n, d) || within(d, n))) return undefined;
  for (const { host } of shared.patterns) {
    const n =
      host && 'exact' in host ? host.exact : host && 'suffix' in host ? host.suffix.slice(1) : '';
    if (n && (within(n, d) || within(d, n))) return undefined;
  }
  return d;
}

/**
 * Whether every name of an attempt lies in the package's own vendor's domain; the domain and what
 * made it the vendor's when so. A claimed name (an attempt to a raw address, a name looked up
 * elsewhere) is no evidence of where it went.
 */
export function vendorOf(
  pkgName: string,
  links: readonly string[] | undefined,
  t: Target,
  shared: SharedHosts,
): { domain: string; because: string } | undefined {
  if (t.claimedOnly || t.names.length === 0) return undefined;
  const domains = t.names.map((n) => ownDomainOf(n, shared));
  const first = domains[0];
  if (!first || domains.some((d) => d !== first)) return undefined;
  const link = (links ?? []).find((l) => ownDomainOf(l, shared) === first);
  if (link) return { domain: first, because: `${pkgName} names ${link} as its own address` };
  // A scope, or an unscoped package, named like the domain, in .com or .io only (any name can be
  // registered in some TLD; vendors keep these two): `@sentry/*` → sentry.io, `stripe` →
  // stripe.com, `mailgun.js` → mailgun.com.
  const scope = /^@([^/]+)\//.exec(pkgName)?.[1];
  const p = parse(first);
  const named = (scope ?? pkgName).replace(/[-.](?:js|node|sdk|client|api)$/, '');
  if (
    named.length >= 3 &&
    p.domainWithoutSuffix === named &&
    /^(?:com|io)$/.test(p.publicSuffix ?? '')
  )
    return {
      domain: first,
      because: `${first} is named like ${scope ? `${pkgName}'s scope` : pkgName}`,
    };
  return undefined;
}
