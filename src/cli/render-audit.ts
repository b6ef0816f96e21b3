import type { AuditReport } from '../audit/audit.js';
import { SEVERITIES } from '../core/terms.js';

const ORDER = [...SEVERITIES].reverse();

function counts(r: AuditReport): string {
  const parts = ORDER.filter((s) => r.summary.findings[s]).map(
    (s) => `${r.summary.findings[s]} ${s}`,
  );
  return parts.length ? parts.join(', ') : 'none';
}

export function renderAuditText(r: AuditReport): string {
  const s = r.summary;
  const lines = [
    `${r.verdict.toUpperCase()} audit of ${r.project.name}@${r.project.version} (${r.lockfile})`,
    `  ${s.checked} of ${s.packages} package(s) checked, ${s.fromStore} from the result store, ${s.withInstallScripts} with install scripts, ${s.withEgress} with egress`,
    ...(s.notInstalled
      ? [
          `  ${s.notInstalled} optional package(s) for other platforms not installed here, so not checked`,
        ]
      : []),
    ...(s.notRun
      ? [
          `  ${s.notRun} package(s) NOT RUN: ${r.packages
            .filter((p) => p.status === 'not-run')
            .map((p) => p.id)
            .join(', ')}`,
        ]
      : []),
    `  findings: ${counts(r)}`,
  ];
  if (s.unattributed)
    lines.push(
      `  ${s.unattributed} attempt(s) could not be tied to a package (no process: see docs/audit.md)${s.unattributedLeaks.length ? `; BAIT SECRETS IN THEM: ${s.unattributedLeaks.join(', ')}` : ''}`,
    );
  const flagged = r.packages.filter((p) => p.report?.findings.some((f) => f.severity !== 'info'));
  for (const p of flagged) {
    lines.push('', `${p.verdict.toUpperCase()} ${p.id}${p.fromStore ? ' (from the store)' : ''}`);
    lines.push(`  via ${p.path.join(' > ')}`);
    for (const f of (p.report?.findings ?? []).filter((x) => x.severity !== 'info'))
      lines.push(`  ${f.severity.toUpperCase().padEnd(8)} ${f.message}`);
  }
  const failedInstalls = r.packages.filter((p) =>
    p.report?.phases.some(
      (x) => x.name === 'install' && (x.status === 'failed' || x.status === 'timeout'),
    ),
  );
  if (failedInstalls.length)
    lines.push(
      '',
      `install failed or timed out for ${failedInstalls.map((p) => p.id).join(', ')}: what their install would have done after that point was not observed`,
    );
  const allowed = r.packages.filter((p) => p.report?.events.length && !flagged.includes(p));
  for (const p of allowed) {
    const rules = [
      ...new Set(
        (p.report?.findings ?? [])
          .filter((f) => f.id === 'egress-allowed')
          .map(
            (f) =>
              `${f.destination} (${f.rule === 'declaration' ? 'its declaration' : f.rule?.startsWith('known-egress:') ? `shipped ${f.rule}` : f.rule})`,
          ),
      ),
    ];
    lines.push('', `egress allowed: ${p.id}: ${rules.join(', ')}`);
  }
  return lines.join('\n') + '\n';
}

export function renderAuditMarkdown(r: AuditReport): string {
  const s = r.summary;
  const out = [
    `## phonehome audit: ${r.verdict.toUpperCase()}`,
    '',
    `\`${r.project.name}@${r.project.version}\`: ${s.checked} of ${s.packages} packages checked, ${s.fromStore} from the result store, ${s.withInstallScripts} with install scripts, ${s.withEgress} with egress. Findings: ${counts(r)}.`,
    '',
  ];
  if (s.unattributedLeaks.length)
    out.push(
      `**Bait secrets in attempts no package could be tied to:** ${s.unattributedLeaks.join(', ')}`,
      '',
    );
  const flagged = r.packages.filter((p) => p.report?.findings.some((f) => f.severity !== 'info'));
  if (flagged.length) {
    out.push('| package | verdict | path | findings |', '| --- | --- | --- | --- |');
    for (const p of flagged)
      out.push(
        `| \`${p.id}\` | ${p.verdict} | ${p.path.join(' › ')} | ${(p.report?.findings ?? [])
          .filter((f) => f.severity !== 'info')
          .map((f) => `${f.severity}: ${f.message.replace(/\|/g, '\\|')}`)
          .join('<br>')} |`,
      );
    out.push('');
  }
  return out.join('\n');
}
