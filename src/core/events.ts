/**
 * The host's reader of the capture's event log. The log is written by the gateway (trusted), but
 * most of its strings come from the sandbox (names, paths, headers, command lines), so every line
 * is validated: bounded length, a known kind, the fields that kind has with the types it has, and
 * finite numbers. A line that fails is counted, never trusted.
 */
import type {
  BoundEvent,
  CaptureEvent,
  CaptureStatsEvent,
  ObserverEvent,
  ProcessInfo,
  SummaryEvent,
} from './terms.js';

export interface EventLog {
  /**
   * Attempts (dns, tcp, tls, http, udp, icmp, dropped), `truncated` records, and the observer
   * link's `connected`, `lost` and `rejected` records, in the order the capture wrote them.
   */
  events: CaptureEvent[];
  /** Lines that were not valid events (a torn last line after a crash, say). */
  malformedLines: number;
  /**
   * Attempts the capture only counted, per kind: neither kept in detail nor in a per-destination
   * summary (sum of `truncated` records). Summarised attempts are in `summaries`, not here.
   */
  truncatedCounts: Record<string, number>;
  /** Each bound the capture hit, once: the first record's time, the largest count. */
  bounds: BoundEvent[];
  /** The capture's last statistics record (what it could not see or attribute). */
  captureStats?: CaptureStatsEvent;
  /** Per-destination summary records, in order; `proc` filled in from `procRef`. */
  summaries: SummaryEvent[];
  /** The observer's health: `unresponsive` and `responsive` records, in order. */
  observerHealth: ObserverEvent[];
}

/** Longer lines are not events (the capture keeps its longest, an HTTP request, far below). */
export const MAX_LINE_CHARS = 1024 * 1024;

const ATTEMPT_KINDS = new Set(['dns', 'tcp', 'tls', 'http', 'udp', 'icmp', 'dropped']);
const OBSERVER_STATUSES = new Set(['connected', 'lost', 'rejected', 'unresponsive', 'responsive']);
const STATS_COUNTS = [
  'attempts',
  'lookups',
  'lookupsAnswered',
  'lookupsTimedOut',
  'lookupsSkipped',
  'lookupsUnasked',
  'datagramsLost',
  'conntrackDrops',
  'conntrackMisses',
  'observerUnresponsive',
  'observerRejected',
] as const;
const OBSERVER_STATES = new Set(['none', 'waiting', 'connected', 'unresponsive', 'lost']);

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const num = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const count = (v: unknown): v is number => num(v) && v >= 0;
const str = (v: unknown): v is string => typeof v === 'string';
const optStr = (v: unknown) => v === undefined || str(v);
const optNum = (v: unknown) => v === undefined || num(v);
const optCount = (v: unknown) => v === undefined || count(v);
const strList = (v: unknown) => Array.isArray(v) && v.every(str);

function validProc(v: unknown): v is ProcessInfo {
  return (
    isObj(v) &&
    count(v.pid) &&
    str(v.cmd) &&
    num(v.startMs) &&
    optStr(v.package) &&
    optStr(v.script)
  );
}

const optProc = (v: unknown) => v === undefined || validProc(v);

const validHeaders = (v: unknown) =>
  v === undefined ||
  (Array.isArray(v) &&
    v.every((h) => Array.isArray(h) && h.length === 2 && str(h[0]) && str(h[1])));

/** The fields streams and summaries share: destination and payload. */
function validStreamFields(e: Obj): boolean {
  return (
    optStr(e.host) &&
    optStr(e.firstBytesHex) &&
    optStr(e.sni) &&
    (e.alpn === undefined || strList(e.alpn)) &&
    optStr(e.method) &&
    optStr(e.path) &&
    optStr(e.httpVersion) &&
    optStr(e.httpHost) &&
    validHeaders(e.headers) &&
    optCount(e.bodyBytes) &&
    optStr(e.bodySample) &&
    (e.websocket === undefined || typeof e.websocket === 'boolean') &&
    (e.intercept === undefined ||
      e.intercept === 'decrypted' ||
      e.intercept === 'refused' ||
      e.intercept === 'failed') &&
    optStr(e.tlsAlert) &&
    optStr(e.innerHex)
  );
}

