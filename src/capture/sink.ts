/**
 * The bounded event log: newline-delimited JSON, one record a line. Its bounds must never hide a
 * destination, so a flood of one boring attempt cannot push a later one out of sight:
 *
 * - Detail per destination. Each attempt has a destination key (kind and where it was aimed: DNS
 *   name, type and resolver; ip, port, host and SNI of a stream; ip and port of a datagram). The
 *   log keeps the first `perDestination` attempts of each key in detail; later ones are counted
 *   in a per-destination `summary` record, unless they carry something not seen before for that
 *   destination (another HTTP request line, header or body, other first bytes, another
 *   datagram): those are kept in detail too. A new DNS name or SNI is a new destination.
 * - Hard bounds. Past `maxEvents` detailed events or `maxBytes` of them, every attempt goes to a
 *   summary: one per destination, per process, and per payload not seen before (its path,
 *   headers and a small body or data sample are kept, so bait can still be found). Summaries are
 *   bounded by `maxDestinations` distinct keys and `maxSummaryBytes`; past those an attempt is
 *   only counted per kind (a `truncated` record).
 * - Every bound hit is written as a `bound` record (when first hit, then at each flush while its
 *   count grows), the per-destination detail limit as `per-destination` (it loses nothing), and
 *   the capture's statistics as a `capture-stats` record at each flush. Records about the capture
 *   itself (observer link, bounds, statistics, `truncated`) are outside the detail bounds.
 *
 * Every attempt is in exactly one place: a detailed event, a summary's count, or a truncated
 * record's count.
 */
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import type {
  CaptureBound,
  CaptureEvent,
  CaptureStatsEvent,
  ObserverEvent,
  ProcessInfo,
  SummaryEvent,
} from '../core/terms.js';

export type EventInput = CaptureEvent extends infer E
  ? E extends CaptureEvent
    ? Omit<E, 'seq' | 't'> & { t?: number }
    : never
  : never;

/** Events that are egress attempts (the rest describe the capture itself). */
export type AttemptInput = Extract<
  EventInput,
  { kind: 'dns' | 'tcp' | 'tls' | 'http' | 'udp' | 'icmp' | 'dropped' }
>;
type AttemptKind = AttemptInput['kind'];

export type CaptureStats = Omit<CaptureStatsEvent, 'seq' | 't' | 'kind' | 'attempts'>;

export interface SinkLimits {
  /** Detailed events. */
  maxEvents: number;
  /** Bytes of detailed events. */
  maxBytes: number;
  /** Detailed events per destination key, beyond those that carry a new payload. */
  perDestination: number;
  /** Distinct destination keys (and payloads) tracked and summarised. */
  maxDestinations: number;
  /** Bytes of summary records. */
  maxSummaryBytes: number;
}

/**
 * The host reads at most 64 MiB of log (src/sandbox/topology.ts): details and summaries stay
 * below 58 MiB, leaving room for the small records written at each flush.
 */
export const DEFAULT_SINK_LIMITS: SinkLimits = {
  maxEvents: 50_000,
  maxBytes: 28 * 1024 * 1024,
  perDestination: 20,
  maxDestinations: 200_000,
  maxSummaryBytes: 30 * 1024 * 1024,
};

/**
 * No line is longer (the host's reader refuses lines over 1 MiB: MAX_LINE_CHARS in
 * src/core/events.ts). An HTTP request, the longest event, stays far below; this only guards.
 */
const MAX_LINE_BYTES = 768 * 1024;
/** Observer records of one status written in full; more are only counted (capture-stats). */
const OBSERVER_RECORDS_PER_STATUS = 20;
/** What a summary keeps of the payload of the first attempt it counts. */
const SUMMARY_BODY_BYTES = 1024;
const SUMMARY_PATH_CHARS = 2048;
const SUMMARY_HEADER_CHARS = 8192;
const SUMMARY_HEX_CHARS = 512;

/** CLOCK_MONOTONIC in milliseconds (the kernel clock shared by every container on the host). */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint() / 1000n) / 1000;
}

function digest(text: string): string {
  return createHash('sha1').update(text).digest('base64');
}

/** Where an attempt was aimed, as the fields of its summary, and its key. */
function destinationOf(e: AttemptInput): Partial<SummaryEvent> {
  switch (e.kind) {
    case 'dns':
      return {
        qname: e.qname,
        qtype: e.qtype,
        resolver: e.resolver,
        resolverPort: e.resolverPort,
        transport: e.transport,
      };
    case 'tcp':
    case 'tls':
    case 'http':
      return {
        ip: e.ip,
        port: e.port,
        ...(e.host !== undefined ? { host: e.host } : {}),
        ...(e.sni !== undefined ? { sni: e.sni } : {}),
      };
    case 'udp':
      return { ip: e.ip, port: e.port, ...(e.host !== undefined ? { host: e.host } : {}) };
    case 'icmp':
      return { ip: e.ip };
    case 'dropped':
      return { family: e.family };
  }
}

