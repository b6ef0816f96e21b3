/**
 * What the HTML report shows, computed from the same report objects as the JSON: the verdict and
 * why, a timeline per phase with each attempt placed in time and grouped by destination, coloured
 * by what decided it, the findings with their suggested policy entries, what each package declared
 * next to what it did; an audit's table of packages; a gate's or diff's table of changes.
 *
 * Every string that came from a package or a lockfile is escaped here for display (forTerminal:
 * controls, bidirectional and invisible characters are shown as escapes, so a name reads as what
 * it is), and the viewer only ever writes these strings as text (textContent), never as markup.
 * The one exception is a policy suggestion, kept exactly as written so that it can be copied:
 * phonehome writes odd hosts in it as escaped YAML strings, so it holds nothing invisible.
 *
 * Pure: no I/O.
 */
import type { AuditReport } from '../audit/audit.js';
import type { DestinationChange, ReportDiff } from '../core/compare.js';
import { forTerminal as t } from '../core/escape.js';
import { formatId } from '../core/package-id.js';
import {
  destinationOf,
  pathAfter,
  refusal,
  reachedDestination,
  severityRank,
  worstVerdict,
  type CheckReport,
  type Finding,
  type ReportEvent,
} from '../core/report.js';
import { PHASES, type Severity } from '../core/terms.js';
import type { GateReport } from '../gate/gate.js';
import { diffLines } from '../cli/render-diff.js';
import { extraCalls, headline } from '../cli/render-text.js';

/** What decided an attempt, strongest first: the colour of its dot and row. */
export const DECISIONS = [
  'bait',
  'indicator',
  'denied',
  'vendor',
  'allowed-rule',
  'allowed-known',
  'allowed-declaration',
  'caller',
  'local-name',
  'undecided',
] as const;
export type Decision = (typeof DECISIONS)[number];

export const DECISION_LABELS: Record<Decision, string> = {
  bait: 'bait secret sent',
  indicator: 'indicator',
  denied: 'not allowed',
  vendor: "own vendor's domain",
  'allowed-rule': 'allowed by your policy',
  'allowed-known': 'allowed: known egress',
  'allowed-declaration': "allowed: the package's declaration",
  caller: 'what the exercise asked for',
  'local-name': 'a name without a domain',
  undecided: 'not judged',
};

export interface AttemptView {
  /** Milliseconds into the phase; null when the report did not record it. */
  at: number | null;
  what: string;
  package: string;
  process: string;
  times: number;
}

export interface DestinationRow {
  destination: string;
  /** Attempts of this row left out of the page (past HTML_BOUNDS.attemptsPerRow). */
  more: number;
  package: string;
  decision: Decision;
  /** The finding that decided it, in a line, and the rule. */
  because: string;
  rule: string;
  attempts: AttemptView[];
}

export interface TimelineView {
  phase: string;
  /** Who the sandbox looked like, when the run used both identities. */
  identity: string;
  status: string;
  durationMs: number;
  /** The end of the time axis: the phase's duration or its last attempt, whichever is later. */
  axisMs: number;
  note: string;
  calls: string;
  rows: DestinationRow[];
  /** Destinations left out of the page (past HTML_BOUNDS.rowsPerPhase, the weakest decisions). */
  moreRows: number;
}

export interface FindingView {
  severity: Severity;
  id: string;
  phase: string;
  package: string;
  message: string;
  /** YAML to copy into the policy's rules, as phonehome wrote it. */
  suggestion: string;
}

export interface PackageView {
  id: string;
  installScripts: string[];
  capabilities: string[];
  /**
   * Per phase: what it declares, and where it went (destinations judged for it), each saying
   * whether its declaration is what allowed it.
   */
  phases: {
    phase: string;
    declared: string[];
    reached: { destination: string; declared: boolean }[];
  }[];
}

