/**
 * Terms, defined once and used with the same meaning in code, flags, JSON and docs.
 *
 * - egress attempt: anything a package does that would leave the machine if it were allowed to: a
 *   DNS query, a TCP connection, a UDP datagram, an ICMP echo. In the sandbox none of them leaves;
 *   the capture gateway answers or absorbs them and records each one.
 * - event: the record of one egress attempt, as written by the capture program (`CaptureEvent`).
 * - destination: where an attempt was aimed: `ip` and `port`, and `host` when the package asked
 *   our DNS for the name first (the synthetic address maps back to it).
 * - synthetic address: the IPv4 or IPv6 address the capture's DNS hands out, one per name, so a
 *   later connection names the host it was meant for; drawn per run from eight ordinary-looking
 *   /16s (IPv4) and /48s (IPv6) of public space (src/capture/synthetic.ts). An event with a `host`
 *   went to one; policies match it by name only.
 * - run: one use of the sandbox, identified by a run id; every Docker object of a run carries the
 *   label `phonehome.run=<id>` and a `phonehome.role`.
 * - gateway: the container that owns the network namespace and runs the capture program.
 * - sandbox: the container that shares the gateway's namespace and runs package code as an
 *   unprivileged user.
 * - phase: a step of a check run inside the sandbox, in order: install, import, exercise.
 * - loopback: traffic inside the namespace to 127.0.0.0/8 or ::1; it is not egress.
 * - observer: a process in the sandbox that tells the capture which process owns the socket of
 *   each attempt (the gateway cannot see the sandbox's processes).
 * - attribution: the package (`name@version`) and process an event is charged to.
 * - settle window: how long processes that outlived a step (detached children) are watched before
 *   they are killed; their attempts count for the phase that started them.
 * - step: one command run in the sandbox within a phase (a package's install scripts, a `require()`,
 *   a bin).
 * - capability: what a package's files show it could do (network modules, child_process, eval,
 *   native code, obfuscation, shell install scripts), read without running it. Weak evidence.
 * - declaration: the `egress` field of a package's package.json: what its author says it needs.
 * - policy: the consumer's rules (phonehome.policy.yaml) over shipped defaults: which egress is
 *   allowed, per phase, destination and package.
 * - indicator: a signature or behaviour rule (exfiltration channel, raw IP, data in DNS names…)
 *   applied to every attempt whatever the policy says; shipped as data in policies/.
 * - finding: one judgement of the report: what was seen, the rule or indicator it tripped, its
 *   severity, and the policy entry that would allow it when one may.
 */

export type Phase = 'install' | 'import' | 'exercise';

/** How much a finding matters; the verdict is fail at high or above, warn at low or above. */
export type Severity = 'info' | 'low' | 'medium' | 'high' | 'critical';
export const SEVERITIES: readonly Severity[] = ['info', 'low', 'medium', 'high', 'critical'];

/** Who the sandbox looks like: a developer's laptop or a CI runner (src/sandbox/identity.ts). */
export type IdentityProfile = 'laptop' | 'ci';

export type Capability =
  | 'network'
  | 'child-process'
  | 'dynamic-code'
  | 'dynamic-require'
  | 'native-code'
  | 'minified'
  | 'obfuscated'
  | 'shell-script'
  | 'reads-identity'
  | 'reads-secrets'
  | 'not-scanned';

/** Capabilities that mean code could reach the network one way or another. */
export const NETWORK_CAPABLE: readonly Capability[] = [
  'network',
  'child-process',
  'dynamic-code',
  'dynamic-require',
  'native-code',
  'obfuscated',
  'shell-script',
  'not-scanned',
];
export const PHASES: readonly Phase[] = ['install', 'import', 'exercise'];

export type EventKind =
  | 'dns'
  | 'tcp'
  | 'tls'
  | 'http'
  | 'udp'
  | 'icmp'
  | 'dropped'
  | 'truncated'
  | 'observer'
  | 'bound'
  | 'capture-stats'
  | 'summary';

/**
 * The sandbox process that owned the socket of an attempt, read from /proc by the sandbox's
 * observer while the attempt was in flight.
 */
export interface ProcessInfo {
  pid: number;
  /** Command line, arguments joined by spaces, at most 300 characters. */
  cmd: string;
  /**
   * When the process started, CLOCK_MONOTONIC ms (10 ms resolution): a detached child's attempts
   * count for the phase that started it.
   */
  startMs: number;
  /**
   * `name@version` from the npm lifecycle environment of the process or its nearest parent that
   * has one (npm sets it for every script; a hostile script can forge it for its own children).
   */
  package?: string;
  /** The lifecycle event (`preinstall`, `install`, `postinstall`, …). */
  script?: string;
}

