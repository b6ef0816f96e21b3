/**
 * Original destinations of redirected connections, read back from /proc/net/nf_conntrack in the
 * gateway's namespace (Node has no SO_ORIGINAL_DST). A redirected flow is found by its reply
 * tuple: source = the capture's address and port, destination = the client's address and port
 * as the capture's socket sees them. The reply tuple is unique in the table, the original source
 * port is not.
 */
import { readFile } from 'node:fs/promises';
import { normalizeIpv6 } from './dns.js';

export interface ConntrackEntry {
  family: 'ipv4' | 'ipv6';
  proto: string;
  state?: string;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  /** Reply tuple source port: the capture's port for redirected flows. */
  replySport: number;
  /** Reply tuple addresses: the capture's (127.0.0.1 or ::1 for redirected flows) and the client's. */
  replySrc?: string;
  replyDst?: string;
  /**
   * Reply tuple destination port: the client port as the capture's socket sees it. Usually the
   * original source port, but not always: when the kernel reuses a source port for two
   * destinations, both redirects would share one reply tuple, and conntrack remaps the port.
   */
  replyDport: number;
  /** ICMP echo id, for icmp entries. */
  icmpId?: number;
  mark: number;
  /** Whole seconds left before the entry expires, as the kernel printed them. */
  timeout?: number;
}

function field(line: string, key: string, from = 0): { value: string; end: number } | undefined {
  const i = line.indexOf(` ${key}=`, from);
  if (i < 0) return undefined;
  const start = i + key.length + 2;
  let end = line.indexOf(' ', start);
  if (end < 0) end = line.length;
  return { value: line.slice(start, end), end };
}

function addr(family: 'ipv4' | 'ipv6', a: string): string {
  return family === 'ipv6' ? normalizeIpv6(a) : a;
}

export function parseConntrackLine(line: string): ConntrackEntry | undefined {
  const parts = line.split(/\s+/, 6);
  const family = parts[0];
  const proto = parts[2];
  if ((family !== 'ipv4' && family !== 'ipv6') || !proto) return undefined;
  const src = field(line, 'src');
  if (!src) return undefined;
  const dst = field(line, 'dst', src.end - 1);
  if (!dst) return undefined;
  const maybeState = parts[5];
  const state = maybeState && /^[A-Z_]+$/.test(maybeState) ? maybeState : undefined;
  const markF = field(line, 'mark');
  const mark = markF ? Number(markF.value) : 0;
  const left = Number(parts[4]);
  const timeout = Number.isInteger(left) && left >= 0 ? { timeout: left } : {};
  if (proto === 'icmp' || proto === 'icmpv6') {
    const id = field(line, 'id', dst.end - 1);
    return {
      family,
      proto,
      src: addr(family, src.value),
      dst: addr(family, dst.value),
      sport: 0,
      dport: 0,
      replySport: 0,
      replyDport: 0,
      mark,
      ...(id ? { icmpId: Number(id.value) } : {}),
      ...(state ? { state } : {}),
      ...timeout,
    };
  }
  const sport = field(line, 'sport', dst.end - 1);
  const dport = sport && field(line, 'dport', sport.end - 1);
  if (!sport || !dport) return undefined;
  const rsrc = field(line, 'src', dport.end - 1);
  const rdst = rsrc && field(line, 'dst', rsrc.end - 1);
  const rsport = rsrc && field(line, 'sport', rsrc.end - 1);
  const rdport = rsport && field(line, 'dport', rsport.end - 1);
  return {
    family,
    proto,
    src: addr(family, src.value),
    dst: addr(family, dst.value),
    sport: Number(sport.value),
    dport: Number(dport.value),
    replySport: rsport ? Number(rsport.value) : 0,
    replyDport: rdport ? Number(rdport.value) : 0,
    ...(rsrc ? { replySrc: addr(family, rsrc.value) } : {}),
    ...(rdst ? { replyDst: addr(family, rdst.value) } : {}),
    mark,
    ...(state ? { state } : {}),
    ...timeout,
  };
}

/**
 * A socket's address as conntrack prints it: IPv4-mapped IPv6 as IPv4, IPv6 compressed and without
 * a scope (`fe80::1%eth0`). Never throws: an address it cannot read is returned as it was.
 */
export function socketAddress(a: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  if (mapped) return mapped[1] as string;
  if (!a.includes(':')) return a;
  try {
    return normalizeIpv6(a.replace(/%.*$/, ''));
  } catch {
    return a;
  }
}

const STALE_STATES = new Set(['TIME_WAIT', 'CLOSE', 'CLOSE_WAIT', 'LAST_ACK', 'FIN_WAIT']);