export interface CheckView {
  id: string;
  verdict: CheckReport['verdict'];
  /** The verdict and why, in a line. */
  why: string;
  policy: string;
  timelines: TimelineView[];
  findings: FindingView[];
  /** Findings left out of the page (past HTML_BOUNDS.findings, the least severe). */
  moreFindings: number;
  packages: PackageView[];
  /** With --against: what changed since the earlier version, as lines. */
  changes: string[];
  truncated: string;
}

export interface ChangeRow {
  name: string;
  change: string;
  kind: string;
  verdict: CheckReport['verdict'];
  path: string[];
  added: string[];
  removed: string[];
  fromStore: boolean;
  check?: CheckView;
}

export interface AuditRow {
  id: string;
  verdict: CheckReport['verdict'];
  status: string;
  installScripts: string[];
  destinations: number;
  /** Findings above info, and the worst of them. */
  findings: number;
  worst: Severity | '';
  path: string[];
  dev: boolean;
  optional: boolean;
  fromStore: boolean;
  check?: CheckView;
}

export type PageModel =
  | { kind: 'check'; title: string; verdict: CheckReport['verdict']; checks: CheckView[] }
  | {
      kind: 'audit';
      title: string;
      verdict: CheckReport['verdict'];
      summary: string[];
      rows: AuditRow[];
    }
  | {
      kind: 'gate' | 'diff';
      title: string;
      verdict: CheckReport['verdict'];
      summary: string[];
      changes: ChangeRow[];
    };

/**
 * Letters of right-to-left scripts (Hebrew, Arabic, Syriac, Thaana, N'Ko, …): a browser reorders
 * the text around them (`FAIL 1 :2@<rtl> attempts`), so in a report they are shown as escapes,
 * like the controls forTerminal escapes. No host, path or SNI can hold them (the capture reads
 * those as Latin-1); names, commands and declarations can.
 */
const RIGHT_TO_LEFT =
  /[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefe\u{10800}-\u{10fff}\u{1e800}-\u{1efff}]/gu;

const esc = (s: string | undefined | null) =>
  t(s ?? '').replace(
    RIGHT_TO_LEFT,
    (c) => `\\u${(c.codePointAt(0) ?? 0).toString(16).padStart(4, '0')}`,
  );

/** Bounds of what one page draws (the JSON report keeps everything). */
export const HTML_BOUNDS = { rowsPerPhase: 500, attemptsPerRow: 100, findings: 1000 };

/** What an attempt was, in a line (the text report's detail, without its padding). */
function what(e: ReportEvent): string {
  switch (e.kind) {
    case 'dns':
      return `DNS ${esc(e.qtype)} ${esc(e.host)} (asked ${esc(e.resolver)})`;
    case 'http':
      return `HTTP ${esc(e.method)} ${esc(e.host ?? e.ip)}:${e.port}${esc(e.path)}${e.websocket ? ' (WebSocket upgrade)' : ''}${e.bodyBytes ? ` (${e.bodyBytes} body bytes)` : ''}${e.httpHost && e.httpHost !== e.host ? ` Host: ${esc(e.httpHost)}` : ''}${e.host ? ` [${esc(e.ip)}]` : ''}`;
    case 'tls':
      if (e.method !== undefined)
        return `HTTPS ${esc(e.method)} ${esc(destinationOf(e))}${esc(pathAfter(e.path))}${e.websocket ? ' (WebSocket upgrade)' : ''}${e.bodyBytes ? ` (${e.bodyBytes} body bytes)` : ''}${e.httpHost && e.httpHost !== (e.sni ?? e.host) ? ` Host: ${esc(e.httpHost)}` : ''}${e.host || e.sni ? ` [${esc(e.ip)}]` : ''}`;
      return `TLS ${esc(destinationOf(e))}${e.intercept === 'refused' || e.intercept === 'failed' ? ` (${refusal(e.tlsAlert, e.intercept)})` : ''}${e.alpn ? ` alpn=${esc(e.alpn.join(','))}` : ''}${e.host || e.sni ? ` [${esc(e.ip)}]` : ''}`;
    case 'tcp':
      return `TCP ${esc(destinationOf(e))} (${e.bytesOut ?? 0} bytes sent)`;
    case 'udp':
      return `UDP ${esc(destinationOf(e))} (${e.bytesOut ?? 0} bytes)`;
    case 'icmp':
      return `ICMP ${esc(e.ip)} (${e.count} echo request(s))`;
    case 'dropped':
      return `${e.count} packet(s) of other protocols dropped`;
    default:
      return esc(e.kind);
  }
}

