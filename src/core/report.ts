/**
 * The check report: a versioned contract. Events carry their phase and, to the 10 ms, how far into
 * it they were made (never a wall-clock time), and every list is sorted, so two runs of the same
 * package diff cleanly by destination.
 */
import { findBaitLeaks, npmAuthenticatedRead, type Bait } from './bait.js';
import type { SummarisedAttempts } from './bounds.js';
import type { ReportDiff } from './compare.js';
import { formatId } from './package-id.js';
import type {
  Capability,
  CaptureEvent,
  IdentityProfile,
  Phase,
  Severity,
  TlsIntercept,
} from './terms.js';
import { PHASES, SEVERITIES } from './terms.js';

/** 2: findings carry a severity of five levels, the rule that decided them and a suggestion. */
export const REPORT_SCHEMA_VERSION = 2;

export type PhaseStatus = 'completed' | 'failed' | 'timeout' | 'skipped';
export type Verdict = 'pass' | 'warn' | 'fail';

export interface PhaseResult {
  name: Phase;
  status: PhaseStatus;
  durationMs: number;
  /** Why a phase failed or was skipped, in a line. */
  note?: string;
  exitCode?: number | null;
  outputBytes?: number;
  /** Command lines of processes that outlived their step (detached children), at most 20. */
  leftovers?: string[];
  /** What the exercise phase did. */
  calls?: {
    functions: number;
    classes: number;
    calls: number;
    /** Methods of what the calls returned that were called too. */
    methods?: number;
    /** Events emitted on emitters the package exported or gave back. */
    emitted?: number;
    /** Steps taken through iterators the calls gave back. */
    iterated?: number;
    threw: number;
    pending: number;
    bins: number;
  };
}

/**
 * When a step ran, on the sandbox kernel's monotonic clock (the clock capture events use), as the
 * step driver measured it out of the package's reach, and the package it ran for: what an
 * attempt made in the window is charged to. Steps never overlap, and every process of the
 * package's user is killed when a step ends, so nothing of one window acts in another.
 */
export interface PhaseWindow {
  name: Phase;
  /** `name@version`: the package whose install scripts the step ran, or the package it loaded. */
  package: string;
  startMs: number;
  endMs: number;
  /** Who the sandbox looked like, when the run used more than one identity. */
  identity?: IdentityProfile;
}

export interface ReportEvent {
  phase: Phase;
  /**
   * Who the sandbox looked like when the attempt was made (laptop or ci), when the install phase
   * ran under both because install-time code reads what tells them apart.
   */
  identity?: IdentityProfile;
  /**
   * The package charged with the attempt (`name@version`): the package whose install step was
   * running when the process that made it started (or, without a process, when it was made), or
   * the package asked about for import and exercise. An attempt outside every step is charged to
   * the package asked about, in install.
   */
  package?: string;
  /** Command line of the process that made the attempt, when the observer could tell. */
  process?: string;
  /** The npm lifecycle event the process ran under. */
  script?: string;
  kind: CaptureEvent['kind'];
  host?: string;
  ip?: string;
  port?: number;
  qtype?: string;
  resolver?: string;
  sni?: string;
  alpn?: string[];
  /** The Host header of an HTTP request, as sent. */
  httpHost?: string;
  method?: string;
  path?: string;
  bytesOut?: number;
  bodyBytes?: number;
  websocket?: boolean;
  /** A TLS connection the capture intercepted: decrypted (what was inside is above) or refused. */
  intercept?: TlsIntercept;
  /** The alert a client that refused interception sent. */
  tlsAlert?: string;
  count?: number;
  /**
   * When it was made: milliseconds since the phase began (its first step, under the same
   * identity), rounded to 10 ms; for a capture summary, its first attempt. Absent in reports
   * stored before it was recorded.
   */
  atMs?: number;
}

/**
 * A decision about a destination the package reached: `egress-*`, but not a caller-directed one
 * (its host is a per-run name the exercise made up, no destination to compare or write rules for).
 */
export const reachedDestination = (f: Finding): boolean =>
  f.id.startsWith('egress-') && f.id !== 'egress-caller-directed';

