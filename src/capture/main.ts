/**
 * The capture program: runs as root in the gateway container, after setup.sh installed the rules
 * that redirect every TCP connection, DNS query and UDP datagram of the sandbox user to it. It
 * answers just enough for the package to go on to its next step, and records each attempt.
 *
 * Protocol with the host (through Docker): prints `READY` on stdout once listening; on SIGUSR1
 * appends ICMP and drop counts, flushes the event log and prints `FLUSHED <n> <events>` (n counts
 * flushes from 1); on SIGTERM
 * does the same and exits.
 */
import { execFile } from 'node:child_process';
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Socket } from 'node:net';
import { promisify } from 'node:util';
import { ConntrackReader, type ConntrackEntry } from './conntrack.js';
import {
  buildResponse,
  DnsParseError,
  parseQuery,
  ptrAddress,
  qtypeName,
  type DnsAnswer,
} from './dns.js';
import {
  chunkedBodyComplete,
  HTTP_OK_EMPTY,
  mayBeHttp,
  parseRequestHead,
  type HttpRequestHead,
} from './http.js';
import { ObserverLink } from './observer-link.js';
import { EventSink, monotonicMs } from './sink.js';
import { SyntheticAddresses } from './synthetic.js';
import { looksLikeTls, parseClientHello, TLS_HANDSHAKE_FAILURE_ALERT } from './tls.js';
import type { ProcessInfo, StreamEvent } from '../core/terms.js';

const execFileP = promisify(execFile);

export const CAPTURE_PORTS = { tcp: 15001, dns: 15053, udp: 15002 } as const;

const BODY_SAMPLE_MAX = 64 * 1024;
/** After this many sample bytes in all, samples shrink to 1 KiB each. */
const BODY_SAMPLE_BUDGET = 16 * 1024 * 1024;
const RAW_SAMPLE_MAX = 256;
/** How long a connection may stay silent before we record what we have. */
const IDLE_MS = 1500;
/** The longest we hold any one connection. */
const CONNECTION_MAX_MS = 10_000;
/** Bytes kept while working out the protocol (HTTP heads up to 64 KiB, TLS records 16 KiB). */
const CLASSIFY_MAX = 80 * 1024;
const MAX_CONNECTIONS = 4096;