/** An egress decision as a colour. */
function decisionOf(f: Finding): Decision {
  switch (f.id) {
    case 'egress-allowed':
      return f.rule === 'declaration'
        ? 'allowed-declaration'
        : f.rule?.startsWith('known-egress:')
          ? 'allowed-known'
          : 'allowed-rule';
    case 'egress-not-allowed':
    case 'egress-denied':
      return 'denied';
    case 'egress-own-vendor':
      return 'vendor';
    case 'egress-caller-directed':
      return 'caller';
    case 'egress-local-name':
      return 'local-name';
    default:
      return 'undecided';
  }
}

/** Lines of YAML as written, unless one holds a character a reader could not see. */
function copyable(suggestion: string | undefined): string {
  if (!suggestion) return '';
  const plain = suggestion
    .split('\n')
    .every(
      (l) =>
        t(l.replaceAll('\\', '')) === l.replaceAll('\\', '') &&
        !new RegExp(RIGHT_TO_LEFT.source, 'u').test(l),
    );
  return plain ? suggestion.trimEnd() : suggestion.trimEnd().split('\n').map(esc).join('\n');
}

const callsLine = (c: NonNullable<CheckReport['phases'][number]['calls']>) =>
  `called ${c.functions} function(s), ${c.classes} class(es)${c.methods ? ` and ${c.methods} method(s) of what they returned` : ''} ${c.calls} time(s)${extraCalls(c)}; ${c.threw} threw, ${c.pending} never settled; ran ${c.bins} command(s)`;

