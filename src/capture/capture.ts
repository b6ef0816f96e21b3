/**
 * The capture: answers and records every TCP connection, DNS query and UDP datagram the gateway's
 * rules (sandbox-images/gateway/setup.sh) redirect to it, ICMP echoes and drops it polls for,
 * and what it could not see or attribute. The program around it (main.ts) starts it and speaks
 * the flush protocol with the host; what a TCP stream speaks is worked out by classify.ts.
 *
 * No attempt waits on the sandbox's observer longer than its lookup timeout, and none at all
 * while the observer is unresponsive (observer-link.ts). A DNS reply waits for its lookups, which
 * run in parallel, at most DNS_REPLY_DEADLINE_MS; a TCP client's reply waits for its conntrack
 * entry and then its owner.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import { promisify } from 'node:util';
import { ConntrackReader, socketAddress, type ConntrackEntry, type Lookup } from './conntrack.js';
import { conntrackDrops, udpReceiveErrors } from './kernel-stats.js';
import {
  buildResponse,
  DnsParseError,
  parseQuery,
  ptrAddress,
  qtypeName,
  type DnsAnswer,
} from './dns.js';
import { StreamClassifier, type StreamKind } from './classify.js';
import { splitRequests, type HttpRequestHead } from './http.js';
import { http1Reply, processDate, RUN_REPLY_SEED, siteMail, siteReply } from './reply.js';
import { ObserverLink } from './observer-link.js';
import { EventSink, monotonicMs, type CaptureStats } from './sink.js';
import { isNxdomain, registrableDomain } from './reserved.js';
import { SyntheticAddresses, type SyntheticBlocks } from './synthetic.js';
import { looksLikeTls, parseClientHello, TLS_HANDSHAKE_FAILURE_ALERT } from './tls.js';
import { certificateName, h2Payloads, h2Target, intercept, type Intercepted } from './intercept.js';
import type { RunCa } from './x509.js';
import type { ProcessInfo, StreamEvent } from '../core/terms.js';

const execFileP = promisify(execFile);

/** The namespace's own addresses (the sandbox shares it), as conntrack prints them. */
function localAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces()))
    for (const a of list ?? []) out.add(socketAddress(a.address));
  return out;
}

/** The two ends of a flow as the capture's socket sees them, to tell apart flows of one port. */
type Ends = Pick<Lookup, 'clientAddress' | 'captureAddress'>;

/** The ends of an accepted (or refused) connection; `undefined` once its socket is gone. */
function endsOf(s: { remoteAddress?: string; localAddress?: string }): Ends | undefined {
  return s.remoteAddress && s.localAddress
    ? { clientAddress: s.remoteAddress, captureAddress: s.localAddress }
    : undefined;
}

/** The capture's own addresses, which a redirected flow's reply tuple comes from. */
const LOOPBACK = new Set(['127.0.0.1', '::1']);

/** A redirected connection's identity while conntrack lists it: both its tuples. */
const flowId = (e: ConntrackEntry): string =>
  `${e.proto}/${e.src}/${e.sport}/${e.dst}/${e.dport}/${e.replyDst}/${e.replyDport}`;

/** The time of day `proc` reads, for a reply's `Date`. */
const dateFor = (proc: ProcessInfo | undefined): Date =>
  processDate(proc, Date.now(), monotonicMs());

/** The ports setup.sh redirects to (TCP_PORT, DNS_PORT, UDP_PORT there; a contract test checks). */
export const CAPTURE_PORTS = { tcp: 15001, dns: 15053, udp: 15002 } as const;

/** What a table line of a flow redirected to the capture's TCP port holds (its reply's source). */
const TCP_REPLY = ` sport=${CAPTURE_PORTS.tcp} `;

const BODY_SAMPLE_MAX = 64 * 1024;
/** After this many sample bytes in all, samples shrink to 1 KiB each. */
const BODY_SAMPLE_BUDGET = 16 * 1024 * 1024;
/** Raw TCP and UDP payloads kept for judging (a raw stream is classified within its first 4 KiB). */
const RAW_SAMPLE_MAX = 4096;
/**
 * Bytes after a query's question that carry nothing: an empty EDNS OPT record. Anything more (a
 * cookie, padding, other records, data) is kept: a token fits in an OPT option.
 */
const DNS_USUAL_EXTRA = 11;
/** How long a connection may stay silent before we record what we have. */
const IDLE_MS = 1500;
/** The longest we hold any one connection. */
const CONNECTION_MAX_MS = 10_000;
const MAX_CONNECTIONS = 4096;
/**
 * How long a poll waits before it records a redirected connection no lookup claimed: a closed
 * one (reset) will never be read; an open one may still be waiting to be accepted.
 */
const ORPHAN_CLOSED_MS = 1000;
const ORPHAN_OPEN_MS = 15_000;
/**
 * Polls in a row that must miss a flow, over at least this long, before it counts as gone from
 * the table: a read of /proc while the table changes can skip entries, and a skip must neither
 * forget a claimed flow (it would come back unclaimed and be recorded twice) nor record a waiting
 * one before its lookup.
 */
const GONE_AFTER_MISSES = 3;
const GONE_AFTER_MS = 1000;
/**
 * A query repeated byte for byte by the same process from the same socket to the same resolver
 * within this long is a retransmission of one attempt: answered each time, recorded once. The
 * sandbox's clock runs fast, so a resolver's first timeout (two seconds in c-ares) passes in
 * 40 ms of real time, less than a reply held for its lookups may take; its last retry comes
 * within 0.3 s. A process never outlives its step, so a repeat is never hidden in another phase.
 */