export interface Finding {
  /**
   * `egress-allowed`, `egress-not-allowed`, `egress-denied`, `egress-own-vendor`,
   * `egress-caller-directed`, an indicator id, `declaration-invalid`, `observer-lost`, ….
   */
  id: string;
  severity: Severity;
  phase?: Phase;
  package?: string;
  destination?: string;
  message: string;
  /** What decided it: a policy rule (`file:line`), `known-egress:<id>`, `declaration`, `default:<phase>`, `indicator:<id>`. */
  rule?: string;
  /** The smallest policy entry (YAML) that would allow it; absent when nothing may allow it. */
  suggestion?: string;
  /** Indexes into the report's `events` of the attempts it judges (egress and indicator findings). */
  events?: number[];
}

/** A package of the checked tree, as the report describes it. */
export interface PackageSummary {
  /** `name@version` */
  id: string;
  installScripts: string[];
  /** What its files show it could do (inferred; see Capability). */
  capabilities: Capability[];
  /** Install scripts: the command, and a digest of the file it runs when it is `node <file>`. */
  scripts?: Record<string, { command: string; digest?: string }>;
  /** Destinations its own `egress` declaration names, per phase, as written. */
  declares?: Partial<Record<Phase, string[]>>;
  /** What phonehome could not read in its declaration (those entries are ignored). */
  declarationProblems?: string[];
  /** `name@version` of its direct dependencies. */
  dependencies?: string[];
  /** A registry vouches for its name and version (see TreePackageInfo.fromRegistry). */
  fromRegistry?: boolean;
  /**
   * The web addresses it names for itself (homepage, repository, bugs), reduced to their hosts:
   * where its own vendor's service lives (see the own-vendor rule in policy/vendor.ts).
   */
  links?: string[];
}

/** Findings about the sandbox itself, made when the report is built; evaluate() keeps them. */
export const SANDBOX_FINDINGS: readonly string[] = [
  'observer-lost',
  'observer-impostor',
  'observer-unresponsive',
  'bait-leak',
  'npm-token-used',
  'tampering',
  'tree-modified',
  'persistence',
  'outlived-watch',
  'unattributed',
  'capture-bound',
  'capture-summarised',
  'datagrams-lost',
  'attribution-incomplete',
];

export interface CheckReport {
  schemaVersion: number;
  subject: { name: string; version: string; integrity: string | null; spec: string };
  phases: PhaseResult[];
  events: ReportEvent[];
  findings: Finding[];
  verdict: Verdict;
  /** The policy that judged the run: its files (empty: shipped defaults) and hash. */
  policy?: {
    sources: string[];
    hash: string;
    /** The known-malicious set that judged it too, in a line (`phonehome indicators import`). */
    malicious?: string;
  };
  /** The packages of the tree, dependencies first. */
  packages?: PackageSummary[];
  /** With --against: what changed since the earlier version (see core/compare.ts). */
  comparison?: ReportDiff;
  /** Attempts the capture counted but could not keep in detail (it hit its bounds). */
  truncated?: Record<string, number>;
  /** Attempts without their process, and attempts outside every step (see Attribution). */
  attribution?: { withoutProcess: number; outsideSteps: number };
  /**
   * Host names the exercise passed to the package as arguments (a per-run name nothing else
   * produces): an attempt to one of them is the package doing what its caller asked.
   */
  callerHosts?: string[];
  /** Who the sandbox looked like, in the order they ran, when the run used both identities. */
  identities?: IdentityProfile[];
}

/** The window of the step that was running at `t`, if any. */
function windowAt(t: number, windows: PhaseWindow[]): PhaseWindow | undefined {
  return windows.find((w) => w.startMs <= t && t <= w.endMs);
}

/**
 * A capture stamps an attempt when it takes it in, a moment after the package made it: an attempt
 * in the gap after a step (before the next one started) belongs to that step.
 */
const CAPTURE_LAG_MS = 1000;
/** Process start times have 10 ms resolution (USER_HZ), and their offset to the clock as much. */
const START_SLACK_MS = 20;

/**
 * The windows in start order, sorted once per list: attribution asks for every event, and an
 * audit's shard has hundreds of windows and may have tens of thousands of events.
 */
const sortedOnce = new WeakMap<PhaseWindow[], PhaseWindow[]>();
function byStart(windows: PhaseWindow[]): PhaseWindow[] {
  let sorted = sortedOnce.get(windows);
  // A list that grew since (windows are pushed as steps end) is sorted again.
  if (!sorted || sorted.length !== windows.length) {
    sorted = [...windows].sort((a, b) => a.startMs - b.startMs);
    sortedOnce.set(windows, sorted);
  }
  return sorted;
}

