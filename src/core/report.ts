/**
 * The check report: a versioned contract. Events carry their phase but no timestamps, and every
 * list is sorted, so two runs of the same package diff cleanly.
 */
import type { CaptureEvent, Phase } from './terms.js';
import { PHASES } from './terms.js';

export const REPORT_SCHEMA_VERSION = 1;

export type PhaseStatus = 'completed' | 'failed' | 'timeout' | 'skipped';
export type Verdict = 'pass' | 'warn' | 'fail';
export type Severity = 'warn' | 'fail';

export interface PhaseResult {
  name: Phase;
  status: PhaseStatus;
  durationMs: number;
  /** Why a phase failed or was skipped, in a line. */
  note?: string;
  exitCode?: number | null;
  outputBytes?: number;
}

/** When a phase ran, on the sandbox kernel's monotonic clock (the clock capture events use). */
export interface PhaseWindow {
  name: Phase;
  startMs: number;
  endMs: number;
}

export interface ReportEvent {
  phase: Phase;
  kind: CaptureEvent['kind'];
  host?: string;
  ip?: string;
  port?: number;
  qtype?: string;
  resolver?: string;
  sni?: string;
  alpn?: string[];
  method?: string;
  path?: string;
  bytesOut?: number;
  bodyBytes?: number;
  websocket?: boolean;
  count?: number;
}

export interface Finding {
  id: string;
  severity: Severity;
  phase: Phase;
  destination: string;
  message: string;
}

export interface CheckReport {
  schemaVersion: number;
  subject: { name: string; version: string; integrity: string | null; spec: string };
  phases: PhaseResult[];
  events: ReportEvent[];
  findings: Finding[];
  verdict: Verdict;
  /** Attempts the capture counted but could not keep in detail (it hit its bounds). */
  truncated?: Record<string, number>;
}

/** The phase an event belongs to: the last phase that had started when it happened. */
export function phaseAt(t: number, windows: PhaseWindow[]): Phase | undefined {
  let found: Phase | undefined;
  for (const w of [...windows].sort((a, b) => a.startMs - b.startMs))
    if (w.startMs <= t) found = w.name;
  return found;
}

export function toReportEvent(e: CaptureEvent, phase: Phase): ReportEvent | undefined {
  switch (e.kind) {
    case 'dns':
      return { phase, kind: 'dns', host: e.qname, qtype: e.qtype, resolver: e.resolver };
    case 'tcp':
    case 'tls':
    case 'http':
      return {
        phase,
        kind: e.kind,
        ip: e.ip,
        port: e.port,
        bytesOut: e.bytesOut,
        ...(e.host ? { host: e.host } : {}),
        ...(e.sni ? { sni: e.sni } : {}),
        ...(e.alpn ? { alpn: e.alpn } : {}),
        ...(e.method ? { method: e.method } : {}),
        ...(e.path !== undefined ? { path: e.path } : {}),
        ...(e.bodyBytes !== undefined ? { bodyBytes: e.bodyBytes } : {}),
        ...(e.websocket ? { websocket: true } : {}),
      };
    case 'udp':
      return {
        phase,
        kind: 'udp',
        ip: e.ip,
        port: e.port,
        bytesOut: e.bytes,
        ...(e.host ? { host: e.host } : {}),
      };
    case 'icmp':
      return { phase, kind: 'icmp', ip: e.ip, count: e.count };
    case 'dropped':
      return { phase, kind: 'dropped', count: e.packets };
    default:
      return undefined;
  }
}

/** Where an event was aimed, as a person would write it. */
export function destinationOf(e: ReportEvent): string {
  if (e.kind === 'dns') return `${e.host} (DNS ${e.qtype})`;
  if (e.kind === 'dropped') return 'other IP protocols';
  const name = e.sni ?? e.host ?? e.ip ?? '?';
  const shown = name.includes(':') ? `[${name}]` : name;
  return e.port !== undefined ? `${shown}:${e.port}` : shown;
}

const KIND_ORDER = ['dns', 'tcp', 'tls', 'http', 'udp', 'icmp', 'dropped', 'truncated'];

function compareEvents(a: ReportEvent, b: ReportEvent): number {
  return (
    PHASES.indexOf(a.phase) - PHASES.indexOf(b.phase) ||
    KIND_ORDER.indexOf(a.kind) - KIND_ORDER.indexOf(b.kind) ||
    JSON.stringify(a).localeCompare(JSON.stringify(b))
  );
}

/**
 * Until policies exist, every destination the package tried is a `warn` finding, and no egress
 * is a pass.
 */
export function buildReport(input: {
  subject: CheckReport['subject'];
  phases: PhaseResult[];
  windows: PhaseWindow[];
  events: CaptureEvent[];
  truncated?: Record<string, number>;
}): CheckReport {
  const events: ReportEvent[] = [];
  for (const e of input.events) {
    const phase = phaseAt(e.t, input.windows);
    if (!phase) continue;
    const r = toReportEvent(e, phase);
    if (r) events.push(r);
  }
  events.sort(compareEvents);
  const seen = new Map<string, Finding>();
  for (const e of events) {
    const destination = destinationOf(e);
    const key = `${e.phase}\0${destination}`;
    if (seen.has(key)) continue;
    seen.set(key, {
      id: 'egress',
      severity: 'warn',
      phase: e.phase,
      destination,
      message: `tried to reach ${destination} during ${e.phase}`,
    });
  }
  const findings = [...seen.values()];
  const verdict: Verdict = findings.some((f) => f.severity === 'fail')
    ? 'fail'
    : findings.length > 0
      ? 'warn'
      : 'pass';
  const truncated =
    input.truncated && Object.keys(input.truncated).length > 0
      ? { truncated: input.truncated }
      : {};
  return {
    schemaVersion: REPORT_SCHEMA_VERSION,
    subject: input.subject,
    phases: input.phases,
    events,
    findings,
    verdict,
    ...truncated,
  };
}

/** Deduplicated events for display: the same attempt made many times is shown once with a count. */
export function summarizeEvents(events: ReportEvent[]): { event: ReportEvent; times: number }[] {
  const out = new Map<string, { event: ReportEvent; times: number }>();
  for (const e of events) {
    const key = JSON.stringify(e);
    const prev = out.get(key);
    if (prev) prev.times++;
    else out.set(key, { event: e, times: 1 });
  }
  return [...out.values()];
}
