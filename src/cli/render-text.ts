/**
 * The check report as text for a terminal. Every string that came from the package (names,
 * hosts, paths, command lines, notes, messages, suggestions) goes through forTerminal (`t`) here,
 * at output time; the report itself stays as observed.
 */
import { forTerminal as t } from '../core/escape.js';
import { formatId } from '../core/package-id.js';
import {
  destinationOf,
  pathAfter,
  refusal,
  summarizeEvents,
  type CheckReport,
  type PhaseResult,
  type ReportEvent,
} from '../core/report.js';
import { diffLines } from './render-diff.js';

function detail(e: ReportEvent): string {
  switch (e.kind) {
    case 'dns':
      return `dns   ${t(`${e.host}`)} ${t(`${e.qtype}`)} (asked ${t(`${e.resolver}`)})`;
    case 'http':
      return `http  ${t(`${e.method}`)} ${t(`${e.host ?? e.ip}`)}:${e.port}${t(e.path ?? '')}${e.websocket ? ' (WebSocket upgrade)' : ''}${e.bodyBytes ? ` (${e.bodyBytes} body bytes)` : ''}${e.host ? ` [${t(`${e.ip}`)}]` : ''}`;
    case 'tls':
      if (e.method !== undefined)
        return `https ${t(`${e.method}`)} ${t(destinationOf(e))}${t(pathAfter(e.path))}${e.websocket ? ' (WebSocket upgrade)' : ''}${e.bodyBytes ? ` (${e.bodyBytes} body bytes)` : ''}${e.host || e.sni ? ` [${t(`${e.ip}`)}]` : ''}`;
      return `tls   ${t(destinationOf(e))}${e.intercept === 'refused' || e.intercept === 'failed' ? ` (${refusal(e.tlsAlert, e.intercept)})` : ''}${e.alpn ? ` alpn=${t(e.alpn.join(','))}` : ''}${e.host || e.sni ? ` [${t(`${e.ip}`)}]` : ''}`;
    case 'tcp':
      return `tcp   ${t(destinationOf(e))} (${e.bytesOut ?? 0} bytes sent)`;
    case 'udp':
      return `udp   ${t(destinationOf(e))} (${e.bytesOut ?? 0} bytes)`;
    case 'icmp':
      return `icmp  ${t(`${e.ip}`)} (${e.count} echo request(s))`;
    case 'dropped':
      return `other ${e.count} packet(s) of other protocols dropped`;
    default:
      return t(e.kind);
  }
}

/** A command line cut to `max` characters (of the input: whole code points), then escaped. */
function short(cmd: string, max = 70): string {
  const chars = [...cmd];
  return chars.length > max ? `${t(chars.slice(0, max - 1).join(''))}…` : t(cmd);
}

/** The verdict and why, in a line; `esc` escapes what came from the package (text: forTerminal). */
/** The deeper part of an exercise phase's calls, for the line that counts them. */
export function extraCalls(c: NonNullable<PhaseResult['calls']>): string {
  const parts = [
    c.emitted ? `emitted ${c.emitted} event(s)` : '',
    c.iterated ? `took ${c.iterated} iterator step(s)` : '',
  ].filter(Boolean);
  return parts.length ? `, ${parts.join(', ')}` : '';
}