const DNS_RETRANSMIT_MS = 3000;
/** Queries remembered for that at once (the oldest are forgotten first). */
const DNS_RETRANSMIT_MAX = 8192;
/** TLS connections intercepted at once (the rest get a handshake failure, counted). */
const MAX_INTERCEPTED = 256;
/**
 * A DNS reply waits for the observer's lookup of the client's socket (a client that has its
 * answer closes the socket, and a closed socket has no owner), but never longer than this.
 */
const DNS_REPLY_DEADLINE_MS = 100;
/** Datagrams (DNS or not) waiting for their conntrack entry and owner at once. */
const MAX_DATAGRAMS_WAITING = 32_768;
/** Receive buffer asked for the UDP sockets (the kernel caps it at net.core.rmem_max). */
const UDP_RECV_BUFFER = 8 * 1024 * 1024;
/**
 * DNS replies due at once (one observer answer releases every query waiting on it) go out this
 * many a millisecond: a client with many queries in flight on one socket would otherwise lose
 * replies to its receive buffer (212 KiB by default, under 200 replies).
 */
const REPLY_BURST = 32;

/** How recently polls of the connection table listed a flow (see GONE_AFTER_MISSES). */
export interface Listing {
  /** Polls in a row that have not listed it. */
  missed: number;
  /** When one last did. */
  listed: number;
  /** When the capture's own socket of the flow closed (a flow recorded from its entry: then). */
  released?: number;
  /** The closed state (FINAL_STATES) its entry was last seen in, and from when. */
  finalState?: string;
  finalSince?: number;
  /** Seen open after the capture's socket settled: it closed later, on the client's terms. */
  openAfterRelease?: boolean;
  /**
   * Once its entry is closed and the capture's socket settled: a time its entry expires before,
   * from the state's full timeout and every sighting since (see `reopened`).
   */
  expiresBefore?: number;
}

/** States a connection's entry only leaves by expiring, with no packets left to refresh it. */
const FINAL_STATES = new Set(['TIME_WAIT', 'CLOSE']);
/**
 * How long after the capture's socket closed its peer's last packets may still come: the kernel
 * answers at once (an ACK of the capture's FIN, a reset to what it sent after the client had
 * gone), and each refreshes the entry's timeout.
 */
const RELEASE_SETTLE_MS = 50;
/** The table counts in kernel ticks. */
const TICK_SLACK_MS = 50;

/** The kernel's timeouts of the closed states, in ms (net.netfilter.nf_conntrack_tcp_timeout_*). */
export type FinalTimeouts = Partial<Record<string, number>>;

/**
 * Whether a claimed flow's entry now belongs to another connection on the same addresses and
 * ports: a package can close one it made earlier and connect again from the same port, reset
 * before the capture accepts it, and the table shows one flow. Once closed and settled, an entry
 * keeps its state and only counts down, so one in another state, or that expires later than it
 * could have, is another connection. The bound (`expiresBefore`) starts at the state's full
 * timeout after the last packet the old connection could have had, and every sighting tightens
 * it; `read` is when the read of the table began and ended.
 */
export function reopened(
  claim: Pick<
    Listing,
    'expiresBefore' | 'released' | 'finalState' | 'finalSince' | 'openAfterRelease'
  >,
  e: ConntrackEntry,
  read: { from: number; to: number },
  timeouts: FinalTimeouts = {},
): boolean {
  const settled = claim.released !== undefined && read.from >= claim.released + RELEASE_SETTLE_MS;
  if (settled && claim.finalState !== undefined) {
    if (e.state !== claim.finalState) return true;
    // It expires no sooner than the read's start plus the whole seconds printed (and a kernel
    // tick or two: the table counts in jiffies).
    if (
      claim.expiresBefore !== undefined &&
      e.timeout !== undefined &&
      read.from + e.timeout * 1000 >= claim.expiresBefore + TICK_SLACK_MS
    )
      return true;
  }
  if (e.state === undefined || !FINAL_STATES.has(e.state)) {
    if (settled) claim.openAfterRelease = true;
    return false;
  }
  if (claim.finalState !== e.state) {
    claim.finalState = e.state;
    claim.finalSince = read.to;
  }
  if (!settled || claim.released === undefined) return false;
  const full = timeouts[e.state];
  // The old connection's last packet: within the settling time of the capture's close (a reset
  // from the client closed the entry before the socket, a FIN exchange closes both at once),
  // unless the entry was still open after that, and closed later.
  const quiet = claim.openAfterRelease
    ? (claim.finalSince ?? read.to)
    : claim.released + RELEASE_SETTLE_MS;
  let bound = claim.expiresBefore ?? (full !== undefined ? quiet + full : Infinity);
  if (e.timeout !== undefined) bound = Math.min(bound, read.to + (e.timeout + 1) * 1000);
  claim.expiresBefore = bound;
  return false;
}

/** The closed states' timeouts of this namespace; one it cannot read is left out (no bound). */
async function finalTimeouts(): Promise<FinalTimeouts> {
  const out: FinalTimeouts = {};
  for (const [state, name] of [
    ['CLOSE', 'close'],
    ['TIME_WAIT', 'time_wait'],
  ] as const) {
    try {
      const v = Number(
        (await readFile(`/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_${name}`, 'utf8')).trim(),
      );
      if (Number.isInteger(v) && v > 0) out[state] = v * 1000;
    } catch {
      // Bounded by the sightings alone.
    }
  }
  return out;
}

