/**
 * What the capture's bounds, statistics and summaries mean for a report: findings (a bound hit,
 * an observer that stopped answering, datagrams the kernel dropped), lines for a person, and the
 * per-destination summary records as synthetic events so that they are attributed to a phase and
 * judged like any other attempt (policy, indicators, bait). Pure; see src/capture/sink.ts for how
 * the records are written and src/core/events.ts for how they are read.
 */
import type { EventLog } from './events.js';
import type { Finding } from './report.js';
import type { CaptureBound, CaptureEvent, Phase, SummaryEvent } from './terms.js';

/** Which phase a capture time falls in, when the caller knows the phase windows. */
export type PhaseOf = (t: number) => Phase | undefined;

const BOUND_TEXT: Record<CaptureBound, string> = {
  'per-destination': 'detailed events per destination',
  events: 'detailed events in the log',
  bytes: 'bytes of detailed events in the log',
  destinations: 'distinct destinations it can count',
  'summary-bytes': 'bytes of per-destination summaries',
  connections: 'TCP connections open at once',
  datagrams: 'datagrams waiting for their lookups at once',
  lookups: 'process lookups in flight at once',
  'body-samples': 'bytes of HTTP body samples',
  intercepted: 'TLS connections intercepted at once',
};

/** What hitting a bound cost, in a clause. */
const BOUND_COST: Record<CaptureBound, string> = {
  'per-destination':
    'were counted in per-destination summaries (destinations and new payloads kept)',
  events: 'were kept only as per-destination summaries',
  bytes: 'were kept only as per-destination summaries',
  destinations: 'were only counted per kind: their destinations are unknown',
  'summary-bytes': 'were only counted per kind: their destinations are unknown',
  connections: 'were refused by the capture (recorded without their data or process)',
  datagrams: 'were recorded without their process',
  lookups: 'were recorded without their process',
  'body-samples': 'kept only the first 1 KiB of their body',
  intercepted: 'were not read inside (a handshake failure, their server name seen)',
};

const plural = (n: number, one: string, many = `${one}s`) =>
  `${n.toLocaleString('en-US')} ${n === 1 ? one : many}`;

function phaseField(t: number, phaseOf: PhaseOf | undefined): { phase?: Phase } {
  const phase = phaseOf?.(t);
  return phase ? { phase } : {};
}

/**
 * Findings about the capture itself:
 * - `capture-bound` (high) per hard bound hit: a package that floods the capture may hide what it
 *   did behind the flood, so the run cannot pass on what was seen alone. The per-destination
 *   detail limit loses no destination and is `capture-summarised` (info).
 * - `capture-bound` (high) when conntrack dropped packets: those attempts were never seen.
 * - `observer-unresponsive` (medium) when the observer stopped answering in time.
 * - `datagrams-lost` (medium) when the kernel dropped datagrams before they were read.
 * - `attribution-incomplete` (info) when attempts were recorded without their process.
 */