export function checkView(report: CheckReport): CheckView {
  const events = report.events;
  // Each attempt's decision: the egress finding that judged it, made stronger by an indicator
  // above info and by a bait leak to the same destination.
  const rowOf = new Map<number, DestinationRow>();
  const rows: DestinationRow[] = [];
  for (const f of report.findings) {
    if (!f.id.startsWith('egress-') || !f.events?.length) continue;
    const row: DestinationRow = {
      destination: esc(f.destination),
      package: esc(f.package),
      decision: decisionOf(f),
      because: esc(f.message),
      rule: esc(f.rule),
      attempts: [],
      more: 0,
    };
    rows.push(row);
    for (const i of f.events) rowOf.set(i, row);
  }
  for (const f of report.findings) {
    if (f.id.startsWith('egress-') || !f.events?.length || f.severity === 'info') continue;
    for (const i of f.events) {
      const row = rowOf.get(i);
      if (row && row.decision !== 'bait' && row.decision !== 'indicator') {
        row.decision = 'indicator';
        row.because = `${esc(f.message)}; ${row.because}`;
      }
    }
  }
  const leaks = report.findings.filter((f) => f.id === 'bait-leak');
  events.forEach((e, i) => {
    const leak = leaks.find(
      (f) =>
        f.phase === e.phase &&
        (f.package ?? '') === (e.package ?? '') &&
        f.destination === destinationOf(e),
    );
    const row = rowOf.get(i);
    if (leak && row && row.decision !== 'bait') {
      row.decision = 'bait';
      row.because = `${esc(leak.message)}; ${row.because}`;
    }
  });
  // Attempts no finding names (a report judged before findings listed their attempts): a row per
  // destination, not judged.
  const loose = new Map<string, DestinationRow>();
  events.forEach((e, i) => {
    if (rowOf.has(i)) return;
    const key = `${e.phase}\0${e.identity ?? ''}\0${e.package ?? ''}\0${destinationOf(e)}`;
    let row = loose.get(key);
    if (!row) {
      row = {
        destination: esc(destinationOf(e)),
        package: esc(e.package),
        decision: 'undecided',
        because: 'no finding names this attempt',
        rule: '',
        attempts: [],
        more: 0,
      };
      loose.set(key, row);
      rows.push(row);
    }
    rowOf.set(i, row);
  });

  const timelines: TimelineView[] = [];
  // The identities in the order they ran (laptop, then ci, for a default check).
  const seen: string[] = [...new Set(events.map((e) => e.identity ?? ''))];
  const order: string[] = report.identities ?? [];
  const identities = [
    ...order.filter((i) => seen.includes(i)),
    ...seen.filter((i) => !order.includes(i)),
  ];
  for (const p of report.phases) {
    const here = identities.filter((i) =>
      events.some((e) => e.phase === p.name && (e.identity ?? '') === i),
    );
    for (const identity of here.length ? here : ['']) {
      const inPhase = events
        .map((e, i) => ({ e, i }))
        .filter(({ e }) => e.phase === p.name && (e.identity ?? '') === identity);
      const phaseRows = new Map<DestinationRow, DestinationRow>();
      for (const { e, i } of inPhase) {
        const row = rowOf.get(i) as DestinationRow;
        let mine = phaseRows.get(row);
        if (!mine) {
          mine = { ...row, attempts: [] };
          phaseRows.set(row, mine);
        }
        if (mine.attempts.length >= HTML_BOUNDS.attemptsPerRow) {
          mine.more += 1;
          continue;
        }
        const attempt: AttemptView = {
          at: e.atMs ?? null,
          what: what(e),
          package: esc(e.package),
          process: e.process ? `${e.script ? `${esc(e.script)}: ` : ''}${esc(e.process)}` : '',
          times: e.kind === 'icmp' || e.kind === 'dropped' ? 1 : (e.count ?? 1),
        };
        mine.attempts.push(attempt);
      }
      for (const r of phaseRows.values())
        r.attempts.sort((a, b) => (a.at ?? Infinity) - (b.at ?? Infinity));
      const list = [...phaseRows.values()].sort(
        (a, b) =>
          DECISIONS.indexOf(a.decision) - DECISIONS.indexOf(b.decision) ||
          a.destination.localeCompare(b.destination),
      );
      let last = 0;
      for (const { e } of inPhase) last = Math.max(last, e.atMs ?? 0);
      // The phase's status, time and note are the first run's; a run under the other identity
      // is told of in that note, and drawn on the same scale.
      const again = identity !== (here[0] ?? '');
      timelines.push({
        phase: p.name,
        identity,
        status: again ? 'run again' : p.status,
        durationMs: again ? NaN : p.durationMs,
        axisMs: Math.max(p.durationMs, last, 1),
        note: again ? '' : esc(p.note),
        calls: p.calls && !again ? callsLine(p.calls) : '',
        rows: list.slice(0, HTML_BOUNDS.rowsPerPhase),
        moreRows: Math.max(0, list.length - HTML_BOUNDS.rowsPerPhase),
      });
    }
  }

  const findings: FindingView[] = report.findings.slice(0, HTML_BOUNDS.findings).map((f) => ({
    severity: f.severity,
    id: esc(f.id),
    phase: f.phase ?? '',
    package: esc(f.package),
    message: esc(f.message),
    suggestion: copyable(f.suggestion),
  }));

  // Per package and phase, each destination reached and whether its declaration allowed it.
  const reached = new Map<string, Map<string, Map<string, boolean>>>();
  for (const f of report.findings) {
    if (!reachedDestination(f) || !f.phase || !f.destination) continue;
    const byPhase = reached.get(f.package ?? '') ?? new Map<string, Map<string, boolean>>();
    const here = byPhase.get(f.phase) ?? new Map<string, boolean>();
    const declared = f.id === 'egress-allowed' && f.rule === 'declaration';
    // Declared only when every attempt shown so was allowed by the declaration.
    here.set(f.destination, (here.get(f.destination) ?? true) && declared);
    byPhase.set(f.phase, here);
    reached.set(f.package ?? '', byPhase);
  }
  const subjectId = formatId(report.subject.name, report.subject.version);
  const packages: PackageView[] = (report.packages ?? [])
    .filter((p) => p.declares || reached.has(p.id) || p.installScripts.length || p.id === subjectId)
    .map((p) => ({
      id: esc(p.id),
      installScripts: p.installScripts.map((s) => {
        const c = p.scripts?.[s]?.command;
        return c ? `${esc(s)}: ${esc(c)}` : esc(s);
      }),
      capabilities: p.capabilities.map(esc),
      phases: PHASES.map((phase) => ({
        phase,
        declared: (p.declares?.[phase] ?? []).map(esc),
        reached: [...(reached.get(p.id)?.get(phase) ?? new Map<string, boolean>())].map(
          ([destination, declared]) => ({ destination: esc(destination), declared }),
        ),
      })).filter((x) => x.declared.length || x.reached.length),
    }));

  return {
    id: esc(subjectId),
    verdict: report.verdict,
    why: headline(report, esc),
    policy: report.policy
      ? report.policy.sources.length
        ? esc(report.policy.sources.join(' + '))
        : 'shipped defaults'
      : '',
    timelines,
    findings,
    moreFindings: Math.max(0, report.findings.length - HTML_BOUNDS.findings),
    packages,
    changes: report.comparison ? diffLines(report.comparison) : [],
    truncated: report.truncated
      ? Object.entries(report.truncated)
          .map(([k, n]) => `${esc(k)} ${n}`)
          .join(', ')
      : '',
  };
}