interface EventBase {
  /** Order in which the capture program recorded the event, from 0. */
  seq: number;
  /** CLOCK_MONOTONIC in milliseconds, as read in the gateway (the same kernel clock as the sandbox). */
  t: number;
  kind: EventKind;
}

export interface DnsEvent extends EventBase {
  kind: 'dns';
  /** The name as asked, lower-cased, without the trailing dot. */
  qname: string;
  qtype: string;
  /** The resolver address the query was sent to (the sandbox's configured one, or a hard-coded one). */
  resolver: string;
  resolverPort: number;
  transport: 'udp' | 'tcp';
  /** What the capture answered: a synthetic address, or a note such as 'NOERROR empty'. */
  answer: string;
  /**
   * Hex of what the message carried after its first question, when that is more than an empty
   * EDNS record (11 bytes): data may ride along with a lookup.
   */
  extraHex?: string;
  proc?: ProcessInfo;
}

export interface StreamEvent extends EventBase {
  kind: 'tcp' | 'tls' | 'http';
  ip: string;
  port: number;
  /** The name the package resolved to reach `ip`, when it came from the capture's DNS. */
  host?: string;
  /** Bytes the client sent before the capture closed the connection (bounded by the read window). */
  bytesOut: number;
  /** First bytes, hex, when the protocol was not recognised. */
  firstBytesHex?: string;
  sni?: string;
  alpn?: string[];
  method?: string;
  path?: string;
  httpVersion?: string;
  /** The Host header as sent. */
  httpHost?: string;
  headers?: [string, string][];
  bodyBytes?: number;
  /** Base64 of the first bytes of the request body (at most 64 KiB). */
  bodySample?: string;
  websocket?: boolean;
  /**
   * A TLS connection the capture answered with a certificate of the run's CA: `decrypted` (the
   * handshake completed; method, path, headers and body are what was sent inside) or `refused`
   * (the client would not take the certificate: pinned, its own CA list, a check of its own)
   * or `failed` (the capture found no handshake to agree on: version, ciphers, protocol).
   */
  intercept?: TlsIntercept;
  /** The alert a client that refused the interception sent (`unknown_ca`, …) or `none`; why a handshake failed. */
  tlsAlert?: string;
  /**
   * Decrypted bytes, hex, that no request read holds: the first ones when what was sent inside
   * TLS was not HTTP, what followed the requests read (HTTP/1.1), or the payloads of an HTTP/2
   * connection's frames joined (DATA per stream, PING, GOAWAY, unknown frame types).
   */
  innerHex?: string;
  proc?: ProcessInfo;
}

export type TlsIntercept = 'decrypted' | 'refused' | 'failed';

export interface DatagramEvent extends EventBase {
  kind: 'udp';
  ip: string;
  port: number;
  host?: string;
  bytes: number;
  sampleHex: string;
  proc?: ProcessInfo;
}

export interface IcmpEvent extends EventBase {
  kind: 'icmp';
  ip: string;
  /** Echo requests seen to this destination (distinct echo ids, from conntrack). */
  count: number;
}

export interface DroppedEvent extends EventBase {
  kind: 'dropped';
  family: 'ipv4' | 'ipv6';
  /** Packets that matched the gateway's final DROP rule (no protocol the capture answers). */
  packets: number;
}

/** Written once when the capture stopped keeping details because of its bounds. */
export interface TruncatedEvent extends EventBase {
  kind: 'truncated';
  reason: string;
  /** Attempts seen after truncation, counted per kind; nothing is silently lost. */
  countsByKind: Record<string, number>;
}

/** The link to the sandbox's observer: when it came up, when it was lost, an impostor refused. */
export interface ObserverEvent extends EventBase {
  kind: 'observer';
  /**
   * `unresponsive`: its lookups timed out repeatedly, so the capture stopped waiting for it (later
   * attempts carry no process until it answers again); `responsive`: it answered again.
   */
  status: 'connected' | 'lost' | 'rejected' | 'unresponsive' | 'responsive';
}

export type CaptureEvent =
  | DnsEvent
  | StreamEvent
  | DatagramEvent
  | IcmpEvent
  | DroppedEvent
  | TruncatedEvent
  | ObserverEvent
  | BoundEvent
  | CaptureStatsEvent
  | SummaryEvent;

/**
 * The capture's bounds, each named in a `bound` record when it was hit:
 * - `events`, `bytes`: detailed events in the log, and their bytes;
 * - `destinations`: distinct destinations (and distinct payloads) the capture counts in summaries;
 * - `summary-bytes`: bytes of summary records;
 * - `connections`: TCP connections open at once (more were refused by the capture);
 * - `datagrams`: datagrams waiting for their lookups at once (more were recorded without their
 *   process; DNS queries also without the resolver they were aimed at);
 * - `lookups`: observer lookups in flight at once (more attempts were not asked about);
 * - `body-samples`: bytes of HTTP body samples in all (later samples are cut to 1 KiB);
 * - `intercepted`: TLS connections intercepted at once (more got a handshake failure, as without
 *   interception: their server name is seen, nothing inside);
 * - `per-destination`: detailed events of one destination (more that carried nothing new were
 *   counted in its summary instead: no destination is lost to this one).
 */