export function boundFindings(log: EventLog, phaseOf?: PhaseOf): Finding[] {
  const findings: Finding[] = [];
  for (const b of log.bounds) {
    const known = Object.hasOwn(BOUND_TEXT, b.bound);
    const what = known ? BOUND_TEXT[b.bound] : `its '${b.bound}' bound`;
    const cost = known ? BOUND_COST[b.bound] : 'were kept with less detail';
    if (b.bound === 'per-destination') {
      findings.push({
        id: 'capture-summarised',
        severity: 'info',
        ...phaseField(b.t, phaseOf),
        message: `${plural(b.count, 'attempt')} beyond the first ${b.limit} to a destination ${cost}`,
        rule: `capture-bound:${b.bound}`,
      });
      continue;
    }
    findings.push({
      id: 'capture-bound',
      severity: 'high',
      ...phaseField(b.t, phaseOf),
      message: `the capture reached its limit of ${b.limit.toLocaleString('en-US')} ${what}: ${plural(b.count, 'attempt')} ${cost}; a package that floods the capture can hide an attempt in the flood`,
      rule: `capture-bound:${b.bound}`,
    });
  }
  const stats = log.captureStats;
  if (stats && stats.conntrackDrops > 0)
    findings.push({
      id: 'capture-bound',
      severity: 'high',
      ...phaseField(stats.t, phaseOf),
      message: `the kernel's connection tracking dropped ${plural(stats.conntrackDrops, 'packet')} (its table was full): those attempts were never seen by the capture`,
      rule: 'capture-bound:conntrack',
    });
  const unresponsive = log.observerHealth.filter((e) => e.status === 'unresponsive');
  const first = unresponsive[0];
  if (first) {
    const times = Math.max(unresponsive.length, stats?.observerUnresponsive ?? 0);
    const where = phaseOf?.(first.t);
    findings.push({
      id: 'observer-unresponsive',
      severity: 'medium',
      ...(where ? { phase: where } : {}),
      message: `the sandbox's observer stopped answering in time (${plural(times, 'time')}, first${where ? ` during ${where}` : ''}); attempts made meanwhile are recorded without their process${stats ? ` (${plural(stats.lookupsTimedOut + stats.lookupsSkipped, 'attempt')} in all)` : ''}`,
    });
  }
  if (stats && stats.datagramsLost > 0)
    findings.push({
      id: 'datagrams-lost',
      severity: 'medium',
      message: `the kernel dropped ${plural(stats.datagramsLost, 'UDP datagram')} in the sandbox's network because a receive buffer was full: their destinations are unknown`,
    });
  if (stats && stats.observer !== 'none') {
    const missing = stats.lookupsTimedOut + stats.lookupsSkipped + stats.lookupsUnasked;
    if (missing > 0)
      findings.push({
        id: 'attribution-incomplete',
        severity: 'info',
        message: `${plural(missing, 'attempt')} of ${stats.attempts.toLocaleString('en-US')} were recorded without their process (lookups timed out: ${stats.lookupsTimedOut}, skipped while the observer was away: ${stats.lookupsSkipped}, not asked: ${stats.lookupsUnasked})`,
      });
  }
  return findings;
}

/** Lines for a person: what the capture kept, summarised, lost. Empty when nothing was. */
export function boundSummaryLines(log: EventLog): string[] {
  const lines: string[] = [];
  for (const b of log.bounds) {
    const what = Object.hasOwn(BOUND_TEXT, b.bound) ? BOUND_TEXT[b.bound] : b.bound;
    lines.push(
      `capture bound: ${what} (limit ${b.limit.toLocaleString('en-US')}): ${plural(b.count, 'attempt')} affected`,
    );
  }
  const byDestination = new Map<string, number>();
  for (const s of log.summaries)
    byDestination.set(
      summaryDestination(s),
      (byDestination.get(summaryDestination(s)) ?? 0) + s.count,
    );
  if (byDestination.size > 0) {
    const total = [...byDestination.values()].reduce((a, b) => a + b, 0);
    const top = [...byDestination.entries()]
      .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
      .slice(0, 5)
      .map(([d, n]) => `${d} ×${n.toLocaleString('en-US')}`);
    lines.push(
      `summarised: ${plural(total, 'attempt')} to ${plural(byDestination.size, 'destination')} (${top.join(', ')}${byDestination.size > top.length ? ', …' : ''})`,
    );
  }
  const counted = Object.entries(log.truncatedCounts).filter(([, n]) => n > 0);
  if (counted.length > 0)
    lines.push(
      `counted only (no destination): ${counted.map(([k, n]) => `${k} ${n.toLocaleString('en-US')}`).join(', ')}`,
    );
  const s = log.captureStats;
  if (s) {
    if (s.datagramsLost > 0)
      lines.push(`datagrams dropped by the kernel: ${s.datagramsLost.toLocaleString('en-US')}`);
    if (s.conntrackDrops > 0)
      lines.push(`packets dropped by conntrack: ${s.conntrackDrops.toLocaleString('en-US')}`);
    const missing = s.lookupsTimedOut + s.lookupsSkipped + s.lookupsUnasked;
    if (s.observer !== 'none' && missing > 0)
      lines.push(
        `without their process: ${plural(missing, 'attempt')} (timed out ${s.lookupsTimedOut}, skipped ${s.lookupsSkipped}, not asked ${s.lookupsUnasked})`,
      );
  }
  return lines;
}