const worstOf = (fs: Finding[]): Severity | '' =>
  fs.reduce<Severity | ''>(
    (w, f) => (w === '' || severityRank(f.severity) > severityRank(w) ? f.severity : w),
    '',
  );

export function auditModel(r: AuditReport): PageModel {
  const s = r.summary;
  const counts = Object.entries(s.findings)
    .filter(([, n]) => n)
    .sort(([a], [b]) => severityRank(b as Severity) - severityRank(a as Severity))
    .map(([k, n]) => `${n} ${k}`);
  return {
    kind: 'audit',
    title: `audit of ${esc(formatId(r.project.name, r.project.version))}`,
    verdict: r.verdict,
    summary: [
      `${s.checked} of ${s.packages} package(s) checked, ${s.fromStore} from the result store, ${s.withInstallScripts} with install scripts, ${s.withEgress} with egress`,
      `lockfile ${esc(r.lockfile)}${r.lockfileFormat && r.lockfileFormat !== 'npm' ? ` (${esc(r.lockfileFormat)})` : ''}; policy: ${r.policy.sources.length ? esc(r.policy.sources.join(' + ')) : 'shipped defaults'}`,
      `findings: ${counts.length ? counts.join(', ') : 'none'}`,
      ...(s.notInstalled
        ? [
            `${s.notInstalled} optional package(s) for other platforms not installed here, so not checked`,
          ]
        : []),
      ...(s.notRun ? [`${s.notRun} package(s) NOT RUN`] : []),
      ...(r.sources ?? []).map((l) => `tarballs: ${esc(l)}`),
      ...(r.registryIntegrity?.length
        ? [
            `integrity of ${r.registryIntegrity.length} package(s) from the registry, not the lockfile (Yarn Berry keeps a checksum of its own zip instead)`,
          ]
        : []),
      ...(s.unattributed
        ? [
            `${s.unattributed} attempt(s) could not be tied to a package${s.unattributedLeaks.length ? `; BAIT SECRETS IN THEM: ${esc(s.unattributedLeaks.join(', '))}` : ''}`,
          ]
        : []),
    ],
    rows: r.packages.map((p) => {
      const judged = (p.report?.findings ?? []).filter((f) => f.severity !== 'info');
      return {
        id: esc(p.id),
        verdict: p.verdict,
        status: p.status,
        installScripts: p.installScripts.map(esc),
        destinations: new Set(
          (p.report?.findings ?? [])
            .filter((f) => reachedDestination(f))
            .map((f) => `${f.phase}\0${f.destination}`),
        ).size,
        findings: judged.length,
        worst: worstOf(judged),
        path: p.path.map(esc),
        dev: p.dev,
        optional: p.optional,
        fromStore: p.fromStore,
        ...(p.report ? { check: checkView(p.report) } : {}),
      };
    }),
  };
}

