import {
  destinationOf,
  summarizeEvents,
  type CheckReport,
  type ReportEvent,
} from '../core/report.js';
import { diffLines } from './render-diff.js';

function detail(e: ReportEvent): string {
  switch (e.kind) {
    case 'dns':
      return `dns   ${e.host} ${e.qtype} (asked ${e.resolver})`;
    case 'http':
      return `http  ${e.method} ${e.host ?? e.ip}:${e.port}${e.path ?? ''}${e.websocket ? ' (WebSocket upgrade)' : ''}${e.bodyBytes ? ` (${e.bodyBytes} body bytes)` : ''}${e.host ? ` [${e.ip}]` : ''}`;
    case 'tls':
      return `tls   ${destinationOf(e)}${e.alpn ? ` alpn=${e.alpn.join(',')}` : ''}${e.host || e.sni ? ` [${e.ip}]` : ''}`;
    case 'tcp':
      return `tcp   ${destinationOf(e)} (${e.bytesOut ?? 0} bytes sent)`;
    case 'udp':
      return `udp   ${destinationOf(e)} (${e.bytesOut ?? 0} bytes)`;
    case 'icmp':
      return `icmp  ${e.ip} (${e.count} echo request(s))`;
    case 'dropped':
      return `other ${e.count} packet(s) of other protocols dropped`;
    default:
      return e.kind;
  }
}

function short(cmd: string, max = 70): string {
  return cmd.length > max ? `${cmd.slice(0, max - 1)}…` : cmd;
}

function headline(report: CheckReport): string {
  const { subject, findings } = report;
  const id = `${subject.name}@${subject.version}`;
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
        .map((f) => `${f.id} (${f.severity})`),
    ),
  ];
  const leaks = findings.filter((f) => f.id === 'bait-leak').length;
  const parts = [
    ...(leaks ? [`BAIT SECRETS SENT OUT: ${leaks}`] : []),
    `${report.events.length} egress attempt(s) to ${destinations} destination(s)`,
    notAllowed ? `policy: ${notAllowed} not allowed` : 'policy: all allowed',
    ...(indicators.length ? [`indicators: ${indicators.join(', ')}`] : []),
  ];
  return `${report.verdict.toUpperCase()} ${id}: ${parts.join('; ')}`;
}

export function renderText(report: CheckReport): string {
  const lines = [headline(report)];
  if (report.policy)
    lines.push(
      `  policy: ${report.policy.sources.length ? report.policy.sources.join(' + ') : 'shipped defaults'}`,
    );
  for (const p of report.phases) {
    const note = p.note ? ` - ${p.note}` : '';
    lines.push(
      `  ${p.name} (${p.status}${p.status === 'skipped' ? '' : `, ${(p.durationMs / 1000).toFixed(1)} s`})${note}`,
    );
    if (p.calls)
      lines.push(
        `    called ${p.calls.functions} function(s) and ${p.calls.classes} class(es) ${p.calls.calls} time(s); ran ${p.calls.bins} command(s)`,
      );
    const inPhase = report.events.filter((e) => e.phase === p.name);
    const byPackage = new Map<string, ReportEvent[]>();
    for (const e of inPhase) {
      const key = e.package ?? '(package not identified)';
      byPackage.set(key, [...(byPackage.get(key) ?? []), e]);
    }
    for (const [pkg, events] of byPackage) {
      lines.push(`    ${pkg}`);
      for (const { event, times } of summarizeEvents(events)) {
        const by = event.process
          ? `  <- ${event.script ? `${event.script}: ` : ''}${short(event.process)}`
          : '';
        lines.push(`      ${detail(event)}${times > 1 ? ` x${times}` : ''}${by}`);
      }
    }
  }
  if (report.comparison) {
    lines.push(
      `  changes since ${report.comparison.before.name}@${report.comparison.before.version}`,
    );
    lines.push(...diffLines(report.comparison, '    '));
  }
  if (report.findings.length) lines.push('  findings');
  for (const f of report.findings) {
    const sev = f.severity === 'info' ? 'info' : f.severity.toUpperCase();
    lines.push(`    ${sev.padEnd(8)} ${f.message}`);
    if (f.suggestion) {
      lines.push('             to allow it, add to the rules of your policy:');
      for (const l of f.suggestion.trimEnd().split('\n')) lines.push(`               ${l}`);
    }
  }
  if (report.truncated) {
    lines.push(
      `  capture bounds hit; counted without detail: ${Object.entries(report.truncated)
        .map(([k, n]) => `${k} ${n}`)
        .join(', ')}`,
    );
  }
  return lines.join('\n') + '\n';
}
