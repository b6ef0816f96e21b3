/**
 * The bounded event log: newline-delimited JSON, one event a line. Past its bounds it stops
 * writing details and counts what it saw per kind, so a package that opens a million connections
 * yields a summarised, truncated record instead of an exhausted gateway.
 */
import { openSync, writeSync, fsyncSync, closeSync } from 'node:fs';
import type { CaptureEvent } from '../core/terms.js';

export type EventInput = CaptureEvent extends infer E
  ? E extends CaptureEvent
    ? Omit<E, 'seq' | 't'> & { t?: number }
    : never
  : never;

export interface SinkLimits {
  maxEvents: number;
  maxBytes: number;
}

export const DEFAULT_SINK_LIMITS: SinkLimits = { maxEvents: 50_000, maxBytes: 48 * 1024 * 1024 };

/** CLOCK_MONOTONIC in milliseconds (the kernel clock shared by every container on the host). */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint() / 1000n) / 1000;
}

export class EventSink {
  private seq = 0;
  private bytes = 0;
  private truncatedReason: string | undefined;
  private readonly overflow: Record<string, number> = {};
  private readonly fd: number;
  private pending: string[] = [];
  private pendingBytes = 0;

  constructor(
    path: string,
    private readonly limits: SinkLimits = DEFAULT_SINK_LIMITS,
  ) {
    this.fd = openSync(path, 'a', 0o600);
  }

  get written(): number {
    return this.seq;
  }

  get truncated(): boolean {
    return this.truncatedReason !== undefined;
  }

  record(input: EventInput): void {
    if (this.truncatedReason !== undefined) {
      this.overflow[input.kind] = (this.overflow[input.kind] ?? 0) + 1;
      return;
    }
    const event = { ...input, seq: this.seq, t: input.t ?? monotonicMs() };
    const line = JSON.stringify(event) + '\n';
    const size = Buffer.byteLength(line);
    if (this.seq + 1 > this.limits.maxEvents || this.bytes + size > this.limits.maxBytes) {
      this.truncatedReason =
        this.seq + 1 > this.limits.maxEvents
          ? `more than ${this.limits.maxEvents} events`
          : `event log larger than ${this.limits.maxBytes} bytes`;
      this.overflow[input.kind] = 1;
      return;
    }
    this.seq++;
    this.bytes += size;
    this.pending.push(line);
    this.pendingBytes += size;
    if (this.pendingBytes > 64 * 1024) this.flush();
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
   * Flush and make the file complete up to now: when bounds were hit, append a `truncated` record
   * with what was counted since the previous one (readers add them up).
   */
  finish(): void {
    if (this.truncatedReason !== undefined && Object.keys(this.overflow).length > 0) {
      const countsByKind = { ...this.overflow };
      for (const k of Object.keys(this.overflow)) delete this.overflow[k];
      this.pending.push(
        JSON.stringify({
          kind: 'truncated',
          seq: this.seq++,
          t: monotonicMs(),
          reason: this.truncatedReason,
          countsByKind,
        }) + '\n',
      );
    }
    this.flush(true);
  }

  close(): void {
    this.finish();
    closeSync(this.fd);
  }
}