/** What an attempt carried beyond its destination: the part a bait could hide in. */
function payloadOf(e: AttemptInput): string {
  switch (e.kind) {
    case 'tcp':
    case 'tls':
    case 'http':
      return JSON.stringify([
        e.alpn,
        e.method,
        e.path,
        e.httpVersion,
        e.httpHost,
        e.headers,
        e.bodySample,
        e.websocket,
        e.intercept,
        e.tlsAlert,
        e.innerHex,
        // Every ClientHello is new (its random, its key share): its bytes do not make a TLS
        // attempt a new payload, or each would be kept in full.
        e.kind === 'tls' ? undefined : e.firstBytesHex,
      ]);
    case 'udp':
      return e.sampleHex;
    case 'dns':
      return e.extraHex ?? '';
    default:
      return '';
  }
}

/** The payload fields a summary keeps, cut small. */
function payloadFields(e: AttemptInput): Partial<SummaryEvent> {
  if (e.kind === 'udp') return { sampleHex: e.sampleHex.slice(0, SUMMARY_HEX_CHARS) };
  if (e.kind === 'dns')
    return e.extraHex ? { extraHex: e.extraHex.slice(0, SUMMARY_HEX_CHARS) } : {};
  if (e.kind !== 'tcp' && e.kind !== 'tls' && e.kind !== 'http') return {};
  const out: Partial<SummaryEvent> = {};
  if (e.alpn) out.alpn = e.alpn.slice(0, 16).map((a) => a.slice(0, 64));
  if (e.method !== undefined) out.method = e.method.slice(0, 32);
  if (e.path !== undefined) out.path = e.path.slice(0, SUMMARY_PATH_CHARS);
  if (e.httpVersion !== undefined) out.httpVersion = e.httpVersion.slice(0, 8);
  if (e.httpHost !== undefined) out.httpHost = e.httpHost.slice(0, 512);
  if (e.headers) {
    const headers: [string, string][] = [];
    let left = SUMMARY_HEADER_CHARS;
    for (const [k, v] of e.headers) {
      if (left <= 0) break;
      const name = k.slice(0, 256);
      const value = v.slice(0, Math.max(0, left - name.length));
      headers.push([name, value]);
      left -= name.length + value.length;
    }
    out.headers = headers;
  }
  if (e.bodyBytes !== undefined) out.bodyBytes = e.bodyBytes;
  if (e.bodySample !== undefined)
    out.bodySample = Buffer.from(e.bodySample, 'base64')
      .subarray(0, SUMMARY_BODY_BYTES)
      .toString('base64');
  if (e.websocket) out.websocket = true;
  if (e.intercept !== undefined) out.intercept = e.intercept;
  if (e.tlsAlert !== undefined) out.tlsAlert = e.tlsAlert.slice(0, 64);
  if (e.innerHex !== undefined) out.innerHex = e.innerHex.slice(0, SUMMARY_HEX_CHARS);
  if (e.firstBytesHex !== undefined)
    out.firstBytesHex = e.firstBytesHex.slice(0, SUMMARY_HEX_CHARS);
  return out;
}

/** ICMP records count echo requests and dropped records packets; every other attempt counts 1. */
function weightOf(e: AttemptInput): number {
  if (e.kind === 'icmp') return e.count;
  if (e.kind === 'dropped') return e.packets;
  return 1;
}

interface SummaryEntry {
  of: AttemptKind;
  destination: Partial<SummaryEvent>;
  /** Payload of the first attempt, until it has been written. */
  payload: Partial<SummaryEvent> | undefined;
  proc: ProcessInfo | undefined;
  /** Counted since the last record written. */
  count: number;
  firstT: number;
  lastT: number;
}

interface BoundState {
  limit: number;
  count: number;
  written: number;
}

/** Where `record` put an attempt. */
export type Placement = 'detail' | 'summary' | 'counted';

export class EventSink {
  private seq = 0;
  private detailEvents = 0;
  private detailBytes = 0;
  private summaryBytes = 0;
  private summaryFull = false;
  private attempts = 0;
  private readonly perDestination = new Map<string, number>();
  private readonly payloads = new Set<string>();
  private readonly summaries = new Map<string, SummaryEntry>();
  private readonly dirty = new Set<SummaryEntry>();
  private readonly procRefs = new Map<string, number>();
  private readonly bounds = new Map<CaptureBound, BoundState>();
  private readonly counted: Partial<Record<AttemptKind, number>> = {};
  private readonly countedReasons = new Set<string>();
  private readonly observerRecords = new Map<string, number>();
  private readonly limits: SinkLimits;
  private readonly fd: number;
  private pending: string[] = [];
  private pendingBytes = 0;

