/**
 * Indicators: signature and behaviour rules from network traffic analysis, kept as data in
 * policies/indicators.json. This module validates that data and applies it to report events;
 * it has no I/O.
 */
import { isIP } from 'node:net';
import type { ReportEvent } from '../core/report.js';
import {
  matchesDestination,
  parseDestination,
  type DestinationPattern,
  type Target,
} from './destination.js';
import type { MaliciousIntel } from './malicious.js';
import { SEVERITIES, type Severity } from './types.js';

export const DETECTORS = [
  'hosts',
  'raw-ip',
  'nonstandard-port',
  'dns-data',
  'dns-many-subdomains',
  'hardcoded-resolver',
  'large-upload',
  'telemetry-export',
  'refused-inspection',
  'foreign-process',
  'other-protocol',
  'hidden-network-code',
  'known-malicious',
] as const;
export type Detector = (typeof DETECTORS)[number];

export interface Indicator {
  id: string;
  severity: Severity;
  detector: Detector;
  /** No allow rule, declaration or known-egress entry makes such an attempt acceptable. */
  forbidsAllow: boolean;
  /** A policy cannot lower its severity or turn it off. */
  locked: boolean;
  rationale: string;
  hosts: DestinationPattern[];
  params: Record<string, unknown>;
}

/** Validate the shipped indicator list; a broken list is phonehome's bug, so this throws. */
export function compileIndicators(data: unknown): Indicator[] {
  const list = (data as { indicators?: unknown })?.indicators;
  if (!Array.isArray(list)) throw new Error('indicators.json: no "indicators" list');
  const seen = new Set<string>();
  return list.map((raw: Record<string, unknown>, i) => {
    const where = `indicators.json: indicators[${i}]`;
    const id = raw.id;
    if (typeof id !== 'string' || seen.has(id)) throw new Error(`${where}: missing or repeated id`);
    seen.add(id);
    if (!(SEVERITIES as readonly unknown[]).includes(raw.severity))
      throw new Error(`${where}: bad severity`);
    if (!(DETECTORS as readonly unknown[]).includes(raw.detector))
      throw new Error(`${where}: unknown detector ${String(raw.detector)}`);
    if (typeof raw.rationale !== 'string') throw new Error(`${where}: no rationale`);
    const hosts = ((raw.hosts as unknown[] | undefined) ?? []).map((h) => {
      const p = parseDestination(String(h));
      if (typeof p === 'string') throw new Error(`${where}: ${p}`);
      return p;
    });
    if (raw.detector === 'hosts' && hosts.length === 0) throw new Error(`${where}: no hosts`);
    return {
      id,
      severity: raw.severity as Severity,
      detector: raw.detector as Detector,
      forbidsAllow: raw.forbidsAllow === true,
      locked: raw.locked === true,
      rationale: raw.rationale,
      hosts,
      params: (raw.params as Record<string, unknown> | undefined) ?? {},
    };
  });
}

/** A name as patterns compare it: lower-case, without a trailing dot. */
export const nameKey = (n: string): string => n.toLowerCase().replace(/\.$/, '');

/**
 * What a report event was aimed at, in the terms destination patterns match on. `resolved`, the
 * names the sandbox's own resolver was asked for, makes a connection whose name it does not hold
 * claim that name only: the package looked it up elsewhere (in the wild, a resolver of its
 * author's that points it anywhere).
 */
