/**
 * The capture's end of the link to the sandbox's observer (see src/agent/observer.ts). The capture
 * listens on an abstract Unix socket (abstract names belong to the network namespace, which the
 * two containers share); the first process to connect is the observer, started before any package
 * code. Any later connection is an impostor: refused and recorded.
 *
 * Lookups never hold an attempt longer than LOOKUP_TIMEOUT_MS, and never pile up:
 * - requests made in one turn of the event loop go out in one write, so the observer answers them
 *   with one pass over /proc; concurrent lookups of one socket are asked once;
 * - at most MAX_PENDING requests are in flight; attempts past that are not asked about (counted,
 *   and a `lookups` bound record);
 * - when the observer stops answering in time (UNRESPONSIVE_TIMEOUTS timeouts in a row, or a
 *   timeout with no timely answer for UNRESPONSIVE_MS), the capture records it `unresponsive` and
 *   stops asking: attempts are answered at once, without their process, until a probe (sent every
 *   PROBE_MS) is answered in time again (`responsive`).
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { ProcessInfo } from '../core/terms.js';
import type { EventSink } from './sink.js';

/** How long an attempt's record (and a TCP client's reply) may wait for the owner of its socket. */
export const LOOKUP_TIMEOUT_MS = 250;
const UNRESPONSIVE_TIMEOUTS = 3;
const UNRESPONSIVE_MS = 1000;
const PROBE_MS = 200;
/** Distinct requests in flight at once. */
export const MAX_PENDING = 4096;
/** A line from the observer longer than this is not an answer. */
const MAX_ANSWER_CHARS = 64 * 1024;

export type ObserverState = 'none' | 'waiting' | 'connected' | 'unresponsive' | 'lost';

export interface LookupStats {
  /** Attempts asked about (each waiter of a shared request counts). */
  lookups: number;
  /** Attempts whose lookup the observer answered with a process. */
  lookupsAnswered: number;
  /** Attempts whose lookup was not answered within the timeout. */
  lookupsTimedOut: number;
  /** Attempts not asked about: the observer was not connected, lost or unresponsive. */
  lookupsSkipped: number;
  /** Attempts not asked about: too many requests in flight. */
  lookupsUnasked: number;
}

interface Request {
  id: number;
  key: string;
  sentAt: number;
  waiters: ((p: ProcessInfo | undefined) => void)[];
  timer: NodeJS.Timeout | undefined;
  probe: boolean;
}

export class ObserverLink {
  private sock: Socket | undefined;
  private server: Server | undefined;
  private status: ObserverState = 'none';
  private nextId = 1;
  private readonly byKey = new Map<string, Request>();
  private readonly byId = new Map<number, Request>();
  private outbox: string[] = [];
  private writeScheduled = false;
  private timeoutsInRow = 0;
  /** Since when lookups have been in flight with no answer in time (undefined: none in flight). */
  private busySince: number | undefined;
  private probeTimer: NodeJS.Timeout | undefined;
  readonly stats: LookupStats = {
    lookups: 0,
    lookupsAnswered: 0,
    lookupsTimedOut: 0,
    lookupsSkipped: 0,
    lookupsUnasked: 0,
  };
  /** Times the observer became unresponsive. */
  unresponsiveTimes = 0;
  /** Impostor connections refused. */
  rejected = 0;