  constructor(path: string, limits: Partial<SinkLimits> = {}) {
    this.limits = { ...DEFAULT_SINK_LIMITS, ...limits };
    this.fd = openSync(path, 'a', 0o600);
  }

  /** Lines written so far (every record has a sequence number). */
  get written(): number {
    return this.seq;
  }

  /** Whether a hard bound was hit (the per-destination detail limit is not one). */
  get truncated(): boolean {
    return [...this.bounds.keys()].some((b) => b !== 'per-destination');
  }

  /** Attempts recorded so far, detailed, summarised or counted (ICMP echoes, dropped packets). */
  get attemptsSeen(): number {
    return this.attempts;
  }

  /** Record an attempt, or a record about the capture itself (observer link, bounds). */
  record(input: EventInput): Placement {
    switch (input.kind) {
      case 'observer':
        this.observer(input);
        return 'detail';
      case 'bound':
        this.hitBound(input.bound, input.limit, input.count);
        return 'detail';
      case 'truncated':
        for (const [k, n] of Object.entries(input.countsByKind))
          this.countOnly(k as AttemptKind, input.reason, n);
        return 'counted';
      case 'capture-stats':
      case 'summary':
        // Written by finish() only.
        return 'counted';
      default:
        return this.attempt(input);
    }
  }

  /** An attempt whose destination the capture cannot know (refused before it was read, say). */
  countOnly(kind: AttemptKind, reason: string, n = 1): void {
    this.attempts += n;
    this.count(kind, n, reason);
  }

  /**
   * A bound of the capture itself was hit `n` more times (connections refused, lookups not
   * asked, …). The first hit is written at once, so its time shows when it happened.
   */
  hitBound(bound: CaptureBound, limit: number, n = 1): void {
    let b = this.bounds.get(bound);
    if (!b) {
      b = { limit, count: 0, written: 0 };
      this.bounds.set(bound, b);
      b.count += n;
      this.writeBound(bound, b);
      return;
    }
    b.limit = limit;
    b.count += n;
  }

  private writeBound(bound: CaptureBound, b: BoundState): void {
    this.meta({ kind: 'bound', bound, limit: b.limit, count: b.count });
    b.written = b.count;
  }

  private observer(input: Omit<ObserverEvent, 'seq' | 't'> & { t?: number }): void {
    const n = (this.observerRecords.get(input.status) ?? 0) + 1;
    this.observerRecords.set(input.status, n);
    if (n <= OBSERVER_RECORDS_PER_STATUS) this.meta(input);
  }

  private count(kind: AttemptKind, n: number, reason: string): void {
    this.counted[kind] = (this.counted[kind] ?? 0) + n;
    this.countedReasons.add(reason);
  }

  private attempt(e: AttemptInput): Placement {
    const weight = weightOf(e);
    this.attempts += weight;
    const t = e.t ?? monotonicMs();
    const destination = destinationOf(e);
    const key = digest(JSON.stringify([e.kind, destination]));
    const payload = digest(`${key}\0${payloadOf(e)}`);
    const payloadNew = !this.payloads.has(payload);
    if (payloadNew && this.payloads.size < this.limits.maxDestinations) this.payloads.add(payload);
    const detailed = this.perDestination.get(key);
    const wanted = detailed === undefined || detailed < this.limits.perDestination || payloadNew;
    if (!wanted) this.hitBound('per-destination', this.limits.perDestination, weight);
    else {
      const line = this.line({ ...e, t });
      const size = Buffer.byteLength(line);
      if (this.detailEvents + 1 > this.limits.maxEvents) {
        this.hitBound('events', this.limits.maxEvents, weight);
      } else if (this.detailBytes + size > this.limits.maxBytes) {
        this.hitBound('bytes', this.limits.maxBytes, weight);
      } else {
        this.detailEvents++;
        this.detailBytes += size;
        this.push(line);
        if (detailed !== undefined) this.perDestination.set(key, detailed + 1);
        else if (this.perDestination.size < this.limits.maxDestinations)
          this.perDestination.set(key, 1);
        return 'detail';
      }
    }
    // Counted in a summary: per destination and process, and per payload not seen before (only
    // past the hard bounds can an attempt with a new payload get here).
    // An attempt whose payload was seen joins the summary that kept that payload, if any.
    const proc = 'proc' in e ? e.proc : undefined;
    const base = `${key}|${proc ? `${proc.pid}:${proc.startMs}` : ''}|`;
    const withPayload = this.summaries.get(base + payload);
    const summaryKey = payloadNew || withPayload ? base + payload : base;
    let entry = withPayload ?? this.summaries.get(summaryKey);
    if (!entry) {
      if (this.summaries.size >= this.limits.maxDestinations) {
        this.hitBound('destinations', this.limits.maxDestinations, weight);
        this.count(e.kind, weight, `more than ${this.limits.maxDestinations} destinations`);
        return 'counted';
      }
      entry = {
        of: e.kind,
        destination,
        payload: payloadNew ? payloadFields(e) : undefined,
        proc,
        count: 0,
        firstT: t,
        lastT: t,
      };
      this.summaries.set(summaryKey, entry);
    }
    if (entry.count === 0) entry.firstT = t;
    entry.count += weight;
    entry.lastT = t;
    this.dirty.add(entry);
    return 'summary';
  }