function validEvent(e: Obj): boolean {
  switch (e.kind) {
    case 'dns':
      return (
        str(e.qname) &&
        str(e.qtype) &&
        str(e.resolver) &&
        count(e.resolverPort) &&
        (e.transport === 'udp' || e.transport === 'tcp') &&
        str(e.answer) &&
        optStr(e.extraHex) &&
        optProc(e.proc)
      );
    case 'tcp':
    case 'tls':
    case 'http':
      return (
        str(e.ip) && count(e.port) && count(e.bytesOut) && validStreamFields(e) && optProc(e.proc)
      );
    case 'udp':
      return (
        str(e.ip) &&
        count(e.port) &&
        count(e.bytes) &&
        str(e.sampleHex) &&
        optStr(e.host) &&
        optProc(e.proc)
      );
    case 'icmp':
      return str(e.ip) && count(e.count);
    case 'dropped':
      return (e.family === 'ipv4' || e.family === 'ipv6') && count(e.packets);
    case 'truncated':
      return (
        str(e.reason) &&
        isObj(e.countsByKind) &&
        Object.entries(e.countsByKind).every(([k, n]) => ATTEMPT_KINDS.has(k) && count(n))
      );
    case 'observer':
      return str(e.status) && OBSERVER_STATUSES.has(e.status);
    case 'bound':
      return (
        str(e.bound) && /^[a-z][a-z-]{0,31}$/.test(e.bound) && count(e.limit) && count(e.count)
      );
    case 'capture-stats':
      return (
        STATS_COUNTS.every((k) => count(e[k])) && str(e.observer) && OBSERVER_STATES.has(e.observer)
      );
    case 'summary':
      return (
        str(e.of) &&
        ATTEMPT_KINDS.has(e.of) &&
        count(e.count) &&
        optNum(e.lastT) &&
        optStr(e.qname) &&
        optStr(e.qtype) &&
        optStr(e.resolver) &&
        optCount(e.resolverPort) &&
        (e.transport === undefined || e.transport === 'udp' || e.transport === 'tcp') &&
        optStr(e.ip) &&
        optCount(e.port) &&
        (e.family === undefined || e.family === 'ipv4' || e.family === 'ipv6') &&
        optStr(e.sampleHex) &&
        optStr(e.extraHex) &&
        validStreamFields(e) &&
        optCount(e.procRef) &&
        optProc(e.proc)
      );
    default:
      return false;
  }
}

/** Parse the capture's newline-delimited JSON event log. */
export function parseEventLog(text: string): EventLog {
  const all: CaptureEvent[] = [];
  let malformedLines = 0;
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    const length = end - start;
    const line = length <= MAX_LINE_CHARS ? text.slice(start, end) : undefined;
    start = end + 1;
    if (line === undefined) {
      malformedLines++;
      continue;
    }
    if (!line.trim()) continue;
    let e: unknown;
    try {
      e = JSON.parse(line);
    } catch {
      malformedLines++;
      continue;
    }
    if (!isObj(e) || !count(e.seq) || !Number.isInteger(e.seq) || !num(e.t) || !validEvent(e)) {
      malformedLines++;
      continue;
    }
    all.push(e as unknown as CaptureEvent);
  }
  all.sort((a, b) => a.seq - b.seq);

  const events: CaptureEvent[] = [];
  const truncatedCounts: Record<string, number> = {};
  const bounds = new Map<string, BoundEvent>();
  let captureStats: CaptureStatsEvent | undefined;
  const summaries: SummaryEvent[] = [];
  const observerHealth: ObserverEvent[] = [];
  const procs = new Map<number, ProcessInfo>();
  for (const e of all) {
    switch (e.kind) {
      case 'truncated':
        for (const [k, n] of Object.entries(e.countsByKind))
          truncatedCounts[k] = (truncatedCounts[k] ?? 0) + n;
        events.push(e);
        break;
      case 'bound': {
        const prev = bounds.get(e.bound);
        if (!prev) bounds.set(e.bound, e);
        else if (e.count > prev.count || e.limit !== prev.limit)
          bounds.set(e.bound, { ...prev, count: Math.max(prev.count, e.count), limit: e.limit });
        break;
      }
      case 'capture-stats':
        captureStats = e;
        break;
      case 'summary': {
        let s = e;
        if (s.procRef !== undefined) {
          if (s.proc) procs.set(s.procRef, s.proc);
          else {
            const proc = procs.get(s.procRef);
            if (proc) s = { ...s, proc };
          }
        }
        summaries.push(s);
        break;
      }
      case 'observer':
        if (e.status === 'unresponsive' || e.status === 'responsive') observerHealth.push(e);
        else events.push(e);
        break;
      default:
        events.push(e);
    }
  }
  return {
    events,
    malformedLines,
    truncatedCounts,
    bounds: [...bounds.values()].sort((a, b) => a.seq - b.seq),
    ...(captureStats ? { captureStats } : {}),
    summaries,
    observerHealth,
  };
}