/** The phase an event belongs to: the phase of the last step that had started when it happened. */
export function phaseAt(t: number, windows: PhaseWindow[]): Phase | undefined {
  let found: Phase | undefined;
  for (const w of byStart(windows)) if (w.startMs <= t) found = w.name;
  return found;
}

/** When each phase began (its first step's start), per identity: what `atMs` counts from. */
function phaseStarts(windows: PhaseWindow[]): (phase: Phase, identity?: IdentityProfile) => number {
  const starts = new Map<string, number>();
  for (const w of windows) {
    const key = `${w.name}\0${w.identity ?? ''}`;
    starts.set(key, Math.min(starts.get(key) ?? Infinity, w.startMs));
  }
  return (phase, identity) => starts.get(`${phase}\0${identity ?? ''}`) ?? NaN;
}

/** Milliseconds from `start` to `t`, to 10 ms; nothing when either is unknown. */
function offsetOf(t: number, start: number): { atMs?: number } {
  const d = t - start;
  return Number.isFinite(d) ? { atMs: Math.max(0, Math.round(d / 10) * 10) } : {};
}

/** Who an event is charged to; see ReportEvent.package. */
export interface Attribution {
  phase: Phase;
  package?: string;
  process?: string;
  script?: string;
  /** No step window holds the attempt: it is charged at its strictest (install, the subject). */
  outside?: boolean;
  /** The observer could not say which process made it. */
  noProcess?: boolean;
  identity?: IdentityProfile;
}

export function toReportEvent(e: CaptureEvent, who: Attribution): ReportEvent | undefined {
  const base = {
    phase: who.phase,
    ...(who.identity ? { identity: who.identity } : {}),
    ...(who.package ? { package: who.package } : {}),
    ...(who.process ? { process: who.process } : {}),
    ...(who.script ? { script: who.script } : {}),
  };
  switch (e.kind) {
    case 'dns':
      return { ...base, kind: 'dns', host: e.qname, qtype: e.qtype, resolver: e.resolver };
    case 'tcp':
    case 'tls':
    case 'http':
      return {
        ...base,
        kind: e.kind,
        ip: e.ip,
        port: e.port,
        bytesOut: e.bytesOut,
        ...(e.host ? { host: e.host } : {}),
        ...(e.sni ? { sni: e.sni } : {}),
        ...(e.alpn ? { alpn: e.alpn } : {}),
        ...(e.httpHost ? { httpHost: e.httpHost } : {}),
        ...(e.method ? { method: e.method } : {}),
        ...(e.path !== undefined ? { path: e.path } : {}),
        ...(e.bodyBytes !== undefined ? { bodyBytes: e.bodyBytes } : {}),
        ...(e.websocket ? { websocket: true } : {}),
        ...(e.intercept ? { intercept: e.intercept } : {}),
        ...(e.tlsAlert ? { tlsAlert: e.tlsAlert } : {}),
      };
    case 'udp':
      return {
        ...base,
        kind: 'udp',
        ip: e.ip,
        port: e.port,
        bytesOut: e.bytes,
        ...(e.host ? { host: e.host } : {}),
      };
    case 'icmp':
      return { ...base, kind: 'icmp', ip: e.ip, count: e.count };
    case 'dropped':
      return { ...base, kind: 'dropped', count: e.packets };
    default:
      return undefined;
  }
}

/** How TLS interception ended without a handshake, as a person would say it (the caller escapes it). */
export function refusal(alert: string | undefined, how: 'refused' | 'failed' = 'refused'): string {
  const reason = (alert ?? '').replace(/[^a-z0-9_]/gi, '?');
  if (how === 'failed')
    return `not read: no handshake the capture could agree on (${reason || 'unknown'})`;
  if (reason === 'closed_after_handshake')
    return "refused the run's certificate: closed after the handshake without sending";
  return !reason || reason === 'none'
    ? "refused the run's certificate: closed without an alert"
    : `refused the run's certificate: alert ${reason}`;
}

/** A request's path after its destination: an absolute-form or CONNECT target set apart. */
export function pathAfter(path: string | undefined): string {
  if (!path) return '';
  return path.startsWith('/') ? path : ` ${path}`;
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
    (a.package ?? '').localeCompare(b.package ?? '') ||
    KIND_ORDER.indexOf(a.kind) - KIND_ORDER.indexOf(b.kind) ||
    JSON.stringify(a).localeCompare(JSON.stringify(b))
  );
}