const shownChange = (d: DestinationChange) =>
  `${d.phase} ${d.package ? esc(d.package) : '(package not identified)'} ${esc(d.destination)}`;

export function gateModel(r: GateReport): PageModel {
  return {
    kind: 'gate',
    title: `gate ${esc(r.base)} → ${esc(r.head)}`,
    verdict: r.verdict,
    summary: [
      `${r.packages.length} package(s) added or changed, ${r.removed.length} removed`,
      `policy: ${r.policy.sources.length ? esc(r.policy.sources.join(' + ')) : 'shipped defaults'}`,
      ...r.retargeted.map(
        (x) =>
          `FAIL ${esc(formatId(x.name, x.version))}: locked to another tarball with no version change`,
      ),
      ...(r.notInstalled.length
        ? [`not installed here (other platforms): ${r.notInstalled.map(esc).join(', ')}`]
        : []),
      ...(r.removed.length
        ? [`removed: ${r.removed.map((x) => esc(formatId(x.name, x.version))).join(', ')}`]
        : []),
    ],
    changes: [...r.packages]
      .sort((a, b) => a.path.length - b.path.length || a.name.localeCompare(b.name))
      .map((p) => ({
        name: esc(p.name),
        change: p.kind === 'added' ? `added ${esc(p.to)}` : `${esc(p.from)} → ${esc(p.to)}`,
        kind: p.kind,
        verdict: p.verdict,
        path: p.path.map(esc),
        added: (p.report.comparison?.destinations.added ?? []).map(shownChange),
        removed: (p.report.comparison?.destinations.removed ?? []).map(shownChange),
        fromStore: p.fromStore,
        check: checkView(p.report),
      })),
  };
}

export function diffModel(d: ReportDiff, before: CheckReport, after: CheckReport): PageModel {
  const name = esc(d.after.name);
  return {
    kind: 'diff',
    title: `diff of ${name} ${esc(d.before.version)} → ${esc(d.after.version)}`,
    verdict: after.verdict,
    summary: [`verdict ${d.before.verdict} → ${d.after.verdict}`, ...diffLines(d)],
    changes: [
      {
        name,
        change: `${esc(d.before.version)} → ${esc(d.after.version)}`,
        kind: 'compared',
        verdict: after.verdict,
        path: [],
        added: d.destinations.added.map(shownChange),
        removed: d.destinations.removed.map(shownChange),
        fromStore: false,
        check: checkView(after),
      },
      {
        name,
        change: `${esc(d.before.version)} (the earlier version)`,
        kind: 'earlier',
        verdict: before.verdict,
        path: [],
        added: [],
        removed: [],
        fromStore: false,
        check: checkView(before),
      },
    ],
  };
}

export function checksModel(reports: CheckReport[]): PageModel {
  const views = reports.map(checkView);
  return {
    kind: 'check',
    title: `check of ${views.map((v) => v.id).join(', ')}`,
    verdict: worstVerdict(views.map((v) => v.verdict)),
    checks: views,
  };
}