  constructor(
    private readonly sink: EventSink,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get state(): ObserverState {
    return this.status;
  }

  listen(name: string): Promise<void> {
    this.status = 'waiting';
    const server = createServer((s) => this.onConnection(s));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ path: `\0${name}` }, () => resolve());
    });
  }

  /** Stop listening and drop the observer's connection (for tests; the capture never stops). */
  close(): void {
    clearInterval(this.probeTimer);
    this.server?.close();
    this.sock?.destroy();
  }

  /** The first connection is the observer's; any later one is an impostor. */
  private onConnection(s: Socket): void {
    if (this.status !== 'waiting') {
      this.rejected++;
      this.sink.record({ kind: 'observer', status: 'rejected' });
      s.destroy();
      return;
    }
    this.status = 'connected';
    this.sock = s;
    this.sink.record({ kind: 'observer', status: 'connected' });
    let pending = '';
    s.setEncoding('utf8');
    s.on('data', (chunk: string) => {
      const lines = (pending + chunk).split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) this.onAnswer(line);
      if (pending.length > MAX_ANSWER_CHARS) pending = '';
    });
    const lost = () => {
      if (this.status === 'lost') return;
      this.status = 'lost';
      this.sink.record({ kind: 'observer', status: 'lost' });
      clearInterval(this.probeTimer);
      this.failAll('lookupsTimedOut');
    };
    s.on('close', lost);
    s.on('error', lost);
  }

  private onAnswer(line: string): void {
    let msg: { id?: unknown; proc?: unknown };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      return;
    }
    if (typeof msg !== 'object' || msg === null || typeof msg.id !== 'number') return;
    const req = this.byId.get(msg.id);
    if (!req) return; // answered after its timeout
    this.timeoutsInRow = 0;
    this.busySince = this.now();
    const proc = validProc(msg.proc) ? msg.proc : undefined;
    this.settle(req, proc, proc ? 'lookupsAnswered' : undefined);
    if (this.status === 'unresponsive') {
      this.status = 'connected';
      clearInterval(this.probeTimer);
      this.probeTimer = undefined;
      this.sink.record({ kind: 'observer', status: 'responsive' });
    }
  }

  private settle(
    req: Request,
    proc: ProcessInfo | undefined,
    stat: 'lookupsAnswered' | 'lookupsTimedOut' | undefined,
  ): void {
    clearTimeout(req.timer);
    this.byId.delete(req.id);
    if (this.byKey.get(req.key) === req) this.byKey.delete(req.key);
    if (this.byKey.size === 0) this.busySince = undefined;
    if (stat) this.stats[stat] += req.waiters.length;
    for (const w of req.waiters) w(proc);
    req.waiters = [];
  }

  private failAll(stat: 'lookupsTimedOut'): void {
    for (const req of [...this.byId.values()])
      this.settle(req, undefined, req.probe ? undefined : stat);
  }

  private onTimeout(req: Request): void {
    if (req.probe) {
      this.settle(req, undefined, undefined);
      return;
    }
    const silentFor = this.busySince === undefined ? 0 : this.now() - this.busySince;
    this.settle(req, undefined, 'lookupsTimedOut');
    if (this.status !== 'connected') return;
    this.timeoutsInRow++;
    if (this.timeoutsInRow >= UNRESPONSIVE_TIMEOUTS || silentFor >= UNRESPONSIVE_MS)
      this.becomeUnresponsive();
  }

  private becomeUnresponsive(): void {
    this.status = 'unresponsive';
    this.unresponsiveTimes++;
    this.sink.record({ kind: 'observer', status: 'unresponsive' });
    // Nobody waits on it any more; probes tell when it answers in time again.
    this.failAll('lookupsTimedOut');
    this.probeTimer = setInterval(() => this.probe(), PROBE_MS);
    this.probeTimer.unref();
    this.probe();
  }

  private probe(): void {
    if (this.status !== 'unresponsive') return;
    // Port 0 is nobody's: the observer answers with no process, cheaply.
    this.send('probe', { proto: 'udp', port: 0 }, true);
  }

  private send(
    key: string,
    body: { proto: 'tcp' | 'udp'; port: number; rport?: number },
    probe: boolean,
  ): Request {
    const id = this.nextId++;
    const req: Request = { id, key, sentAt: this.now(), waiters: [], timer: undefined, probe };
    req.timer = setTimeout(() => this.onTimeout(req), LOOKUP_TIMEOUT_MS);
    this.byId.set(id, req);
    if (!probe) {
      if (this.byKey.size === 0) this.busySince = req.sentAt;
      this.byKey.set(key, req);
    }
    this.outbox.push(JSON.stringify({ id, ...body }));
    if (!this.writeScheduled) {
      this.writeScheduled = true;
      setImmediate(() => this.writeOut());
    }
    return req;
  }

  private writeOut(): void {
    this.writeScheduled = false;
    const lines = this.outbox;
    this.outbox = [];
    if (lines.length > 0 && this.sock && !this.sock.destroyed)
      this.sock.write(lines.join('\n') + '\n');
  }

  /**
   * The process that owns the sandbox socket with this local port, if the observer can tell
   * within the lookup timeout. Resolves at once (undefined) when the observer cannot be asked.
   */
  who(proto: 'tcp' | 'udp', port: number, rport?: number): Promise<ProcessInfo | undefined> {
    if (this.status !== 'connected' || !this.sock) {
      this.stats.lookupsSkipped++;
      return Promise.resolve(undefined);
    }
    const key = `${proto}/${port}/${rport ?? ''}`;
    let req = this.byKey.get(key);
    if (!req) {
      if (this.byKey.size >= MAX_PENDING) {
        this.stats.lookupsUnasked++;
        this.sink.hitBound('lookups', MAX_PENDING);
        return Promise.resolve(undefined);
      }
      req = this.send(key, { proto, port, ...(rport ? { rport } : {}) }, false);
    }
    this.stats.lookups++;
    const r = req;
    return new Promise((resolve) => r.waiters.push(resolve));
  }
}

/** An answer's process, checked (the observer reads it from the package's /proc entries). */
function validProc(v: unknown): v is ProcessInfo {
  if (typeof v !== 'object' || v === null) return false;
  const p = v as Record<string, unknown>;
  return (
    typeof p.pid === 'number' &&
    Number.isFinite(p.pid) &&
    typeof p.cmd === 'string' &&
    p.cmd.length <= 4096 &&
    typeof p.startMs === 'number' &&
    Number.isFinite(p.startMs) &&
    (p.package === undefined || (typeof p.package === 'string' && p.package.length <= 1024)) &&
    (p.script === undefined || (typeof p.script === 'string' && p.script.length <= 256))
  );
}