/** Where a summary's attempts were aimed, as a person would write it. */
export function summaryDestination(s: SummaryEvent): string {
  if (s.of === 'dns') return `${s.qname ?? '?'} (DNS ${s.qtype ?? '?'})`;
  if (s.of === 'dropped') return `other IP protocols (${s.family ?? '?'})`;
  const name = s.sni ?? s.host ?? s.ip ?? '?';
  const shown = name.includes(':') ? `[${name}]` : name;
  return s.port !== undefined ? `${shown}:${s.port}` : shown;
}

/** A summary record as an event of the kind it counted, with how many attempts it stands for. */
export interface SummarisedAttempts {
  /**
   * A synthetic event: the summary's destination and payload sample, its process, `t` the time
   * of the first attempt counted, `seq` the summary record's. Attribute and judge it like any
   * event (phase by its process, else by `t`; policy; indicators; bait).
   */
  event: CaptureEvent;
  /** Attempts it stands for (ICMP: echo requests; dropped: packets). */
  count: number;
  firstT: number;
  /**
   * Time of the last attempt counted. Attempts without a process are dated only by time: when
   * `firstT` and `lastT` fall in different phases, some of them were made in the later one.
   */
  lastT: number;
}

/** The per-destination summary records as synthetic events, in log order. */
export function summaryEvents(log: EventLog): SummarisedAttempts[] {
  return log.summaries.map((s) => ({
    event: synthetic(s),
    count: s.count,
    firstT: s.t,
    lastT: s.lastT ?? s.t,
  }));
}

function synthetic(s: SummaryEvent): CaptureEvent {
  const base = { seq: s.seq, t: s.t };
  const proc = s.proc ? { proc: s.proc } : {};
  const opt = <K extends keyof SummaryEvent>(k: K) =>
    s[k] !== undefined ? ({ [k]: s[k] } as Pick<SummaryEvent, K>) : {};
  switch (s.of) {
    case 'dns':
      return {
        ...base,
        kind: 'dns',
        qname: s.qname ?? '',
        qtype: s.qtype ?? '',
        resolver: s.resolver ?? '',
        resolverPort: s.resolverPort ?? 0,
        transport: s.transport ?? 'udp',
        answer: '',
        ...opt('extraHex'),
        ...proc,
      };
    case 'tcp':
    case 'tls':
    case 'http':
      return {
        ...base,
        kind: s.of,
        ip: s.ip ?? '',
        port: s.port ?? 0,
        bytesOut: 0,
        ...opt('host'),
        ...opt('sni'),
        ...opt('alpn'),
        ...opt('method'),
        ...opt('path'),
        ...opt('httpVersion'),
        ...opt('httpHost'),
        ...opt('headers'),
        ...opt('bodyBytes'),
        ...opt('bodySample'),
        ...opt('websocket'),
        ...opt('intercept'),
        ...opt('tlsAlert'),
        ...opt('innerHex'),
        ...opt('firstBytesHex'),
        ...proc,
      };
    case 'udp':
      return {
        ...base,
        kind: 'udp',
        ip: s.ip ?? '',
        port: s.port ?? 0,
        bytes: 0,
        sampleHex: s.sampleHex ?? '',
        ...opt('host'),
        ...proc,
      };
    case 'icmp':
      return { ...base, kind: 'icmp', ip: s.ip ?? '', count: s.count };
    case 'dropped':
      return { ...base, kind: 'dropped', family: s.family ?? 'ipv4', packets: s.count };
  }
}