  /** A line for the log (with its sequence number), cut down if it would be too long. */
  private line(input: EventInput | Record<string, unknown>): string {
    let line = JSON.stringify({ ...input, seq: this.seq });
    if (Buffer.byteLength(line) > MAX_LINE_BYTES) {
      const cut: Record<string, unknown> = { ...input, seq: this.seq };
      for (const [k, v] of Object.entries(cut)) {
        if (typeof v === 'string' && v.length > 4096) cut[k] = v.slice(0, 4096);
        if (k === 'headers' && Array.isArray(v))
          cut[k] = (v as [string, string][])
            .slice(0, 32)
            .map(([a, b]) => [a.slice(0, 256), b.slice(0, 1024)]);
      }
      line = JSON.stringify(cut);
    }
    return line + '\n';
  }

  private push(line: string): void {
    this.seq++;
    this.pending.push(line);
    this.pendingBytes += line.length;
    if (this.pendingBytes > 64 * 1024) this.flush();
  }

  /** A record about the capture (not an attempt): outside the detail bounds. */
  private meta(input: Record<string, unknown> & { kind: string }): void {
    this.push(this.line({ ...input, t: (input.t as number | undefined) ?? monotonicMs() }));
  }

  private writeSummaries(): void {
    for (const entry of this.dirty) {
      const proc = entry.proc;
      let procFields: Partial<SummaryEvent> = {};
      let newRef: [string, number] | undefined;
      if (proc) {
        const pk = `${proc.pid}:${proc.startMs}`;
        const ref = this.procRefs.get(pk);
        if (ref !== undefined) procFields = { procRef: ref };
        else {
          newRef = [pk, this.procRefs.size + 1];
          procFields = { procRef: newRef[1], proc };
        }
      }
      const record = {
        kind: 'summary',
        t: entry.firstT,
        of: entry.of,
        count: entry.count,
        ...(entry.lastT !== entry.firstT ? { lastT: entry.lastT } : {}),
        ...entry.destination,
        ...entry.payload,
        ...procFields,
      };
      const line = this.line(record);
      const size = Buffer.byteLength(line);
      if (this.summaryFull || this.summaryBytes + size > this.limits.maxSummaryBytes) {
        this.summaryFull = true;
        this.hitBound('summary-bytes', this.limits.maxSummaryBytes, entry.count);
        this.count(
          entry.of,
          entry.count,
          `summary records larger than ${this.limits.maxSummaryBytes} bytes`,
        );
      } else {
        this.summaryBytes += size;
        this.push(line);
        if (newRef) this.procRefs.set(newRef[0], newRef[1]);
        entry.payload = undefined;
      }
      entry.count = 0;
    }
    this.dirty.clear();
  }

  /** Write buffered lines to the file (the host reads the file after a flush). */
  flush(sync = false): void {
    if (this.pending.length > 0) {
      writeSync(this.fd, this.pending.join(''));
      this.pending = [];
      this.pendingBytes = 0;
    }
    if (sync) fsyncSync(this.fd);
  }

  /**
   * Flush and make the file complete up to now: summaries of what was counted since the previous
   * flush, bounds whose count grew, a `truncated` record with what was only counted since the
   * previous one (readers add them up), and the capture's statistics when given.
   */
  finish(stats?: CaptureStats): void {
    this.writeSummaries();
    for (const [bound, b] of this.bounds) if (b.count > b.written) this.writeBound(bound, b);
    if (Object.keys(this.counted).length > 0) {
      const countsByKind = { ...this.counted };
      for (const k of Object.keys(this.counted)) delete this.counted[k as AttemptKind];
      this.meta({
        kind: 'truncated',
        reason: [...this.countedReasons].join('; '),
        countsByKind,
      });
      this.countedReasons.clear();
    }
    if (stats) this.meta({ kind: 'capture-stats', attempts: this.attempts, ...stats });
    this.flush(true);
  }

  close(): void {
    this.finish();
    closeSync(this.fd);
  }
}
