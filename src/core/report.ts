/**
 * The check report: a versioned contract. Events carry their phase but no timestamps, and every
 * list is sorted, so two runs of the same package diff cleanly.
 */
import { findBaitLeaks, type Bait } from './bait.js';
import type { ReportDiff } from './compare.js';
import type { Capability, CaptureEvent, Phase, Severity } from './terms.js';
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
    threw: number;
    pending: number;
    bins: number;
  };
}

/** When a phase ran, on the sandbox kernel's monotonic clock (the clock capture events use). */
export interface PhaseWindow {
  name: Phase;
  startMs: number;
  endMs: number;
}

export interface ReportEvent {
  phase: Phase;
  /**
   * The package charged with the attempt (`name@version`): the package whose install script (or
   * its child) made it, or the package asked about for import and exercise. Absent when an
   * install-time attempt cannot be tied to one package.
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
  method?: string;
  path?: string;
  bytesOut?: number;
  bodyBytes?: number;
  websocket?: boolean;
  count?: number;
}

export interface Finding {
  /**
   * `egress-allowed`, `egress-not-allowed`, `egress-denied`, an indicator id, `declaration-invalid`,
   * `observer-lost`, `observer-impostor`.
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
}

/** Findings about the sandbox itself, made when the report is built; evaluate() keeps them. */
export const SANDBOX_FINDINGS: readonly string[] = [
  'observer-lost',
  'observer-impostor',
  'bait-leak',
];

export interface CheckReport {
  schemaVersion: number;
  subject: { name: string; version: string; integrity: string | null; spec: string };
  phases: PhaseResult[];
  events: ReportEvent[];
  findings: Finding[];
  verdict: Verdict;
  /** The policy that judged the run: its files (empty: shipped defaults) and hash. */
  policy?: { sources: string[]; hash: string };
  /** The packages of the tree, dependencies first. */
  packages?: PackageSummary[];
  /** With --against: what changed since the earlier version (see core/compare.ts). */
  comparison?: ReportDiff;
  /** Attempts the capture counted but could not keep in detail (it hit its bounds). */
  truncated?: Record<string, number>;
}

/** The phase an event belongs to: the last phase that had started when it happened. */
export function phaseAt(t: number, windows: PhaseWindow[]): Phase | undefined {
  let found: Phase | undefined;
  for (const w of [...windows].sort((a, b) => a.startMs - b.startMs))
    if (w.startMs <= t) found = w.name;
  return found;
}

/** Who an event is charged to; see ReportEvent.package. */
export interface Attribution {
  phase: Phase;
  package?: string;
  process?: string;
  script?: string;
}

export function toReportEvent(e: CaptureEvent, who: Attribution): ReportEvent | undefined {
  const base = {
    phase: who.phase,
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
        ...(e.method ? { method: e.method } : {}),
        ...(e.path !== undefined ? { path: e.path } : {}),
        ...(e.bodyBytes !== undefined ? { bodyBytes: e.bodyBytes } : {}),
        ...(e.websocket ? { websocket: true } : {}),
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

/** A package of the staged tree, as buildReport needs it. */
export interface TreePackage {
  /** `name@version` */
  id: string;
  installScripts: string[];
}

export function severityRank(s: Severity): number {
  return SEVERITIES.indexOf(s);
}

/** fail when a finding is high or critical, warn when one is low or medium, else pass. */
export function verdictOf(findings: Finding[]): Verdict {
  const worst = Math.max(-1, ...findings.map((f) => severityRank(f.severity)));
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
 * Charge an event to a phase and a package. A process's attempts count for the phase that started
 * the process (a detached child of a postinstall is still install). The package comes from the
 * npm lifecycle environment of the process; for import and exercise it is the package asked
 * about; for an install-time attempt of unknown origin, the tree's only package with install
 * scripts if there is exactly one.
 */
export function attribute(
  e: CaptureEvent,
  windows: PhaseWindow[],
  subject: string,
  /** The tree's only package with install scripts, when there is exactly one. */
  soleInstaller: string | undefined,
): Attribution | undefined {
  const proc = 'proc' in e ? e.proc : undefined;
  // Start times have 10 ms resolution; a step's processes start after its window opens.
  const phase = (proc ? phaseAt(proc.startMs + 10, windows) : undefined) ?? phaseAt(e.t, windows);
  if (!phase) return undefined;
  const pkg = proc?.package ?? (phase === 'install' ? soleInstaller : subject);
  return {
    phase,
    ...(pkg ? { package: pkg } : {}),
    ...(proc?.cmd ? { process: proc.cmd } : {}),
    ...(proc?.script ? { script: proc.script } : {}),
  };
}

/**
 * Events attributed and sorted, and the findings about the sandbox itself: losing the observer
 * mid-run (the package killed it) or an impostor on its socket means attribution stopped and
 * something went after the sandbox's instruments. Judging the egress is evaluate()'s work.
 */
export function buildReport(input: {
  subject: CheckReport['subject'];
  phases: PhaseResult[];
  windows: PhaseWindow[];
  events: CaptureEvent[];
  packages?: TreePackage[];
  /** Names to show instead of phonehome's own command lines (the harness's). */
  processNames?: Record<string, string>;
  /** Secrets planted in the sandbox for this run; any of them in the traffic is a leak. */
  bait?: Bait[];
  truncated?: Record<string, number>;
}): CheckReport {
  const subjectId = `${input.subject.name}@${input.subject.version}`;
  const installers = (input.packages ?? []).filter((p) => p.installScripts.length > 0);
  const soleInstaller = installers.length === 1 ? installers[0]?.id : undefined;
  const events: ReportEvent[] = [];
  const findings: Finding[] = [];
  for (const e of input.events) {
    if (e.kind === 'observer') {
      if (e.status === 'connected') continue;
      const phase = phaseAt(e.t, input.windows) ?? 'install';
      findings.push(
        e.status === 'lost'
          ? {
              id: 'observer-lost',
              severity: 'medium',
              phase,
              message: `a process in the sandbox stopped the observer during ${phase}; later attempts are recorded without their process`,
            }
          : {
              id: 'observer-impostor',
              severity: 'medium',
              phase,
              message: `a process in the sandbox connected to the capture's observer socket during ${phase}; it was refused`,
            },
      );
      continue;
    }
    const who = attribute(e, input.windows, subjectId, soleInstaller);
    if (!who) continue;
    const shown = who.process ? input.processNames?.[who.process] : undefined;
    if (shown) who.process = shown;
    const r = toReportEvent(e, who);
    if (r) events.push(r);
  }
  events.sort(compareEvents);
  const leaked = new Set<string>();
  for (const leak of findBaitLeaks(input.events, input.bait ?? [])) {
    const who = attribute(leak.event, input.windows, subjectId, soleInstaller);
    const r = who && toReportEvent(leak.event, who);
    if (!who || !r) continue;
    const destination = destinationOf(r);
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
    ...truncated,
  };
}

/** Deduplicated events for display: the same attempt made many times is shown once with a count. */
export function summarizeEvents(events: ReportEvent[]): { event: ReportEvent; times: number }[] {
  const out = new Map<string, { event: ReportEvent; times: number }>();
  for (const e of events) {
    const key = JSON.stringify(e);
    const prev = out.get(key);
    if (prev) prev.times++;
    else out.set(key, { event: e, times: 1 });
  }
  return [...out.values()];
}