export function severityRank(s: Severity): number {
  return SEVERITIES.indexOf(s);
}

/** fail when a finding is high or critical, warn when one is low or medium, else pass. */
export function verdictOf(findings: Finding[]): Verdict {
  // A loop, not a spread: a report may hold more findings than a call takes arguments.
  let worst = -1;
  for (const f of findings) worst = Math.max(worst, severityRank(f.severity));
  return worst >= severityRank('high') ? 'fail' : worst >= severityRank('low') ? 'warn' : 'pass';
}

/** The worst of several verdicts (an audit's or a gate's over its packages). */
export function worstVerdict(verdicts: Verdict[]): Verdict {
  return verdicts.includes('fail') ? 'fail' : verdicts.includes('warn') ? 'warn' : 'pass';
}

export function compareFindings(a: Finding, b: Finding): number {
  return (
    severityRank(b.severity) - severityRank(a.severity) ||
    (a.phase ? PHASES.indexOf(a.phase) : -1) - (b.phase ? PHASES.indexOf(b.phase) : -1) ||
    (a.package ?? '').localeCompare(b.package ?? '') ||
    (a.destination ?? '').localeCompare(b.destination ?? '') ||
    a.id.localeCompare(b.id)
  );
}

/**
 * Charge an event to a phase and a package, from facts the package cannot forge: the step windows
 * (measured by the step driver, out of the package's reach) and, when the observer named the
 * process, the kernel's start time of that process (a detached child's attempt counts for the
 * step that started it). What the process's environment claims (npm_package_name, …) is a hint
 * shown with the attempt, never who is charged. An attempt that no window holds is never
 * dropped: it is charged to the package asked about, in install, the strictest phase.
 */
export function attribute(e: CaptureEvent, windows: PhaseWindow[], subject: string): Attribution {
  const proc = 'proc' in e ? e.proc : undefined;
  const t = 't' in e && Number.isFinite(e.t) ? e.t : NaN;
  const sorted = byStart(windows);
  let w: PhaseWindow | undefined;
  if (proc && Number.isFinite(proc.startMs)) {
    const near = sorted.filter(
      (x) => x.startMs - START_SLACK_MS <= proc.startMs && proc.startMs <= x.endMs,
    );
    w = near.length > 1 ? (near.find((x) => windowAt(t, [x])) ?? near[near.length - 1]) : near[0];
  }
  w ??= windowAt(t, sorted);
  if (!w) {
    // In the gap after a step: that step's, if the next one had not started yet.
    const before = sorted.filter((x) => x.endMs < t);
    const last = before[before.length - 1];
    const next = sorted.find((x) => x.startMs > t);
    if (last && t - last.endMs <= CAPTURE_LAG_MS && (!next || next.startMs > t)) w = last;
  }
  const hints = {
    ...(proc?.cmd ? { process: proc.cmd } : {}),
    ...(proc?.script ? { script: proc.script } : {}),
    ...(proc ? {} : { noProcess: true }),
  };
  if (!w) return { phase: 'install', package: subject, outside: true, ...hints };
  return {
    phase: w.name,
    package: w.package,
    ...(w.identity ? { identity: w.identity } : {}),
    ...hints,
  };
}

/**
 * Events attributed and sorted (none dropped), and the findings about the sandbox itself: losing
 * the observer, an impostor on its socket, step results that cannot be believed, attempts no step
 * window holds. Judging the egress is evaluate()'s work.
 */
