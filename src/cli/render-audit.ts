/**
 * An audit as text and as Markdown. Package ids, paths, destinations and finding messages come
 * from the packages (and the lockfile): escaped as they are written (forTerminal `t`, forMarkdown
 * `md`, forMarkdownCode `code`), never in the report.
 */
import type { AuditReport } from '../audit/audit.js';
import { forMarkdown as md, forMarkdownCode as code, forTerminal as t } from '../core/escape.js';
import { formatId } from '../core/package-id.js';
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
    `${r.verdict.toUpperCase()} audit of ${t(formatId(r.project.name, r.project.version))} (${t(r.lockfile)}${r.lockfileFormat && r.lockfileFormat !== 'npm' ? `, ${r.lockfileFormat}` : ''})`,
    ...(r.sources ?? []).map((l) => `  tarballs: ${t(l)}`),
    ...(r.registryIntegrity?.length
      ? [
          `  integrity of ${r.registryIntegrity.length} package(s) from the registry, not the lockfile (Yarn Berry keeps a checksum of its own zip instead)`,
        ]
      : []),
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
            .map((p) => t(p.id))
            .join(', ')}`,
        ]
      : []),
    ...(s.knownMalicious
      ? [
          `  ${s.knownMalicious} KNOWN MALICIOUS version(s), flagged without running: ${r.packages
            .filter((p) => p.status === 'known-malicious')
            .map((p) => t(p.id))
            .join(', ')}`,
        ]
      : []),
    `  findings: ${counts(r)}`,
  ];
  if (s.unattributed)
    lines.push(
      `  ${s.unattributed} attempt(s) could not be tied to a package (no process: see docs/audit.md)${s.unattributedLeaks.length ? `; BAIT SECRETS IN THEM: ${t(s.unattributedLeaks.join(', '))}` : ''}`,
    );
  const flagged = r.packages.filter((p) => p.report?.findings.some((f) => f.severity !== 'info'));
  for (const p of flagged) {
    lines.push(
      '',
      `${p.verdict.toUpperCase()} ${t(p.id)}${p.fromStore ? ' (from the store)' : ''}`,
    );
    lines.push(`  via ${p.path.map(t).join(' > ')}`);
    for (const f of (p.report?.findings ?? []).filter((x) => x.severity !== 'info'))
      lines.push(`  ${f.severity.toUpperCase().padEnd(8)} ${t(f.message)}`);
  }
  const failedInstalls = r.packages.filter((p) =>
    p.report?.phases.some(
      (x) => x.name === 'install' && (x.status === 'failed' || x.status === 'timeout'),
    ),
  );
  if (failedInstalls.length)
    lines.push(
      '',
      `install failed or timed out for ${failedInstalls.map((p) => t(p.id)).join(', ')}: what their install would have done after that point was not observed`,
    );
  const allowed = r.packages.filter((p) => p.report?.events.length && !flagged.includes(p));
  for (const p of allowed) {
    const rules = [
      ...new Set(
        (p.report?.findings ?? [])
          .filter((f) => f.id === 'egress-allowed')
          .map(
            (f) =>
              `${t(`${f.destination}`)} (${f.rule === 'declaration' ? 'its declaration' : t(`${f.rule?.startsWith('known-egress:') ? `shipped ${f.rule}` : f.rule}`)})`,
          ),
      ),
    ];
    lines.push('', `egress allowed: ${t(p.id)}: ${rules.join(', ')}`);
  }
  return lines.join('\n') + '\n';
}

export function renderAuditMarkdown(r: AuditReport): string {
  const s = r.summary;
  const out = [
    `## phonehome audit: ${r.verdict.toUpperCase()}`,
    '',
    `${code(formatId(r.project.name, r.project.version), { inTable: false })}: ${s.checked} of ${s.packages} packages checked, ${s.fromStore} from the result store, ${s.withInstallScripts} with install scripts, ${s.withEgress} with egress. Findings: ${counts(r)}.`,
    '',
  ];
  if (s.unattributedLeaks.length)
    out.push(
      `**Bait secrets in attempts no package could be tied to:** ${md(s.unattributedLeaks.join(', '))}`,
      '',
    );
  const flagged = r.packages.filter((p) => p.report?.findings.some((f) => f.severity !== 'info'));
  if (flagged.length) {
    out.push('| package | verdict | path | findings |', '| --- | --- | --- | --- |');
    for (const p of flagged)
      out.push(
        `| ${code(p.id)} | ${p.verdict} | ${p.path.map(md).join(' › ')} | ${(
          p.report?.findings ?? []
        )
          .filter((f) => f.severity !== 'info')
          .map((f) => `${f.severity}: ${md(f.message)}`)
          .join('<br>')} |`,
      );
    out.push('');
  }
  return out.join('\n');
}