export function headline(report: CheckReport, esc: (s: string) => string = t): string {
  const { subject, findings } = report;
  const id = esc(formatId(subject.name, subject.version));
  if (report.events.length === 0 && findings.length === 0) return `PASS ${id}: no egress attempts`;
  const destinations = new Set(
    findings.filter((f) => f.id.startsWith('egress')).map((f) => f.destination),
  ).size;
  const notAllowed = findings.filter(
    (f) => f.id === 'egress-not-allowed' || f.id === 'egress-denied',
  ).length;
  const indicators = [
    ...new Set(
      findings
        .filter((f) => f.rule?.startsWith('indicator:') && f.severity !== 'info')
        .map((f) => `${esc(f.id)} (${f.severity})`),
    ),
  ];
  const leaks = findings.filter((f) => f.id === 'bait-leak').length;
  const vendor = findings.filter(
    (f) => f.id === 'egress-own-vendor' && f.severity !== 'info',
  ).length;
  const directed = findings.filter((f) => f.id === 'egress-caller-directed').length;
  // What else made the verdict: the sandbox's own findings (tampering, persistence, …) and
  // changes since an earlier version.
  const other = [
    ...new Set(
      findings
        .filter(
          (f) =>
            f.severity !== 'info' &&
            !f.id.startsWith('egress-') &&
            f.id !== 'bait-leak' &&
            !f.rule?.startsWith('indicator:'),
        )
        .map((f) => `${esc(f.id)} (${f.severity})`),
    ),
  ];
  const parts = [
    ...(leaks ? [`BAIT SECRETS SENT OUT: ${leaks}`] : []),
    `${report.events.length} egress attempt(s) to ${destinations} destination(s)`,
    notAllowed ? `policy: ${notAllowed} not allowed` : 'policy: all allowed',
    ...(vendor ? [`${vendor} to its own vendor's domain (low)`] : []),
    ...(directed ? [`${directed} where the exercise told it to`] : []),
    ...(indicators.length ? [`indicators: ${indicators.join(', ')}`] : []),
    ...(other.length ? [`also: ${other.join(', ')}`] : []),
  ];
  return `${report.verdict.toUpperCase()} ${id}: ${parts.join('; ')}`;
}

export function renderText(report: CheckReport): string {
  const lines = [headline(report)];
  if (report.policy)
    lines.push(
      `  policy: ${report.policy.sources.length ? t(report.policy.sources.join(' + ')) : 'shipped defaults'}${report.policy.malicious ? `; ${t(report.policy.malicious)}` : ''}`,
    );
  for (const p of report.phases) {
    const note = p.note ? ` - ${t(p.note)}` : '';
    lines.push(
      `  ${p.name} (${p.status}${p.status === 'skipped' ? '' : `, ${(p.durationMs / 1000).toFixed(1)} s`})${note}`,
    );
    if (p.calls)
      lines.push(
        `    called ${p.calls.functions} function(s), ${p.calls.classes} class(es)${p.calls.methods ? ` and ${p.calls.methods} method(s) of what they returned` : ''} ${p.calls.calls} time(s)${extraCalls(p.calls)}; ran ${p.calls.bins} command(s)`,
      );
    const inPhase = report.events.filter((e) => e.phase === p.name);
    const byPackage = new Map<string, ReportEvent[]>();
    for (const e of inPhase) {
      const key = e.package ?? '(package not identified)';
      byPackage.set(key, [...(byPackage.get(key) ?? []), e]);
    }
    for (const [pkg, events] of byPackage) {
      lines.push(`    ${t(pkg)}`);
      for (const { event, times } of summarizeEvents(events)) {
        const by = event.process
          ? `  <- ${event.script ? `${t(event.script)}: ` : ''}${short(event.process)}`
          : '';
        const as = event.identity ? ` (as ${event.identity})` : '';
        lines.push(`      ${detail(event)}${times > 1 ? ` x${times}` : ''}${as}${by}`);
      }
    }
  }
  if (report.comparison) {
    lines.push(
      `  changes since ${t(formatId(report.comparison.before.name, report.comparison.before.version))}`,
    );
    lines.push(...diffLines(report.comparison, '    '));
  }
  if (report.findings.length) lines.push('  findings');
  for (const f of report.findings) {
    const sev = f.severity === 'info' ? 'info' : f.severity.toUpperCase();
    lines.push(`    ${sev.padEnd(8)} ${t(f.message)}`);
    if (f.suggestion) {
      lines.push('             to allow it, add to the rules of your policy:');
      // phonehome lays the YAML out over lines: escape each, keep its newlines.
      for (const l of f.suggestion.trimEnd().split('\n')) lines.push(`               ${t(l)}`);
    }
  }
  if (report.truncated) {
    lines.push(
      `  capture bounds hit; counted without detail: ${Object.entries(report.truncated)
        .map(([k, n]) => `${t(k)} ${n}`)
        .join(', ')}`,
    );
  }
  return lines.join('\n') + '\n';
}