export function buildReport(input: {
  subject: CheckReport['subject'];
  phases: PhaseResult[];
  windows: PhaseWindow[];
  events: CaptureEvent[];
  /** Names to show instead of phonehome's own command lines (the harness's). */
  processNames?: Record<string, string>;
  /** Secrets planted in the sandbox for this run; any of them in the traffic is a leak. */
  bait?: Bait[];
  truncated?: Record<string, number>;
  /** Why step results could not be believed (see src/run/steps.ts): a critical finding each. */
  tampering?: string[];
  /**
   * Attempts the capture summarised per destination instead of keeping each (past its detail
   * bounds): attributed and judged like events, never dropped.
   */
  summaries?: SummarisedAttempts[];
  /** Findings about the capture itself (bounds hit, observer health; see core/bounds.ts). */
  captureFindings?: Finding[];
  /** What steps did to the sandbox itself (see StepConduct in src/run/steps.ts). */
  conduct?: {
    id: 'tree-modified' | 'persistence' | 'outlived-watch';
    phase: Phase;
    package: string;
    step: string;
    paths?: { count: number; shown: string[] };
    processes?: number;
  }[];
}): CheckReport {
  const subjectId = formatId(input.subject.name, input.subject.version);
  const events: ReportEvent[] = [];
  const findings: Finding[] = [];
  const counts = { withoutProcess: 0, outsideSteps: 0 };
  const startOf = phaseStarts(input.windows);
  const at = (t: number, who: Attribution) => offsetOf(t, startOf(who.phase, who.identity));
  for (const e of input.events) {
    if (e.kind === 'observer') {
      if (e.status !== 'lost' && e.status !== 'rejected') continue;
      const phase = phaseAt(e.t, input.windows) ?? 'install';
      findings.push(
        e.status === 'lost'
          ? {
              id: 'observer-lost',
              severity: 'medium',
              phase,
              message: `the sandbox's observer stopped during ${phase}; later attempts are recorded without their process (they are still charged by step)`,
            }
          : {
              id: 'observer-impostor',
              severity: 'high',
              phase,
              message: `a process in the sandbox connected to the capture's observer socket during ${phase} (it was refused): something went after the sandbox's instruments`,
            },
      );
      continue;
    }
    const who = attribute(e, input.windows, subjectId);
    const r = toReportEvent(e, who);
    if (!r) continue;
    if (who.outside) counts.outsideSteps++;
    // ICMP and other protocols are counted by the kernel, never tied to a process.
    else if (who.noProcess && e.kind !== 'icmp' && e.kind !== 'dropped') counts.withoutProcess++;
    // Own keys only: a command line such as `constructor` must not find Object's prototype.
    const names = input.processNames ?? {};
    const shown = r.process && Object.hasOwn(names, r.process) ? names[r.process] : undefined;
    if (shown) r.process = shown;
    events.push({ ...r, ...at(e.t, who) });
  }
  // A summary stands for many attempts: charged where its first attempt was made and, when it has
  // no process and its last attempt fell in another step, there too (the stricter of both counts).
  const summarised: CaptureEvent[] = [];
  for (const s of input.summaries ?? []) {
    const first = attribute(s.event, input.windows, subjectId);
    const last = attribute({ ...s.event, t: s.lastT }, input.windows, subjectId);
    const whos =
      !('proc' in s.event && s.event.proc) &&
      (first.phase !== last.phase || first.package !== last.package)
        ? [first, last]
        : [first];
    for (const who of whos) {
      const r = toReportEvent(s.event, who);
      if (!r) continue;
      events.push({ ...r, count: s.count, ...at(s.event.t, who) });
    }
    summarised.push(s.event);
  }
  events.sort(compareEvents);
  findings.push(...(input.captureFindings ?? []));
  for (const why of input.tampering ?? [])
    findings.push({
      id: 'tampering',
      severity: 'critical',
      message: `the sandbox's results were tampered with: ${why}; the steps concerned are judged at their strictest`,
    });
  // Processes that outlived the watch: one finding per package and phase, whatever the steps.
  const outlived = new Map<
    string,
    { phase: Phase; package: string; processes: number; steps: string[] }
  >();
  for (const c of input.conduct ?? []) {
    if (c.id !== 'outlived-watch') continue;
    const key = `${c.phase}\0${c.package}`;
    const o = outlived.get(key) ?? { phase: c.phase, package: c.package, processes: 0, steps: [] };
    o.processes += c.processes ?? 1;
    if (!o.steps.includes(c.step)) o.steps.push(c.step);
    outlived.set(key, o);
  }
  for (const o of outlived.values())
    findings.push({
      id: 'outlived-watch',
      severity: 'medium',
      phase: o.phase,
      package: o.package,
      message: `${o.processes} process(es) of ${o.package} were still running when the settle window after ${o.steps.slice(0, 3).join(', ')}${o.steps.length > 3 ? ` and ${o.steps.length - 3} more step(s)` : ''} ended, and were killed: what they waited to do was never watched (a payload that waits out the run looks like this; --settle gives them longer)`,
    });
  for (const c of input.conduct ?? []) {
    if (c.id === 'outlived-watch') continue;
    if (c.id === 'persistence') {
      findings.push({
        id: c.id,
        severity: 'high',
        phase: c.phase,
        package: c.package,
        message: `${c.package} wrote ${c.paths?.count ?? 'some'} file(s) that run code later on the user's machine during ${c.phase} (${c.step}): ${(c.paths?.shown ?? []).join(', ')}; shell start-up files, git and ssh configuration, autostart entries and editor tasks act after the run, where nothing watches them`,
      });
      continue;
    }
    findings.push({
      id: c.id,
      severity: 'critical',
      phase: c.phase,
      package: c.package,
      message: `${c.package} changed ${c.paths?.count ?? 'some'} file(s) outside its own folder during ${c.phase} (${c.step}): ${(c.paths?.shown ?? []).join(', ')}${(c.paths?.count ?? 0) > (c.paths?.shown.length ?? 0) ? ', …' : ''}; code of other packages or npm's configuration runs in later steps under another package's name`,
    });
  }
  if (counts.outsideSteps > 0)
    findings.push({
      id: 'unattributed',
      severity: 'medium',
      phase: 'install',
      package: subjectId,
      message: `${counts.outsideSteps} attempt(s) happened while no step was running, when no process of the package should have been alive; they are charged to ${subjectId} during install, the strictest phase`,
    });
  const leaked = new Set<string>();
  const npmReads = new Set<string>();
  for (const leak of findBaitLeaks([...input.events, ...summarised], input.bait ?? [])) {
    const who = attribute(leak.event, input.windows, subjectId);
    const r = toReportEvent(leak.event, who);
    if (!r) continue;
    const destination = destinationOf(r);
    if (npmAuthenticatedRead(leak)) {
      // Said once per phase and package; where the request went is judged as any egress is.
      const key = `${who.phase}\0${who.package ?? ''}`;
      if (npmReads.has(key)) continue;
      npmReads.add(key);
      findings.push({
        id: 'npm-token-used',
        severity: 'medium',
        phase: who.phase,
        ...(who.package ? { package: who.package } : {}),
        destination,
        message: `${who.package ?? 'an unidentified package'} had the npm token planted in ${leak.bait.where.join(' and ')} sent to ${destination}, the registry it is configured for, as npm authenticates (GET ${r.path ?? '/'}, by ${r.process ?? 'a process'}) during ${who.phase}: npm reading package data looks like this, but where the bytes go outside the sandbox is the sending process's choice`,
      });
      continue;
    }
    const key = `${leak.bait.id}\0${who.phase}\0${who.package ?? ''}\0${destination}`;
    if (leaked.has(key)) continue;
    leaked.add(key);
    findings.push({
      id: 'bait-leak',
      severity: 'critical',
      phase: who.phase,
      ...(who.package ? { package: who.package } : {}),
      destination,
      message: `${who.package ?? 'an unidentified package'} sent the ${leak.bait.label} planted in ${leak.bait.where.join(' and ')} to ${destination} during ${who.phase} (${leak.encoding}, in the ${leak.channel}): a credential theft; no policy can allow it`,
      rule: 'bait',
    });
  }
  findings.sort(compareFindings);
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
    verdict: verdictOf(findings),
    ...(counts.withoutProcess || counts.outsideSteps ? { attribution: counts } : {}),
    ...truncated,
  };
}

/** Deduplicated events for display: the same attempt made many times is shown once with a count. */
export function summarizeEvents(events: ReportEvent[]): { event: ReportEvent; times: number }[] {
  const out = new Map<string, { event: ReportEvent; times: number }>();
  for (const e of events) {
    // ICMP and dropped packets carry their own count; for other kinds `count` says how many
    // attempts a capture summary stands for.
    const own = e.kind === 'icmp' || e.kind === 'dropped';
    // When it was made tells repeats apart for the timeline, not for a list.
    const { count, atMs: _at, ...rest } = e;
    const shown = own ? { ...rest, ...(count !== undefined ? { count } : {}) } : rest;
    const n = own ? 1 : (count ?? 1);
    const key = JSON.stringify(shown);
    const prev = out.get(key);
    if (prev) prev.times += n;
    else out.set(key, { event: shown, times: n });
  }
  return [...out.values()];
}