function plainAddress(a: string | undefined): string {
  if (!a) return '';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

class Capture {
  readonly sink: EventSink;
  readonly names = new SyntheticAddresses();
  readonly conntrack = new ConntrackReader();
  readonly observer: ObserverLink;
  /** Open connections, to be recorded at a flush even if the client still holds them. */
  private readonly open = new Set<() => void>();
  /** Records waiting on a conntrack or observer lookup; a flush waits for them. */
  private readonly inflight = new Set<Promise<unknown>>();
  private sampleBudget = BODY_SAMPLE_BUDGET;
  private readonly icmpSeen = new Map<string, Set<number>>();
  private readonly icmpReported = new Map<string, number>();
  private droppedReported = { ipv4: 0, ipv6: 0 };

  constructor(eventsPath: string) {
    this.sink = new EventSink(eventsPath);
    this.observer = new ObserverLink(this.sink);
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
    return p;
  }

  /** Conntrack entry of a redirected flow, then the sandbox process that owns its socket. */
  private lookup(
    proto: 'tcp' | 'udp',
    clientPort: number,
    capturePort: number,
  ): Promise<{ ct: ConntrackEntry | undefined; proc: ProcessInfo | undefined }> {
    return this.track(
      this.conntrack.lookup({ proto, clientPort, capturePort }).then(async (ct) => ({
        ct,
        proc: ct ? await this.observer.who(proto, ct.sport, ct.dport) : undefined,
      })),
    );
  }

  // ---- DNS ----

  answerFor(qname: string, qtype: number): { answer: DnsAnswer; text: string } {
    const type = qtypeName(qtype);
    if (type === 'A' || type === 'ANY') {
      const address = this.names.ipv4For(qname);
      if (address) return { answer: { type: 'A', address }, text: address };
    } else if (type === 'AAAA') {
      const address = this.names.ipv6For(qname);
      if (address) return { answer: { type: 'AAAA', address }, text: address };
    } else if (type === 'PTR') {
      const addr = ptrAddress(qname);
      const name = addr !== undefined ? this.names.nameFor(addr) : undefined;
      if (name) return { answer: { type: 'PTR', name }, text: name };
      return { answer: { type: 'none', rcode: 3 }, text: 'NXDOMAIN' };
    }
    return { answer: { type: 'none' }, text: 'NOERROR empty' };
  }

  handleDnsMessage(
    msg: Buffer,
    t: number,
    resolver: string,
    resolverPort: number,
    transport: 'udp' | 'tcp',
    proc: ProcessInfo | undefined,
  ): Buffer | undefined {
    try {
      const q = parseQuery(msg);
      const { answer, text } = this.answerFor(q.qname, q.qtype);
      this.sink.record({
        kind: 'dns',
        t,
        qname: q.qname,
        qtype: qtypeName(q.qtype),
        resolver,
        resolverPort,
        transport,
        answer: text,
        ...(proc ? { proc } : {}),
      });
      return buildResponse(msg, q, answer);
    } catch (e) {
      if (!(e instanceof DnsParseError)) throw e;
      return undefined;
    }
  }

  startDns(host: string): Promise<UdpSocket> {
    const sock = createSocket({ type: host.includes(':') ? 'udp6' : 'udp4' });
    sock.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
      const t = monotonicMs();
      void this.lookup('udp', rinfo.port, CAPTURE_PORTS.dns).then(({ ct, proc }) => {
        const resolver = ct?.dst ?? plainAddress(host);
        const reply = this.handleDnsMessage(msg, t, resolver, ct?.dport ?? 53, 'udp', proc);
        if (reply) sock.send(reply, rinfo.port, rinfo.address);
        else this.recordDatagram(msg, t, ct, proc);
      });
    });
    return bind(sock, host, CAPTURE_PORTS.dns);
  }

  // ---- UDP (not DNS) ----

  recordDatagram(
    msg: Buffer,
    t: number,
    ct: ConntrackEntry | undefined,
    proc: ProcessInfo | undefined,
  ): void {
    if (!ct) return; // direct loopback traffic to our port: not egress
    const host = this.names.nameFor(ct.dst);
    this.sink.record({
      kind: 'udp',
      t,
      ip: ct.dst,
      port: ct.dport,
      bytes: msg.length,
      sampleHex: msg.subarray(0, RAW_SAMPLE_MAX).toString('hex'),
      ...(host ? { host } : {}),
      ...(proc ? { proc } : {}),
    });
  }

  startUdpSink(host: string): Promise<UdpSocket> {
    const sock = createSocket({ type: host.includes(':') ? 'udp6' : 'udp4' });
    sock.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
      const t = monotonicMs();
      void this.lookup('udp', rinfo.port, CAPTURE_PORTS.udp).then(({ ct, proc }) =>
        this.recordDatagram(msg, t, ct, proc),
      );
    });
    return bind(sock, host, CAPTURE_PORTS.udp);
  }

  // ---- TCP ----

  startTcp(): Promise<void> {
    const server = createServer({ allowHalfOpen: false, pauseOnConnect: false }, (s) =>
      this.onConnection(s),
    );
    server.maxConnections = MAX_CONNECTIONS;
    server.on('drop', () => {
      this.sink.record({
        kind: 'truncated',
        reason: `more than ${MAX_CONNECTIONS} connections open at once; connection refused`,
        countsByKind: { tcp: 1 },
      });
    });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      // '::' with ipv6Only off takes both the IPv4 and the IPv6 redirects.
      server.listen({ host: '::', port: CAPTURE_PORTS.tcp, ipv6Only: false, backlog: 4096 }, () =>
        resolve(),
      );
    });
  }

  onConnection(sock: Socket): void {
    const t = monotonicMs();
    const clientPort = sock.remotePort ?? 0;
    const found = this.lookup('tcp', clientPort, CAPTURE_PORTS.tcp);
    let buf = Buffer.alloc(0);
    let total = 0;
    let done = false;
    let idle: NodeJS.Timeout | undefined;
    let head: HttpRequestHead | undefined;
    const deadline = setTimeout(() => finish('timeout'), CONNECTION_MAX_MS);

    const finish = (
      why: 'idle' | 'timeout' | 'end' | 'tls' | 'http' | 'dns' | 'raw' | 'flush',
      reply?: Buffer,
    ) => {
      if (done) return;
      done = true;
      this.open.delete(finishAtFlush);
      clearTimeout(deadline);
      clearTimeout(idle);
      const snapshot = buf;
      const bytesOut = total;
      if (why !== 'dns') {
        void this.track(
          found.then(({ ct, proc }) => {
            if (!ct) return; // a direct loopback connection to our port: not egress
            this.recordStream(t, ct, snapshot, bytesOut, head, proc);
          }),
        );
      }
      // Answer only once the observer has looked up the client's socket: a client that has its
      // answer closes, and a closed socket has no owner to find.
      void found.then(() => {
        if (reply && !sock.destroyed) sock.end(reply);
        else sock.end();
        // Never wait on a client that does not close.
        setTimeout(() => sock.destroy(), 1000).unref();
      });
    };

    const finishAtFlush = () => finish('flush');
    this.open.add(finishAtFlush);

    const armIdle = () => {
      clearTimeout(idle);
      idle = setTimeout(() => finish('idle'), IDLE_MS);
    };
    armIdle();

    sock.on('data', (d: Buffer) => {
      total += d.length;
      if (done) return;
      armIdle();
      if (buf.length < CLASSIFY_MAX)
        buf = Buffer.concat([buf, d.subarray(0, CLASSIFY_MAX - buf.length)]);
      if (looksLikeTls(buf)) {
        const ch = parseClientHello(buf);
        if (ch.status === 'incomplete' && buf.length < CLASSIFY_MAX) return;
        finish('tls', TLS_HANDSHAKE_FAILURE_ALERT);
        return;
      }
      if (!head && mayBeHttp(buf)) {
        const r = parseRequestHead(buf);
        if (r.status === 'incomplete') return;
        if (r.status === 'ok') head = r.head;
      }
      if (head) {
        const bodyHave = total - head.headLength;
        const bodyDone = head.chunked
          ? chunkedBodyComplete(buf.subarray(head.headLength))
          : bodyHave >= (head.contentLength ?? 0);
        if (bodyDone || (head.chunked && buf.length >= CLASSIFY_MAX)) finish('http', HTTP_OK_EMPTY);
        return;
      }
      // DNS over TCP: a two-byte length then a query; answered, and recorded as dns only.
      void found.then(({ ct, proc }) => {
        if (done || !ct || ct.dport !== 53 || buf.length < 2) return;
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) return;
        const query = buf.subarray(2, 2 + len);
        const reply = this.handleDnsMessage(query, t, ct.dst, ct.dport, 'tcp', proc);
        if (!reply) return;
        const framed = Buffer.alloc(2 + reply.length);
        framed.writeUInt16BE(reply.length, 0);
        reply.copy(framed, 2);
        finish('dns', framed);
      });
      if (buf.length >= 4096) finish('raw');
    });
    sock.on('end', () => finish('end'));
    sock.on('error', () => finish('end'));
  }

  recordStream(
    t: number,
    ct: ConntrackEntry,
    buf: Buffer,
    bytesOut: number,
    head: HttpRequestHead | undefined,
    proc: ProcessInfo | undefined,
  ): void {
    const host = this.names.nameFor(ct.dst);
    const base: Omit<StreamEvent, 'seq' | 't' | 'kind'> = {
      ip: ct.dst,
      port: ct.dport,
      bytesOut,
      ...(host ? { host } : {}),
      ...(proc ? { proc } : {}),
    };
    if (looksLikeTls(buf)) {
      const ch = parseClientHello(buf);
      if (ch.status === 'ok') {
        this.sink.record({
          kind: 'tls',
          t,
          ...base,
          ...(ch.sni ? { sni: ch.sni } : {}),
          ...(ch.alpn ? { alpn: ch.alpn } : {}),
        });
        return;
      }
    }
    if (head) {
      const body = buf.subarray(head.headLength);
      const max = this.sampleBudget > 0 ? BODY_SAMPLE_MAX : 1024;
      const sample = body.subarray(0, max);
      this.sampleBudget -= sample.length;
      this.sink.record({
        kind: 'http',
        t,
        ...base,
        method: head.method,
        path: head.path,
        httpVersion: head.httpVersion,
        headers: head.headers,
        bodyBytes: Math.max(0, bytesOut - head.headLength),
        ...(head.host !== undefined ? { httpHost: head.host } : {}),
        ...(sample.length > 0 ? { bodySample: sample.toString('base64') } : {}),
        ...(head.websocket ? { websocket: true } : {}),
      });
      return;
    }
    this.sink.record({
      kind: 'tcp',
      t,
      ...base,
      ...(buf.length > 0 ? { firstBytesHex: buf.subarray(0, RAW_SAMPLE_MAX).toString('hex') } : {}),
    });
  }

  // ---- ICMP and drops (polled: the kernel keeps no per-packet record we can read otherwise) ----

  async pollIcmp(): Promise<void> {
    let entries: ConntrackEntry[];
    try {
      entries = await this.conntrack.readAll();
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.proto !== 'icmp' && e.proto !== 'icmpv6') continue;
      const ids = this.icmpSeen.get(e.dst) ?? new Set<number>();
      ids.add(e.icmpId ?? 0);
      this.icmpSeen.set(e.dst, ids);
    }
    // Recorded when first seen, so the attempt falls in the phase that made it.
    this.reportIcmp();
  }

  reportIcmp(): void {
    for (const [ip, ids] of [...this.icmpSeen].sort(([a], [b]) => a.localeCompare(b))) {
      const before = this.icmpReported.get(ip) ?? 0;
      if (ids.size > before) {
        this.sink.record({ kind: 'icmp', ip, count: ids.size - before });
        this.icmpReported.set(ip, ids.size);
      }
    }
  }

  async reportDropped(): Promise<void> {
    for (const [family, cmd] of [
      ['ipv4', 'iptables'],
      ['ipv6', 'ip6tables'],
    ] as const) {
      try {
        const { stdout } = await execFileP(cmd, ['-w', '-L', 'OUTPUT', '-v', '-x', '-n']);
        const lines = stdout.trim().split('\n');
        const last = lines[lines.length - 1] ?? '';
        const m = /^\s*(\d+)\s+\d+\s+DROP\b/.exec(last);
        const packets = m ? Number(m[1]) : 0;
        if (packets > this.droppedReported[family]) {
          this.sink.record({
            kind: 'dropped',
            family,
            packets: packets - this.droppedReported[family],
          });
          this.droppedReported[family] = packets;
        }
      } catch {
        // ip6tables may be absent when IPv6 is off; the rules install step already said so.
      }
    }
  }

  async flush(): Promise<void> {
    // Connections still held open (a detached child that never closes) are recorded as they are.
    for (const finish of [...this.open]) finish();
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
    await this.pollIcmp();
    await this.reportDropped();
    this.sink.finish();
  }
}

