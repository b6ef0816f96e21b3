/**
 * Terms, defined once and used with the same meaning in code, flags, JSON and docs.
 *
 * - egress attempt: anything a package does that would leave the machine if it were allowed to: a
 *   DNS query, a TCP connection, a UDP datagram, an ICMP echo. In the sandbox none of them leaves;
 *   the capture gateway answers or absorbs them and records each one.
 * - event: the record of one egress attempt, as written by the capture program (`CaptureEvent`).
 * - destination: where an attempt was aimed: `ip` and `port`, and `host` when the package asked
 *   our DNS for the name first (the synthetic address maps back to it).
 * - synthetic address: the IPv4 (198.18.0.0/15, the benchmarking range) or IPv6 address the
 *   capture's DNS hands out, one per name, so a later connection names the host it was meant for.
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
 * - step: one command run in the sandbox within a phase (`npm rebuild`, a `require()`, a bin).
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

export type Capability =
  | 'network'
  | 'child-process'
  | 'dynamic-code'
  | 'dynamic-require'
  | 'native-code'
  | 'minified'
  | 'obfuscated'
  | 'shell-script'
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
  'dns' | 'tcp' | 'tls' | 'http' | 'udp' | 'icmp' | 'dropped' | 'truncated' | 'observer';

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
  proc?: ProcessInfo;
}

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
  status: 'connected' | 'lost' | 'rejected';
}

export type CaptureEvent =
  | DnsEvent
  | StreamEvent
  | DatagramEvent
  | IcmpEvent
  | DroppedEvent
  | TruncatedEvent
  | ObserverEvent;