/**
 * What makes two DNS datagrams one query sent twice: the same bytes (id included) from the same
 * process and socket to the same resolver. Hashed: a query may be 64 KiB, and thousands are
 * remembered.
 */
function dnsKey(
  msg: Buffer,
  from: { address: string; port: number },
  resolver: string,
  resolverPort: number,
  proc: ProcessInfo,
): string {
  return createHash('sha256')
    .update(`${proc.pid}\0${proc.startMs}\0${from.address}\0${from.port}\0`)
    .update(`${resolver}\0${resolverPort}\0`)
    .update(msg)
    .digest('base64');
}

/** A sender that spreads bursts of datagrams over time, in order. */
function pacedSender(sock: UdpSocket): (reply: Buffer, port: number, address: string) => void {
  const queue: [Buffer, number, string][] = [];
  let scheduled = false;
  const drain = () => {
    scheduled = false;
    for (const [reply, port, address] of queue.splice(0, REPLY_BURST))
      sock.send(reply, port, address);
    if (queue.length > 0) {
      scheduled = true;
      setTimeout(drain, 1);
    }
  };
  return (reply, port, address) => {
    queue.push([reply, port, address]);
    if (!scheduled) {
      scheduled = true;
      setImmediate(drain);
    }
  };
}

function plainAddress(a: string | undefined): string {
  if (!a) return '';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

export class Capture {
  readonly sink: EventSink;
  readonly names: SyntheticAddresses;
  /** The TLDs that exist (from the Public Suffix List); without them only special-use names are NXDOMAIN. */
  private readonly tlds: ReadonlySet<string> | undefined;
  /** The Public Suffix List's rules, for where a domain's MX and TXT records are. */
  private readonly suffixes: ReadonlySet<string> | undefined;
  readonly conntrack = new ConntrackReader();
  readonly observer: ObserverLink;
  /** The run's CA: TLS connections are answered with its certificates and read (none: not). */
  readonly ca: RunCa | undefined;
  /** Open connections, to be recorded at a flush even if the client still holds them. */
  private readonly open = new Set<() => void>();
  /** Records waiting on a conntrack or observer lookup; a flush waits for them. */
  private readonly inflight = new Set<Promise<unknown>>();
  private sampleBudget = BODY_SAMPLE_BUDGET;
  private readonly icmpSeen = new Map<string, Set<number>>();
  /**
   * Redirected connections a lookup found (flowId), while conntrack still lists them: how many
   * polls in a row have missed each.
   */
  private readonly claimed = new Map<string, Listing>();
  /**
   * Redirected connections no lookup has found yet: their entries, when a poll first saw each,
   * and how many polls in a row have missed it since.
   */
  private readonly unclaimed = new Map<string, Listing & { seen: number; entry: ConntrackEntry }>();
  /** DNS queries recorded lately (see `dnsKey`), with when each was received. */
  private readonly dnsRecent = new Map<string, number>();
  /** The kernel's timeouts of closed TCP entries (see `reopened`). */
  private finalTimeouts: FinalTimeouts = {};
  private readonly icmpReported = new Map<string, number>();
  private droppedReported = { ipv4: 0, ipv6: 0 };
  /** Attempts never asked about: refused connections, or too many datagrams waiting. */
  private unasked = 0;
  private datagramsWaiting = 0;
  /** TLS connections being intercepted now. */
  private intercepting = 0;
  /** Kernel counters at start, so the log says what was lost during this run. */
  private baseline = { udpErrors: 0, conntrackDrops: 0 };

  constructor(
    eventsPath: string,
    opts: {
      tlds?: ReadonlySet<string>;
      suffixes?: ReadonlySet<string>;
      blocks?: SyntheticBlocks;
      ca?: RunCa;
    } = {},
  ) {
    this.names = new SyntheticAddresses(opts.blocks);
    this.ca = opts.ca;
    this.tlds = opts.tlds;
    this.suffixes = opts.suffixes;
    this.sink = new EventSink(eventsPath);
    this.observer = new ObserverLink(this.sink);
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
    return p;
  }

  async start(): Promise<void> {
    this.finalTimeouts = await finalTimeouts();
    this.baseline = { udpErrors: await udpReceiveErrors(), conntrackDrops: await conntrackDrops() };
  }

  /**
   * A flow's conntrack entry; a TCP one is then the capture's to record (see `pollTable`, which
   * reads only TCP flows: a datagram is recorded as it comes).
   */
  private find(l: Lookup): Promise<ConntrackEntry | undefined> {
    return this.conntrack.lookup(l).then((ct) => {
      if (ct?.proto === 'tcp') this.claimed.set(flowId(ct), { missed: 0, listed: monotonicMs() });
      return ct;
    });
  }

  /**
   * Conntrack entry of a redirected flow, then the sandbox process that owns its socket (asked
   * for a connected socket by the port it aimed at too; a datagram socket is one per local port).
   */
  private lookup(
    proto: 'tcp' | 'udp',
    clientPort: number,
    capturePort: number,
    ask: boolean,
    ends: Ends,
  ): Promise<{ ct: ConntrackEntry | undefined; proc: ProcessInfo | undefined }> {
    return this.track(
      this.find({ proto, clientPort, capturePort, ...ends }).then(async (ct) => {
        if (!ct) return { ct, proc: undefined }; // counted as a conntrack miss
        if (!ask) {
          this.unasked++;
          return { ct, proc: undefined };
        }
        const rport = proto === 'tcp' ? ct.dport : undefined;
        return { ct, proc: await this.observer.who(proto, ct.sport, rport) };
      }),
    );
  }

  /**
   * A DNS query's conntrack entry and owner, looked up at once and in parallel (its reply waits
   * for them): the client port the capture sees is the client's own unless conntrack remapped it
   * (one socket sending to several destinations: their reply tuples would collide), and then the
   * owner is asked again by the client's own port. Other datagrams, which wait for no reply, are
   * looked up in turn (`lookup`): a flood from one socket to many ports is all remapped, and
   * asking by the remapped ports would only load the observer.
   */
  private lookupDatagram(
    clientPort: number,
    capturePort: number,
    rport: number | undefined,
    ask: boolean,
    ends: Ends,
  ): Promise<{ ct: ConntrackEntry | undefined; proc: ProcessInfo | undefined }> {
    const ctP = this.find({ proto: 'udp', clientPort, capturePort, ...ends });
    if (!ask) this.unasked++;
    const first = ask ? this.observer.who('udp', clientPort, rport) : Promise.resolve(undefined);
    return this.track(
      Promise.all([ctP, first]).then(async ([ct, proc]) => {
        if (ct && ask && ct.sport !== clientPort)
          return { ct, proc: await this.observer.who('udp', ct.sport, rport) };
        return { ct, proc };
      }),
    );
  }

  // ---- DNS ----

  answerFor(qname: string, qtype: number): { answer: DnsAnswer; text: string } {
    const type = qtypeName(qtype);
    if (type !== 'PTR' && isNxdomain(qname, this.tlds))
      return { answer: { type: 'none', rcode: 3 }, text: 'NXDOMAIN' };
    // A TLD on its own exists but has no address.
    if (!qname.replace(/\.$/, '').includes('.'))
      return { answer: { type: 'none' }, text: 'NOERROR empty' };
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
    } else if ((type === 'MX' || type === 'TXT') && this.isDomainApex(qname)) {
      // A registered domain has mail and an SPF record, as nearly every real one does; a name
      // below it has neither. The mail host resolves like any other name.
      const domain = qname.toLowerCase().replace(/\.$/, '');
      const mail = siteMail(domain);
      if (type === 'MX') {
        const { preference, exchange } = mail;
        return { answer: { type: 'MX', preference, exchange }, text: `${preference} ${exchange}` };
      }
      return { answer: { type: 'TXT', text: mail.spf }, text: mail.spf };
    }
    return { answer: { type: 'none' }, text: 'NOERROR empty' };
  }

  /** Whether `qname` is a registrable domain itself (`example.co.uk`, not `www.example.co.uk`). */
  private isDomainApex(qname: string): boolean {
    const name = qname.toLowerCase().replace(/\.$/, '');
    return registrableDomain(name, this.suffixes) === name;
  }

  /** A DNS query's answer, or undefined when the message is not a query we read. */
  answerDns(
    msg: Buffer,
  ): { reply: Buffer; qname: string; qtype: string; text: string; extra?: Buffer } | undefined {
    try {
      const q = parseQuery(msg);
      const { answer, text } = this.answerFor(q.qname, q.qtype);
      // More than a query's usual additional record after the question: kept, it may be data.
      const extra =
        msg.length - q.questionEnd > DNS_USUAL_EXTRA
          ? Buffer.from(msg.subarray(q.questionEnd, q.questionEnd + RAW_SAMPLE_MAX))
          : undefined;
      return {
        reply: buildResponse(msg, q, answer),
        qname: q.qname,
        qtype: qtypeName(q.qtype),
        text,
        ...(extra ? { extra } : {}),
      };
    } catch (e) {
      if (!(e instanceof DnsParseError)) throw e;
      return undefined;
    }
  }

  recordDns(
    a: { qname: string; qtype: string; text: string; extra?: Buffer },
    t: number,
    resolver: string,
    resolverPort: number,
    transport: 'udp' | 'tcp',
    proc: ProcessInfo | undefined,
  ): void {
    this.sink.record({
      kind: 'dns',
      t,
      qname: a.qname,
      qtype: a.qtype,
      resolver,
      resolverPort,
      transport,
      answer: a.text,
      ...(a.extra ? { extraHex: a.extra.toString('hex') } : {}),
      ...(proc ? { proc } : {}),
    });
  }

  startDns(host: string): Promise<UdpSocket> {
    const sock = createSocket({
      type: host.includes(':') ? 'udp6' : 'udp4',
      recvBufferSize: UDP_RECV_BUFFER,
    });
    const send = pacedSender(sock);
    sock.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
      const t = monotonicMs();
      const answered = this.answerDns(msg);
      if (this.datagramsWaiting >= MAX_DATAGRAMS_WAITING) {
        // Too many waiting: answered at once, recorded with what is known without lookups.
        this.sink.hitBound('datagrams', MAX_DATAGRAMS_WAITING);
        this.unasked++;
        if (answered) {
          send(answered.reply, rinfo.port, rinfo.address);
          this.recordDns(answered, t, '', 0, 'udp', undefined);
        } else this.sink.countOnly('udp', 'too many datagrams waiting for their destination');
        return;
      }
      this.datagramsWaiting++;
      // The reply waits for the lookups (never past the deadline), the record for their end.
      const found = this.lookupDatagram(rinfo.port, CAPTURE_PORTS.dns, 53, true, {
        clientAddress: rinfo.address,
        captureAddress: host,
      });
      const sample = answered ? undefined : Buffer.from(msg.subarray(0, RAW_SAMPLE_MAX));
      if (answered) {
        let sent = false;
        const reply = () => {
          if (sent) return;
          sent = true;
          clearTimeout(timer);
          send(answered.reply, rinfo.port, rinfo.address);
        };
        const timer = setTimeout(reply, DNS_REPLY_DEADLINE_MS);
        void found.then(reply);
      }
      void found.then(({ ct, proc }) => {
        this.datagramsWaiting--;
        if (answered) {
          const resolver = ct?.dst ?? plainAddress(host);
          const port = ct?.dport ?? 53;
          // Only a process the observer named can be said to have asked twice.
          if (!proc || !this.retransmission(dnsKey(msg, rinfo, resolver, port, proc), t))
            this.recordDns(answered, t, resolver, port, 'udp', proc);
        } else if (sample) this.recordDatagram(sample, msg.length, t, ct, proc);
      });
    });
    return bind(sock, host, CAPTURE_PORTS.dns);
  }

  /**
   * Whether a query repeats one recorded within DNS_RETRANSMIT_MS of it (a resolver that gave up
   * waiting for the first answer), which is then not recorded again; else it is remembered.
   */
  retransmission(key: string, t: number): boolean {
    const before = this.dnsRecent.get(key);
    if (before !== undefined && Math.abs(t - before) < DNS_RETRANSMIT_MS) return true;
    this.dnsRecent.delete(key);
    if (this.dnsRecent.size >= DNS_RETRANSMIT_MAX) {
      const oldest = this.dnsRecent.keys().next().value;
      if (oldest !== undefined) this.dnsRecent.delete(oldest);
    }
    this.dnsRecent.set(key, t);
    return false;
  }

  // ---- UDP (not DNS) ----

  recordDatagram(
    sample: Buffer,
    bytes: number,
    t: number,
    ct: ConntrackEntry | undefined,
    proc: ProcessInfo | undefined,
  ): void {
    if (!ct) return; // direct loopback traffic to our port: not egress (counted as a miss)
    const host = this.names.nameFor(ct.dst);
    this.sink.record({
      kind: 'udp',
      t,
      ip: ct.dst,
      port: ct.dport,
      bytes,
      sampleHex: sample.subarray(0, RAW_SAMPLE_MAX).toString('hex'),
      ...(host ? { host } : {}),
      ...(proc ? { proc } : {}),
    });
  }

  startUdpSink(host: string): Promise<UdpSocket> {
    const sock = createSocket({
      type: host.includes(':') ? 'udp6' : 'udp4',
      recvBufferSize: UDP_RECV_BUFFER,
    });
    sock.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
      const t = monotonicMs();
      // Only the sample is kept while the lookups run.
      const sample = Buffer.from(msg.subarray(0, RAW_SAMPLE_MAX));
      const ask = this.datagramsWaiting < MAX_DATAGRAMS_WAITING;
      if (!ask) this.sink.hitBound('datagrams', MAX_DATAGRAMS_WAITING);
      this.datagramsWaiting++;
      const found = this.lookup('udp', rinfo.port, CAPTURE_PORTS.udp, ask, {
        clientAddress: rinfo.address,
        captureAddress: host,
      });
      void found.then(({ ct, proc }) => {
        this.datagramsWaiting--;
        this.recordDatagram(sample, msg.length, t, ct, proc);
      });
    });
    return bind(sock, host, CAPTURE_PORTS.udp);
  }

  // ---- TCP ----

  startTcp(): Promise<void> {
    // Half-open allowed: a client that sends and half-closes at once (`end(data)`) must still be
    // open while the observer looks its socket up; the capture ends its side after that.
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: false }, (s) =>
      this.onConnection(s),
    );
    server.maxConnections = MAX_CONNECTIONS;
    server.on('drop', () => {
      // Refused, but its destination is still in conntrack: the next poll of the table records
      // it (an unclaimed flow, see pollTable), without its process.
      this.sink.hitBound('connections', MAX_CONNECTIONS);
      this.unasked++;
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
    // A socket reset before it was accepted has no addresses: the next poll of the table records
    // its flow, unclaimed (see pollTable).
    const ends = endsOf(sock);
    const found = ends
      ? this.lookup('tcp', clientPort, CAPTURE_PORTS.tcp, true, ends)
      : Promise.resolve({ ct: undefined, proc: undefined });
    sock.once('close', () => {
      void found.then(({ ct }) => {
        const claim = ct && this.claimed.get(flowId(ct));
        if (claim) claim.released = monotonicMs();
      });
    });
    const stream = new StreamClassifier();
    let done = false;
    let idle: NodeJS.Timeout | undefined;
    const deadline = setTimeout(() => finish('timeout'), CONNECTION_MAX_MS);

    const finish = (
      why: 'idle' | 'timeout' | 'end' | 'flush' | StreamKind,
      reply?: Buffer | ((proc: ProcessInfo | undefined) => Buffer),
    ) => {
      if (done) return;
      done = true;
      this.open.delete(finishAtFlush);
      clearTimeout(deadline);
      clearTimeout(idle);
      const snapshot = stream.bytes;
      const bytesOut = stream.bytesSeen;
      const head = stream.httpHead;
      if (why !== 'dns-tcp') {
        void this.track(
          found.then(({ ct, proc }) => {
            if (!ct) return; // a direct loopback connection to our port: not egress
            this.recordStream(t, ct, snapshot, bytesOut, head, proc);
          }),
        );
      }
      // Answer only once the observer has looked up the client's socket: a client that has its
      // answer closes, and a closed socket has no owner to find.
      void found.then(({ proc }) => {
        if (reply && !sock.destroyed) sock.end(typeof reply === 'function' ? reply(proc) : reply);
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
      if (done) return;
      armIdle();
      const v = stream.feed(d);
      if (v.status === 'done') {
        if (v.kind === 'tls' && this.ca && v.hello.status === 'ok' && this.canIntercept()) {
          // Taken over: the interception records the connection and closes it.
          done = true;
          this.open.delete(finishAtFlush);
          clearTimeout(deadline);
          clearTimeout(idle);
          sock.removeAllListeners('data');
          this.interceptStream(sock, stream, v.hello, found, t);
          return;
        }
        if (v.kind === 'tls') finish('tls', TLS_HANDSHAKE_FAILURE_ALERT);
        else if (v.kind === 'http') {
          const request = v.head;
          // Dated by the asking process's clock, once the observer has named it.
          finish('http', (proc) => http1Reply(siteReply(request, RUN_REPLY_SEED, dateFor(proc))));
        } else finish(v.kind);
        return;
      }
      if (v.reading !== 'unknown') return;
      // Neither TLS nor HTTP: DNS over TCP if it went to port 53. Each whole query it holds is
      // answered and recorded as DNS; what follows them (bytes that are no query, or sent after
      // the answers) is recorded as the connection's own. Asked once the destination is known,
      // with the bytes kept by then.
      void found.then(({ ct, proc }) => {
        if (done || !ct || ct.dport !== 53) return;
        const dns = stream.atDnsPort();
        if (dns.status !== 'done' || dns.kind !== 'dns-tcp') return;
        const kept = stream.bytes;
        const replies: Buffer[] = [];
        let off = 0;
        while (kept.length - off >= 2) {
          const len = kept.readUInt16BE(off);
          if (kept.length - off < 2 + len) break;
          const answered = this.answerDns(kept.subarray(off + 2, off + 2 + len));
          if (!answered) break;
          this.recordDns(answered, t, ct.dst, ct.dport, 'tcp', proc);
          const framed = Buffer.alloc(2 + answered.reply.length);
          framed.writeUInt16BE(answered.reply.length, 0);
          answered.reply.copy(framed, 2);
          replies.push(framed);
          off += 2 + len;
        }
        if (replies.length === 0) return;
        this.dnsTcpRest(sock, t, ct, proc, kept.subarray(off), stream.bytesSeen - kept.length);
        finish('dns-tcp', Buffer.concat(replies));
      });
    });
    sock.on('end', () => finish('end'));
    sock.on('error', () => finish('end'));
  }

  /**
   * What a DNS-over-TCP connection carries besides its queries: the bytes after them (`rest`, and
   * `unkept` more the classifier did not keep), and all it sends once answered. Recorded as the
   * connection's own stream when it closes (at most a second after its answers), if any.
   */
  private dnsTcpRest(
    sock: Socket,
    t: number,
    ct: ConntrackEntry,
    proc: ProcessInfo | undefined,
    rest: Buffer,
    unkept: number,
  ): void {
    const sample = [Buffer.from(rest.subarray(0, RAW_SAMPLE_MAX))];
    let sampled = sample[0]?.length ?? 0;
    let total = rest.length + unkept;
    const record = () => {
      if (total > 0) this.recordStream(t, ct, Buffer.concat(sample), total, undefined, proc);
    };
    if (sock.destroyed) {
      record();
      return;
    }
    sock.on('data', (d: Buffer) => {
      total += d.length;
      if (sampled >= RAW_SAMPLE_MAX) return;
      const part = Buffer.from(d.subarray(0, RAW_SAMPLE_MAX - sampled));
      sample.push(part);
      sampled += part.length;
    });
    void this.track(
      new Promise<void>((resolve) => {
        sock.once('close', () => {
          record();
          resolve();
        });
      }),
    );
  }

  /**
   * Whether another TLS connection may be intercepted now: each holds a TLS session (and an
   * HTTP/2 one) for up to CONNECTION_MAX_MS, so at most MAX_INTERCEPTED at once; past that, TLS
   * gets the handshake failure as without interception (bound `intercepted`).
   */
  private canIntercept(): boolean {
    if (this.intercepting < MAX_INTERCEPTED) return true;
    this.sink.hitBound('intercepted', MAX_INTERCEPTED);
    return false;
  }

  /** Answer a TLS connection as the server it asked for, and record what it sent inside. */
  private interceptStream(
    sock: Socket,
    stream: StreamClassifier,
    hello: { sni?: string; alpn?: string[] },
    found: Promise<{ ct: ConntrackEntry | undefined; proc: ProcessInfo | undefined }>,
    t: number,
  ): void {
    const ca = this.ca;
    if (!ca) return;
    const clientHello = Buffer.from(stream.bytes);
    const ready = found.then(({ ct }) => certificateName(hello.sni, ct?.dst ?? '0.0.0.0'));
    let settle: (r: Intercepted) => void = () => undefined;
    const result = new Promise<Intercepted>((resolve) => (settle = resolve));
    this.intercepting++;
    let asker: ProcessInfo | undefined;
    void found.then(({ proc }) => (asker = proc));
    const end = intercept(
      sock,
      clientHello,
      stream.bytesSeen,
      ca,
      ready,
      (r) => {
        this.intercepting--;
        settle(r);
      },
      () => dateFor(asker),
    );
    this.open.add(end);
    // Recorded when it ends; a flush ends it first, then waits for the record.
    void this.track(
      result.then(async (r) => {
        this.open.delete(end);
        const { ct, proc } = await found;
        if (!ct) return; // a direct loopback connection to our port: not egress
        this.recordIntercepted(t, ct, clientHello, hello, r, proc);
      }),
    );
  }

  recordIntercepted(
    t: number,
    ct: ConntrackEntry,
    clientHello: Buffer,
    hello: { sni?: string; alpn?: string[] },
    r: Intercepted,
    proc: ProcessInfo | undefined,
  ): void {
    const host = this.names.nameFor(ct.dst);
    const head = r.head;
    const base = {
      kind: 'tls' as const,
      t,
      ip: ct.dst,
      port: ct.dport,
      ...(host ? { host } : {}),
      ...(proc ? { proc } : {}),
      ...(hello.sni ? { sni: hello.sni } : {}),
      ...(hello.alpn ? { alpn: hello.alpn } : {}),
      intercept: r.outcome,
      ...(r.alert ? { tlsAlert: r.alert } : {}),
    };
    // The connection's bytes, its ClientHello and (HTTP/2) its raw frames go with its first
    // request.
    const first = {
      bytesOut: r.bytesOut,
      firstBytesHex: clientHello.subarray(0, RAW_SAMPLE_MAX).toString('hex'),
      ...(r.h2Raw ? { innerHex: h2Payloads(r.h2Raw).toString('hex') } : {}),
    };
    if (r.h2 && r.h2.length > 0) {
      // Each stream an event of its own.
      r.h2.forEach((q, i) =>
        this.sink.record({
          ...base,
          ...(i === 0 ? first : { bytesOut: 0 }),
          ...this.sampledFields(q.body, {
            method: q.method,
            path: q.path,
            httpVersion: '2',
            headers: q.headers,
            bodyBytes: q.bodyBytes,
            ...(h2Target(q, hello.sni) !== undefined ? { httpHost: h2Target(q, hello.sni) } : {}),
          }),
        }),
      );
      return;
    }
    if (head && !head.websocket) {
      const all = r.trailing ? Buffer.concat([r.inner, r.trailing]) : r.inner;
      if (this.recordRequests(base, first, all, r.innerSeen + (r.trailing?.length ?? 0))) return;
    }
    const inner = head ? this.httpFields(r.inner, r.innerSeen, head, r.wsPayload) : {};
    this.sink.record({
      ...base,
      ...first,
      ...inner,
      ...(!head && !r.h2 && r.inner.length > 0
        ? { innerHex: r.inner.subarray(0, RAW_SAMPLE_MAX).toString('hex') }
        : {}),
    });
  }

  /**
   * Every HTTP/1.x request in a connection's bytes (a pipelining client sends the next before the
   * answer to the first), an event each, the first with `first`'s fields; what follows them
   * that is no request is kept raw on the last. `seen` bounds the body sizes the heads claim.
   * False when the bytes hold no request.
   */
  private recordRequests(
    base: Omit<StreamEvent, 'seq' | 't' | 'bytesOut'> & { t: number },
    first: Partial<StreamEvent> & { bytesOut: number },
    buf: Buffer,
    seen: number,
  ): boolean {
    const { requests, rest } = splitRequests(buf);
    requests.forEach((q, i) =>
      this.sink.record({
        ...base,
        ...(i === 0 ? first : { bytesOut: 0 }),
        ...this.sampledFields(q.body, {
          method: q.head.method,
          path: q.head.path,
          httpVersion: q.head.httpVersion,
          headers: q.head.headers,
          // What the head says, at most what the connection carried.
          bodyBytes: Math.min(q.bodyBytes, seen),
          ...(q.head.host !== undefined ? { httpHost: q.head.host } : {}),
        }),
        ...(i === requests.length - 1 && rest.length > 0
          ? { innerHex: rest.subarray(0, BODY_SAMPLE_MAX).toString('hex') }
          : {}),
      }),
    );
    return requests.length > 0;
  }

  /** What an event keeps of an HTTP request: its head and a bounded sample of its body. */
  private httpFields(
    buf: Buffer,
    seen: number,
    head: HttpRequestHead,
    wsPayload?: Buffer,
  ): Partial<StreamEvent> {
    return this.sampledFields(wsPayload ?? buf.subarray(head.headLength), {
      method: head.method,
      path: head.path,
      httpVersion: head.httpVersion,
      headers: head.headers,
      bodyBytes: wsPayload ? wsPayload.length : Math.max(0, seen - head.headLength),
      ...(head.host !== undefined ? { httpHost: head.host } : {}),
      ...(head.websocket ? { websocket: true } : {}),
    });
  }

  /** Request fields with a sample of the body, within the capture's sample budget. */
  private sampledFields(body: Buffer, fields: Partial<StreamEvent>): Partial<StreamEvent> {
    const max = this.sampleBudget > 0 ? BODY_SAMPLE_MAX : 1024;
    if (max < BODY_SAMPLE_MAX && body.length > max)
      this.sink.hitBound('body-samples', BODY_SAMPLE_BUDGET);
    const sample = body.subarray(0, max);
    this.sampleBudget -= sample.length;
    return { ...fields, ...(sample.length > 0 ? { bodySample: sample.toString('base64') } : {}) };
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
          // The ClientHello is plaintext: a secret can ride in any extension, or follow it.
          firstBytesHex: buf.subarray(0, RAW_SAMPLE_MAX).toString('hex'),
        });
        return;
      }
    }
    if (head) {
      const { bytesOut: sent, ...where } = base;
      if (
        !head.websocket &&
        this.recordRequests({ kind: 'http', t, ...where }, { bytesOut: sent }, buf, sent)
      )
        return;
      this.sink.record({ kind: 'http', t, ...base, ...this.httpFields(buf, bytesOut, head) });
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

  /**
   * Reads the whole table: ICMP echoes, which nothing else reports, and redirected connections no
   * lookup claimed. A connection the capture never got to read (reset while it waited to be
   * accepted, or refused past MAX_CONNECTIONS) is recorded from its entry alone, with no bytes
   * and no process: once it is closed (CLOSE) and a poll has seen it for ORPHAN_CLOSED_MS, else
   * after ORPHAN_OPEN_MS or at the `final` poll, when every lookup has ended.
   */
  async pollTable(final = false): Promise<void> {
    let entries: ConntrackEntry[];
    const from = monotonicMs();
    try {
      // Only these lines are read whole (ICMP, and what was redirected to the capture's TCP
      // port): a table the package filled with other flows costs a test per line.
      entries = await this.conntrack.readAll(
        (line) => line.includes(' icmp') || line.includes(TCP_REPLY),
      );
    } catch {
      return;
    }
    const now = monotonicMs();
    const listed = new Set<string>();
    let local: Set<string> | undefined;
    for (const e of entries) {
      if (
        e.proto === 'tcp' &&
        e.replySport === CAPTURE_PORTS.tcp &&
        LOOPBACK.has(e.replySrc ?? '')
      ) {
        const id = flowId(e);
        listed.add(id);
        const claim = this.claimed.get(id);
        if (claim && !reopened(claim, e, { from, to: now }, this.finalTimeouts)) {
          claim.missed = 0;
          claim.listed = now;
          continue;
        }
        // Another connection on a claimed flow's ends is a flow no lookup has found.
        if (claim) this.claimed.delete(id);
        const seen = this.unclaimed.get(id)?.seen ?? now;
        this.unclaimed.set(id, { seen, entry: e, missed: 0, listed: now });
        const waited = now - seen;
        if (final || waited >= (e.state === 'CLOSE' ? ORPHAN_CLOSED_MS : ORPHAN_OPEN_MS))
          this.recordOrphan(id);
        continue;
      }
      if (e.proto !== 'icmp' && e.proto !== 'icmpv6') continue;
      local ??= localAddresses();
      // A ping of the sandbox's own address stays in the machine, as on any other (untracked
      // where the raw table exists). Only the destination says so: a source can be forged.
      if (local.has(e.dst)) continue;
      const ids = this.icmpSeen.get(e.dst) ?? new Set<number>();
      ids.add(e.icmpId ?? 0);
      this.icmpSeen.set(e.dst, ids);
    }
    // Recorded when first seen, so the attempt falls in the phase that made it.
    this.reportIcmp();
    // A flow conntrack no longer lists can never be claimed: recorded once it is gone (see
    // GONE_AFTER_MISSES), however few polls saw it (a package that slows the reads must not
    // outlast its entry's timeout), and at the final poll whatever is left.
    const gone = (l: Listing) => ++l.missed >= GONE_AFTER_MISSES && now - l.listed >= GONE_AFTER_MS;
    for (const [id, u] of this.unclaimed)
      if (!listed.has(id) && (gone(u) || final)) this.recordOrphan(id);
    for (const [id, claim] of this.claimed)
      if (!listed.has(id) && gone(claim)) this.claimed.delete(id);
  }

  /** Records an unclaimed redirected connection from its entry, once, unless a lookup found it. */
  private recordOrphan(id: string): void {
    const u = this.unclaimed.get(id);
    this.unclaimed.delete(id);
    if (!u || this.claimed.has(id)) return;
    this.claimed.set(id, { missed: 0, listed: u.listed, released: monotonicMs() });
    this.recordStream(u.seen, u.entry, Buffer.alloc(0), 0, undefined, undefined);
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
    await this.pollTable(true);
    await this.reportDropped();
    this.sink.finish(await this.stats());
  }

  /** What the capture could not see or attribute, since it started. */
  async stats(): Promise<CaptureStats> {
    const link = this.observer.stats;
    return {
      lookups: link.lookups,
      lookupsAnswered: link.lookupsAnswered,
      lookupsTimedOut: link.lookupsTimedOut,
      lookupsSkipped: link.lookupsSkipped,
      lookupsUnasked: link.lookupsUnasked + this.unasked,
      datagramsLost: Math.max(0, (await udpReceiveErrors()) - this.baseline.udpErrors),
      conntrackDrops: Math.max(0, (await conntrackDrops()) - this.baseline.conntrackDrops),
      conntrackMisses: this.conntrack.unresolved,
      observer: this.observer.state,
      observerUnresponsive: this.observer.unresponsiveTimes,
      observerRejected: this.observer.rejected,
    };
  }
}

function bind(sock: UdpSocket, host: string, port: number): Promise<UdpSocket> {
  return new Promise((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(port, host, () => resolve(sock));
  });
}