/** Pick the entry for a client port among several (a reused port may leave a TIME_WAIT twin). */
export function pickEntry(entries: ConntrackEntry[]): ConntrackEntry | undefined {
  return entries.find((e) => !e.state || !STALE_STATES.has(e.state)) ?? entries[0];
}

export interface Lookup {
  proto: 'tcp' | 'udp';
  clientPort: number;
  capturePort: number;
  /**
   * The two ends' addresses as the capture's socket sees them. Both belong to the flow's key with
   * the ports: two sockets of one port (SO_REUSEADDR), one connected straight to the capture's
   * port on the sandbox's own address and one redirected, have the same ports but not the same
   * capture address, and neither may take the other's destination.
   */
  clientAddress: string;
  captureAddress: string;
}

/** A flow's key: its reply tuple, whose destination is the client and whose source the capture. */
function flowKey(
  proto: string,
  client: string | undefined,
  clientPort: number,
  capture: string | undefined,
  capturePort: number,
): string {
  return `${proto}/${client}/${clientPort}/${capture}/${capturePort}`;
}

/**
 * Looks up original destinations, coalescing concurrent lookups into one read of the table: under
 * a burst of thousands of connections, each read of /proc serves every waiting connection.
 */
export class ConntrackReader {
  private waiting: {
    key: string;
    capturePort: number;
    resolve: (e: ConntrackEntry | undefined) => void;
    tries: number;
  }[] = [];
  private reading = false;
  private lastRead = -Infinity;
  /** Lookups that found no entry after every try (direct loopback connections, or a miss). */
  unresolved = 0;
  readErrors = 0;
  /** Reads of the table, and the time they took in all (for the capture's log on stderr). */
  reads = 0;
  readMs = 0;

  constructor(
    private readonly path = '/proc/net/nf_conntrack',
    private readonly maxTries = 6,
    /**
     * Reads start at least this far apart. Reading the table costs the kernel a walk of the whole
     * conntrack hash (about 12 ms for 6,000 entries, plus as much to parse): under a burst, reads
     * back to back would take a CPU on their own, while spacing them serves more lookups a read.
     */
    private readonly minIntervalMs = 10,
  ) {}

  lookup(lookup: Lookup): Promise<ConntrackEntry | undefined> {
    const key = flowKey(
      lookup.proto,
      socketAddress(lookup.clientAddress),
      lookup.clientPort,
      socketAddress(lookup.captureAddress),
      lookup.capturePort,
    );
    return new Promise((resolve) => {
      this.waiting.push({ key, capturePort: lookup.capturePort, resolve, tries: 0 });
      void this.pump();
    });
  }

  /** Every entry of the table, or those whose line passes `keep` (a cheaper test than parsing). */
  async readAll(keep?: (line: string) => boolean): Promise<ConntrackEntry[]> {
    const text = await readFile(this.path, 'utf8');
    const out: ConntrackEntry[] = [];
    for (const line of text.split('\n')) {
      if (!line || (keep && !keep(line))) continue;
      const e = parseConntrackLine(line);
      if (e) out.push(e);
    }
    return out;
  }

  private async pump(): Promise<void> {
    if (this.reading) return;
    this.reading = true;
    try {
      while (this.waiting.length > 0) {
        const wait = this.lastRead + this.minIntervalMs - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        this.lastRead = performance.now();
        const batch = this.waiting;
        this.waiting = [];
        let entries: ConntrackEntry[] = [];
        try {
          const r0 = performance.now();
          // Only flows redirected to one of the ports asked about are parsed.
          const ports = [...new Set(batch.map((w) => ` sport=${w.capturePort} `))];
          entries = await this.readAll((line) => ports.some((p) => line.includes(p)));
          this.reads++;
          this.readMs += performance.now() - r0;
        } catch {
          this.readErrors++;
          entries = [];
        }
        const index = new Map<string, ConntrackEntry[]>();
        for (const e of entries) {
          const key = flowKey(e.proto, e.replyDst, e.replyDport, e.replySrc, e.replySport);
          const list = index.get(key);
          if (list) list.push(e);
          else index.set(key, [e]);
        }
        for (const w of batch) {
          const found = index.get(w.key);
          if (found) w.resolve(pickEntry(found));
          else if (++w.tries >= this.maxTries) {
            this.unresolved++;
            w.resolve(undefined);
          } else this.waiting.push(w);
        }
        // Reading /proc while the table changes can skip entries; retry a moment later.
        const retry = this.waiting.filter((w) => w.tries > 0);
        if (retry.length > 0)
          await new Promise((r) => setTimeout(r, 5 * Math.max(...retry.map((w) => w.tries))));
      }
    } finally {
      this.reading = false;
    }
  }
}
