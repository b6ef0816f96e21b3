/**
 * Destination patterns, as written in policies, declarations and the shipped lists:
 *
 *   host                 example.com          exactly this name, any port
 *   host:port            example.com:443      this name, this port
 *   host:lo-hi           example.com:8000-8100
 *   *.zone               *.example.com        any name below example.com (a.example.com,
 *                                             a.b.example.com), not example.com itself
 *   *                    *                    any destination
 *   IPv4 / IPv6          10.1.2.3, [fd00::1]:53
 *   CIDR                 10.0.0.0/8, 10.0.0.0/8:443, [fd00::/8]:443
 *
 * Names are compared lower-case without a trailing dot. An attempt matches a name pattern by the
 * name the package asked for (DNS, SNI, the name behind a synthetic address, the Host header) and
 * an IP or CIDR pattern by the address it connected to.
 */
import { BlockList, isIP } from 'node:net';

export interface DestinationPattern {
  /** As written. */
  text: string;
  host?: { exact: string } | { suffix: string } | { any: true };
  ip?: BlockList;
  ports?: [number, number];
}

/** What an attempt was aimed at, reduced to what patterns match on. */
export interface Target {
  /** Names the package used for it (lower-case): DNS name, SNI, Host header. */
  names: string[];
  /** The names are only claimed: the attempt went to a raw IP, with an SNI or Host header. */
  claimedOnly?: boolean;
  ip?: string;
  port?: number;
  /** A name lookup (DNS): it matches a pattern whatever port the pattern names. */
  anyPort?: boolean;
}

const NAME = /^(\*\.)?([a-z0-9_](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_](?:[a-z0-9_-]{0,62}))*)$/;

/** Parse a pattern; a string is returned as the reason when it is not one. */
export function parseDestination(raw: string): DestinationPattern | string {
  const text = raw.trim();
  if (!text) return 'an empty destination';
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text))
    return `"${text}" is a URL; write the host (and port) without the scheme or path`;
  if (text.includes('/') && !/^[[\]0-9a-f.:]+\/\d{1,3}(\]?:[\d-]+)?$/i.test(text))
    return `"${text}" has a path; write the host (and port) only`;
  let hostPart = text;
  let portPart: string | undefined;
  const bracket = /^\[([^\]]+)\](?::(.+))?$/.exec(text);
  if (bracket) {
    hostPart = bracket[1] as string;
    portPart = bracket[2];
  } else if ((text.match(/:/g) ?? []).length === 1) {
    const at = text.lastIndexOf(':');
    hostPart = text.slice(0, at);
    portPart = text.slice(at + 1);
  }
  const out: DestinationPattern = { text };
  if (portPart !== undefined) {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(portPart);
    const lo = Number(m?.[1]);
    const hi = Number(m?.[2] ?? m?.[1]);
    if (!m || lo < 1 || hi > 65535 || lo > hi)
      return `"${portPart}" is not a port or port range (1-65535, or lo-hi)`;
    out.ports = [lo, hi];
  }
  const host = hostPart.toLowerCase().replace(/(?<=[^*])\.$/, '');
  if (host === '*') {
    out.host = { any: true };
    return out;
  }
  const cidr = /^(.+)\/(\d{1,3})$/.exec(host);
  const addr = cidr ? (cidr[1] as string) : host;
  const family = isIP(addr);
  if (family) {
    const prefix = cidr ? Number(cidr[2]) : family === 4 ? 32 : 128;
    if (prefix > (family === 4 ? 32 : 128)) return `/${prefix} is not a prefix length for ${addr}`;
    const list = new BlockList();
    list.addSubnet(addr, prefix, family === 4 ? 'ipv4' : 'ipv6');
    out.ip = list;
    return out;
  }
  if (cidr) return `"${host}" is not a CIDR block`;
  const m = NAME.exec(host);
  if (!m || host.length > 253)
    return `"${hostPart}" is not a host name, *.zone, IP address, CIDR block or *`;
  out.host = m[1] ? { suffix: `.${m[2]}` } : { exact: host };
  return out;
}

/**
 * Whether pattern `p` covers attempt `t`. To deny (the default), one of the attempt's names is
 * enough. To allow, every name it used must match (a TLS connection to evil.example with the SNI of
 * an allowed host is not allowed), and names an attempt only claimed (the SNI or Host header of a
 * connection to a raw IP) allow nothing: a raw IP is allowed by an IP pattern only.
 */
export function matchesDestination(
  p: DestinationPattern,
  t: Target,
  purpose: 'deny' | 'allow' = 'deny',
): boolean {
  if (p.ports && !t.anyPort) {
    if (t.port === undefined || t.port < p.ports[0] || t.port > p.ports[1]) return false;
  }
  if (p.host) {
    const h = p.host;
    if ('any' in h) return true;
    const covers = (n: string) => ('exact' in h ? n === h.exact : n.endsWith(h.suffix));
    if (purpose === 'deny') return t.names.some(covers);
    return !t.claimedOnly && t.names.length > 0 && t.names.every(covers);
  }
  if (p.ip && t.ip) {
    const family = isIP(t.ip);
    return family !== 0 && p.ip.check(t.ip, family === 4 ? 'ipv4' : 'ipv6');
  }
  return false;
}

/** How a destination is written in a suggested policy entry: the narrowest pattern that matches. */
export function patternFor(t: Target): string {
  const name = t.names[0];
  const base = name ?? (t.ip && t.ip.includes(':') ? `[${t.ip}]` : (t.ip ?? '*'));
  return t.port !== undefined ? `${base}:${t.port}` : base;
}