export type CaptureBound =
  | 'per-destination'
  | 'events'
  | 'bytes'
  | 'destinations'
  | 'summary-bytes'
  | 'connections'
  | 'datagrams'
  | 'lookups'
  | 'body-samples'
  | 'intercepted';

/**
 * A bound of the capture was hit: some attempts were kept with less detail than the rest (or, for
 * `connections`, refused). Written when the bound is first hit and again at each flush while the
 * count grows; `count` is cumulative since the capture started (readers keep the largest).
 */
export interface BoundEvent extends EventBase {
  kind: 'bound';
  bound: CaptureBound;
  /** The bound's value (events, bytes, destinations, connections, …). */
  limit: number;
  /** Attempts the bound affected so far. */
  count: number;
}

/**
 * What the capture could not see or attribute, cumulative since it started; written at each
 * flush (readers keep the last).
 */
export interface CaptureStatsEvent extends EventBase {
  kind: 'capture-stats';
  /** Attempts the capture saw (detailed, summarised or only counted). */
  attempts: number;
  /** Observer lookups asked (concurrent lookups of one socket count once). */
  lookups: number;
  /** Lookups the observer answered with a process. */
  lookupsAnswered: number;
  /** Lookups the observer did not answer within the lookup timeout. */
  lookupsTimedOut: number;
  /** Attempts not asked about because the observer was not connected, lost or unresponsive. */
  lookupsSkipped: number;
  /** Attempts never asked about: refused connections, too many lookups or datagrams at once. */
  lookupsUnasked: number;
  /**
   * Datagrams the kernel dropped before the capture read them (`Udp: RcvbufErrors` and
   * `Udp6RcvbufErrors` of the namespace, since the capture started).
   */
  datagramsLost: number;
  /** Packets conntrack could not track (table full: drop, early_drop, insert_failed), since start. */
  conntrackDrops: number;
  /** Redirected flows whose conntrack entry was not found (their destination is unknown). */
  conntrackMisses: number;
  /** The observer link now: none (not configured), waiting, connected, unresponsive or lost. */
  observer: 'none' | 'waiting' | 'connected' | 'unresponsive' | 'lost';
  /** How many times the observer became unresponsive. */
  observerUnresponsive: number;
  /** Impostor connections to the observer socket refused. */
  observerRejected: number;
}

/**
 * Attempts to one destination that the log counts instead of keeping each in detail: past the
 * per-destination detail limit (when they carried nothing new) or past the log's hard bounds.
 * One record per destination (and process, and distinct payload past the hard bounds) per flush;
 * `count` is what was counted since the previous record of the same destination (readers add
 * them up). Payload fields (path, headers, samples) describe the first attempt counted, kept
 * when it was not already seen in detail, bounded and small.
 */
export interface SummaryEvent extends EventBase {
  kind: 'summary';
  /** The kind of the attempts counted. */
  of: 'dns' | 'tcp' | 'tls' | 'http' | 'udp' | 'icmp' | 'dropped';
  /** Attempts counted (ICMP: echo requests; dropped: packets). `t` is the time of the first. */
  count: number;
  /** Time of the last attempt counted, when there were several. */
  lastT?: number;
  qname?: string;
  qtype?: string;
  resolver?: string;
  resolverPort?: number;
  transport?: 'udp' | 'tcp';
  ip?: string;
  port?: number;
  host?: string;
  sni?: string;
  family?: 'ipv4' | 'ipv6';
  alpn?: string[];
  method?: string;
  path?: string;
  httpVersion?: string;
  httpHost?: string;
  headers?: [string, string][];
  bodyBytes?: number;
  /** Base64 of the first bytes of the body (at most 1 KiB). */
  bodySample?: string;
  websocket?: boolean;
  intercept?: TlsIntercept;
  tlsAlert?: string;
  innerHex?: string;
  firstBytesHex?: string;
  sampleHex?: string;
  /** A DNS query's data after its question (DnsEvent.extraHex). */
  extraHex?: string;
  /**
   * The process of the attempts counted: `procRef` names it, and the first record with a given
   * `procRef` carries the whole `proc`.
   */
  procRef?: number;
  proc?: ProcessInfo;
}

/** The project folder in the sandbox: the package's tree is installed in its node_modules. */
export const SANDBOX_WORKDIR = '/work';