function bind(sock: UdpSocket, host: string, port: number): Promise<UdpSocket> {
  return new Promise((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(port, host, () => resolve(sock));
  });
}

async function main(): Promise<void> {
  const eventsPath = process.argv[2] ?? '/run/capture/events.ndjson';
  const ipv6 = process.argv[3] !== 'no-ipv6';
  const capture = new Capture(eventsPath);
  // The DNS and UDP sockets must bind loopback, not the wildcard: replies must leave with the
  // address the redirect targeted, or conntrack does not un-NAT them and clients time out.
  await capture.startDns('127.0.0.1');
  await capture.startUdpSink('127.0.0.1');
  if (ipv6) {
    await capture.startDns('::1');
    await capture.startUdpSink('::1');
  }
  await capture.startTcp();
  const observerSocket = process.env.OBSERVER_SOCKET;
  if (observerSocket) await capture.observer.listen(observerSocket);
  // ICMP echo entries live 30 s in conntrack; a 1 s poll sees each and dates it to within 1 s.
  const icmpTimer = setInterval(() => void capture.pollIcmp(), 1000);
  let flushing: Promise<void> = Promise.resolve();
  let flushes = 0;
  const flush = () => {
    flushing = flushing.then(async () => {
      await capture.flush();
      process.stdout.write(`FLUSHED ${++flushes} ${capture.sink.written}\n`);
      process.stderr.write(
        `capture: conntrack unresolved=${capture.conntrack.unresolved} readErrors=${capture.conntrack.readErrors}\n`,
      );
    });
    return flushing;
  };
  process.on('SIGUSR1', () => void flush());
  process.on('SIGTERM', () => {
    clearInterval(icmpTimer);
    void flush().then(() => process.exit(0));
  });
  process.stdout.write('READY\n');
}

main().catch((e: unknown) => {
  process.stderr.write(`capture: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