/** The host of an absolute-form request target, as a URL parser reads it (userinfo, IPv6 too). */
function absoluteHost(target: string): string {
  try {
    const host = new URL(target).hostname.replace(/^\[|\]$/g, '');
    if (host) return host;
  } catch {
    // Not a URL to a parser; a proxy reading it as a C string may still route it (below).
  }
  const m = /^[a-z][a-z0-9+.-]*:\/\/(?:[^@/]*@)?([^/:?#]+)/i.exec(target)?.[1] ?? target;
  return m.replace(/[^\x21-\x7e]/g, '');
}

const HOST_NAME =
  /^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*\.?$/i;

export function targetOf(e: ReportEvent, resolved?: ReadonlySet<string>): Target {
  // The Host header without its port (a bracketed IPv6 literal is an address, not a name).
  const httpHost = e.httpHost?.startsWith('[') ? undefined : e.httpHost?.replace(/:\d*$/, '');
  // Where a proxy request says it goes: a CONNECT's authority, an absolute-form target's host.
  const proxied =
    (e.kind === 'http' || (e.kind === 'tls' && e.method !== undefined)) && e.path
      ? e.method === 'CONNECT'
        ? e.path.replace(/:\d*$/, '').replace(/[^\x21-\x7e]/g, '')
        : /^[a-z][a-z0-9+.-]*:\/\//i.test(e.path)
          ? absoluteHost(e.path)
          : undefined
      : undefined;
  // A TLS server name, Host header or proxy target that is no host name at all (an SNI of
  // `/v1/items`, a CONNECT to `/`: a client's misreading of its arguments) names nothing a
  // connection could be routed by. Proxy targets are read as a URL parser reads them, and with
  // control characters taken out, as a proxy reading a C string would.
  const hostLike = (n: string | undefined) => n === undefined || HOST_NAME.test(n);
  const proxiedIpLike = proxied !== undefined && isIP(proxied.replace(/^\[|\]$/g, '')) !== 0;
  const names = [e.host, ...[e.sni, httpHost, proxiedIpLike ? undefined : proxied].filter(hostLike)]
    .filter((n): n is string => typeof n === 'string' && n.length > 0 && isIP(n) === 0)
    .map(nameKey);
  // A proxy asked to reach an address: only an address pattern for that address allows it.
  const proxiedIp = proxied?.replace(/^\[|\]$/g, '');
  if (proxiedIp && isIP(proxiedIp) !== 0)
    return {
      names: [...new Set(names)],
      claimedOnly: true,
      ip: proxiedIp,
      ...(e.port !== undefined ? { port: e.port } : {}),
    };
  // A connection with a name went to an address the capture's DNS handed out for that name (a
  // per-run block of ordinary-looking space): only the name says where it was aimed, and an IP or
  // CIDR pattern must not match the stand-in address.
  const synthetic = e.kind !== 'dns' && e.host !== undefined;
  const claimed =
    e.kind !== 'dns' &&
    (e.host === undefined
      ? names.length > 0
      : resolved !== undefined && !resolved.has(nameKey(e.host)));
  return {
    names: [...new Set(names)],
    ...(claimed ? { claimedOnly: true } : {}),
    ...(e.ip && !synthetic ? { ip: e.ip } : {}),
    ...(e.kind === 'dns' ? { anyPort: true } : e.port !== undefined ? { port: e.port } : {}),
  };
}

const CONNECTIONS = new Set(['tcp', 'tls', 'http', 'udp']);

/** One hit of an indicator on one event, with what exactly tripped it. */
export interface IndicatorHit {
  indicator: Indicator;
  detail: string;
}

/** Detectors that judge one event on its own. */
export function eventIndicators(
  e: ReportEvent,
  indicators: Indicator[],
  ctx: { resolvers: readonly string[]; malicious?: MaliciousIntel },
): IndicatorHit[] {
  const hits: IndicatorHit[] = [];
  const t = targetOf(e);
  for (const ind of indicators) {
    const p = ind.params;
    switch (ind.detector) {
      case 'hosts': {
        if (e.kind === 'dropped') break;
        const hit = ind.hosts.find((h) => matchesDestination(h, t));
        if (hit) hits.push({ indicator: ind, detail: `matches ${hit.text}` });
        break;
      }
      case 'known-malicious': {
        if (e.kind === 'dropped' || !ctx.malicious) break;
        const hit = ctx.malicious.destinations.find((d) => matchesDestination(d.pattern, t));
        if (hit)
          hits.push({
            indicator: ind,
            detail: `matches ${hit.pattern.text}, an indicator of compromise of ${hit.records.slice(0, 3).join(', ')}${hit.records.length > 3 ? ` and ${hit.records.length - 3} more` : ''}`,
          });
        break;
      }
      case 'raw-ip':
        if (CONNECTIONS.has(e.kind) && !e.host && e.ip)
          hits.push({ indicator: ind, detail: `connection to ${e.ip} without a name lookup` });
        break;
      case 'nonstandard-port': {
        const standard = (p.standardPorts as number[] | undefined) ?? [80, 443];
        if (CONNECTIONS.has(e.kind) && e.port !== undefined && !standard.includes(e.port))
          hits.push({ indicator: ind, detail: `port ${e.port}` });
        break;
      }
      case 'dns-data':
        if (e.kind === 'dns' && e.host) {
          const why = dataInName(e.host, p);
          if (why) hits.push({ indicator: ind, detail: why });
        }
        break;
      case 'hardcoded-resolver':
        if (e.kind === 'dns' && e.resolver && !ctx.resolvers.includes(e.resolver))
          hits.push({
            indicator: ind,
            detail: `asked ${e.resolver} instead of the configured resolver`,
          });
        break;
      case 'large-upload': {
        const limit = (p.bytes as number | undefined) ?? 65536;
        if (CONNECTIONS.has(e.kind) && (e.bytesOut ?? 0) >= limit)
          hits.push({ indicator: ind, detail: `${e.bytesOut} bytes sent` });
        break;
      }
      case 'telemetry-export': {
        // A request phonehome read (plain HTTP, or inside intercepted TLS), by its path.
        const phases = (p.phases as string[] | undefined) ?? ['install'];
        const paths = ((p.paths as string[] | undefined) ?? []).map((x) => new RegExp(x, 'i'));
        const path = (e.path ?? '').replace(/[?#].*$/, '');
        if (
          (e.kind === 'http' || e.kind === 'tls') &&
          e.method === 'POST' &&
          phases.includes(e.phase) &&
          paths.some((re) => re.test(path))
        )
          hits.push({
            indicator: ind,
            detail: `POST ${path} (an OpenTelemetry export) during ${e.phase}`,
          });
        break;
      }
      case 'refused-inspection':
        if (e.kind === 'tls' && e.intercept === 'refused')
          hits.push({
            indicator: ind,
            detail: `refused the run's certificate${e.tlsAlert && e.tlsAlert !== 'none' ? ` (alert ${e.tlsAlert})` : ''}: what it sent is unseen`,
          });
        break;
      case 'foreign-process': {
        const programs = (p.programs as string[] | undefined) ?? [];
        const prog = programOf(e.process);
        if (prog && programs.includes(prog))
          hits.push({ indicator: ind, detail: `made by ${prog}` });
        break;
      }
      case 'other-protocol':
        if (e.kind === 'icmp')
          hits.push({ indicator: ind, detail: `${e.count ?? 1} ICMP echo request(s)` });
        if (e.kind === 'dropped')
          hits.push({ indicator: ind, detail: `${e.count ?? 1} packet(s) of other protocols` });
        break;
      default:
        // dns-many-subdomains and hidden-network-code look at more than one event.
        break;
    }
  }
  return hits;
}

/** The program a command line runs: `/usr/bin/curl -s …` → curl; `/usr/bin/env python3 x` → python3. */
export function programOf(cmd: string | undefined): string | undefined {
  if (typeof cmd !== 'string' || !cmd) return undefined;
  const words = cmd.trim().split(/\s+/);
  let i = 0;
  const base = (w: string | undefined) => (w ?? '').split('/').pop() ?? '';
  if (base(words[0]) === 'env') {
    i = 1;
    while (words[i]?.startsWith('-') || words[i]?.includes('=')) i++;
  }
  const prog = base(words[i]);
  return prog || undefined;
}

function entropy(s: string): number {
  const counts = new Map<string, number>();
  for (const ch of s) counts.set(ch, (counts.get(ch) ?? 0) + 1);
  let h = 0;
  for (const n of counts.values()) {
    const p = n / s.length;
    h -= p * Math.log2(p);
  }
  return h;
}

/** Why a DNS name looks like it carries data, or undefined. */
export function dataInName(name: string, p: Record<string, unknown>): string | undefined {
  const maxLabel = (p.maxLabelLength as number | undefined) ?? 40;
  const encoded = (p.encodedLabelLength as number | undefined) ?? 16;
  const minEntropy = (p.minEntropy as number | undefined) ?? 3.6;
  const entropyLength = (p.entropyLabelLength as number | undefined) ?? 24;
  for (const label of name.split('.')) {
    if (label.length > maxLabel) return `a ${label.length}-character label`;
    if (
      label.length >= encoded &&
      /^[0-9a-f]+$/i.test(label) &&
      /[0-9]/.test(label) &&
      /[a-f]/i.test(label)
    )
      return `a hex-encoded label (${label.length} characters)`;
    if (label.length >= entropyLength && entropy(label) >= minEntropy)
      return `a high-entropy label (${label.length} characters, ${entropy(label).toFixed(1)} bits/char)`;
  }
  return undefined;
}

/** The zone a name belongs to, for counting subdomains: the last two labels (three under a short second level such as co.uk). */
export function zoneOf(name: string): string {
  const labels = name.split('.');
  const n =
    labels.length >= 3 &&
    (labels[labels.length - 1] ?? '').length === 2 &&
    (labels[labels.length - 2] ?? '').length <= 3
      ? 3
      : 2;
  return labels.slice(-n).join('.');
}
