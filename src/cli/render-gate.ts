/**
 * A gate as text, as a pull request comment (Markdown) and as SARIF. Names, versions, paths and
 * integrities come from the pull request's lockfile, destinations, command lines, notes and
 * finding messages from the packages: the text and Markdown forms escape each as they write it
 * (forTerminal `t`, forMarkdown `md`, forMarkdownCode `code`). SARIF is JSON, and its strings
 * stay as observed.
 */
import {
  forMarkdown as md,
  forMarkdownCode as code,
  forTerminal as t,
  markdownFence,
} from '../core/escape.js';
import { formatId } from '../core/package-id.js';
import { pathAfter, refusal, type Finding, type ReportEvent } from '../core/report.js';
import type { GatePackage, GateReport } from '../gate/gate.js';
import { phonehomeVersion } from '../paths.js';

/** A code span outside a table. */
const inline = (s: string) => code(s, { inTable: false });
const judged = (p: GatePackage) => p.report.findings.filter((f) => f.severity !== 'info');
/** What changed, plain (for SARIF); `esc` escapes the versions for text or Markdown. */
const change = (p: GatePackage, esc: (s: string) => string = (s) => s) =>
  p.kind === 'added' ? `added ${esc(p.to)}` : `${esc(`${p.from}`)} → ${esc(p.to)} (${p.kind})`;

/** Direct dependencies first (what the pull request changed by hand), then by name. */
function ordered(r: GateReport): GatePackage[] {
  return [...r.packages].sort(
    (a, b) => a.path.length - b.path.length || a.name.localeCompare(b.name),
  );
}

const installNote = (p: GatePackage) => {
  const install = p.report.phases.find((x) => x.name === 'install');
  return install && (install.status === 'failed' || install.status === 'timeout')
    ? `install ${install.status}${install.note ? ` (${install.note})` : ''}: what it would have done after that point was not observed`
    : undefined;
};

const ruleName = (rule: string | undefined) =>
  rule === 'declaration'
    ? 'the package’s own declaration'
    : rule?.startsWith('known-egress:')
      ? `phonehome’s shipped known-egress list (${rule.slice('known-egress:'.length)}; set knownEgress: false in your policy to review these yourself)`
      : rule;

export function renderGateText(r: GateReport): string {
  const lines = [
    `${r.verdict.toUpperCase()} gate: ${r.packages.length} package(s) added or changed, ${r.removed.length} removed (${t(r.base)} → ${t(r.head)})`,
  ];
  for (const x of r.retargeted)
    lines.push(
      `  FAIL ${t(formatId(x.name, x.version))}: locked to another tarball with no version change (${t(x.before.slice(0, 20))}… → ${t(x.after.slice(0, 20))}…)`,
    );
  for (const p of ordered(r)) {
    lines.push(
      `  ${p.verdict.toUpperCase().padEnd(4)} ${t(p.name)} ${change(p, t)}${p.knownMalicious ? '  KNOWN MALICIOUS, not run' : ''}  via ${p.path.map(t).join(' > ')}`,
    );
    for (const d of p.report.comparison?.destinations.added ?? [])
      lines.push(`       + ${t(d.phase)} ${t(d.destination)}`);
    for (const d of p.report.comparison?.destinations.removed ?? [])
      lines.push(`       - ${t(d.phase)} ${t(d.destination)}`);
    for (const f of judged(p)) lines.push(`       ${f.severity.toUpperCase()} ${t(f.message)}`);
    const note = installNote(p);
    if (note) lines.push(`       note: ${t(note)}`);
  }
  for (const r2 of r.removed) lines.push(`  removed ${t(formatId(r2.name, r2.version))}`);
  if (r.notInstalled.length)
    lines.push(
      `  not installed on this platform, not checked: ${r.notInstalled.map(t).join(', ')}`,
    );
  return lines.join('\n') + '\n';
}

function allowedBy(p: GatePackage): Finding[] {
  return p.report.findings.filter(
    (f) => f.id === 'egress-allowed' || (f.id === 'new-destination' && f.severity === 'info'),
  );
}

/** A pull request comment: a table, then per package what changed, the findings and how to allow. */
export function renderGateMarkdown(r: GateReport): string {
  const icon = { pass: '✅', warn: '⚠️', fail: '❌' }[r.verdict];
  const out = [
    `## ${icon} phonehome: ${r.verdict.toUpperCase()}`,
    '',
    r.packages.length
      ? `${r.packages.length} package(s) added or changed in ${inline(r.lockfile)} (${md(r.base)} → ${md(r.head)}); ${r.removed.length} removed.`
      : `No package added or changed in ${inline(r.lockfile)} (${md(r.base)} → ${md(r.head)}).`,
    '',
  ];
  if (r.retargeted.length) {
    out.push(
      "**Locked to other content with no version change** (a lockfile edit that swaps a package's tarball):",
      '',
    );
    for (const x of r.retargeted)
      out.push(
        `- ❌ ${inline(formatId(x.name, x.version))} (${x.path.map(md).join(' › ')}): integrity ${inline(`${x.before.slice(0, 24)}…`)} → ${inline(`${x.after.slice(0, 24)}…`)}`,
      );
    out.push('');
  }
  if (r.removed.length)
    out.push(
      `Removed: ${r.removed.map((x) => inline(formatId(x.name, x.version))).join(', ')}.`,
      '',
    );
  if (r.packages.length) {
    out.push(
      '| package | change | verdict | new destinations | findings |',
      '| --- | --- | --- | --- | --- |',
    );
    for (const p of ordered(r)) {
      const added = (p.report.comparison?.destinations.added ?? []).map(
        (d) => `${md(d.phase)}: ${code(d.destination)}`,
      );
      const fresh =
        p.kind === 'added'
          ? p.report.findings
              .filter((f) => f.id.startsWith('egress-') && f.destination)
              .map((f) => `${md(`${f.phase}`)}: ${code(`${f.destination}`)}`)
          : added;
      out.push(
        `| ${code(p.name)}${p.path.length > 2 ? ` <sub>via ${p.path.slice(1, -1).map(md).join(' › ')}</sub>` : ''} | ${change(p, md)} | ${p.verdict}${p.knownMalicious ? ' (known malicious, not run)' : ''} | ${fresh.length ? [...new Set(fresh)].join('<br>') : '—'} | ${judged(p).length ? `${judged(p).length} (${[...new Set(judged(p).map((f) => f.severity))].join(', ')})` : '—'} |`,
      );
    }
    out.push('');
  }
  for (const p of ordered(r)) {
    const findings = judged(p);
    const allowed = allowedBy(p);
    const removed = p.report.comparison?.destinations.removed ?? [];
    const note = installNote(p);
    if (!findings.length && !allowed.length && !removed.length && !note) continue;
    out.push(
      `### ${inline(p.name)} ${change(p, md)}`,
      '',
      `Brought in by ${p.path.map(inline).join(' › ')}.`,
      '',
    );
    for (const f of findings) out.push(`- **${f.severity}** ${md(f.message)}`);
    for (const f of allowed)
      out.push(
        `- allowed: ${inline(`${f.destination}`)} during ${md(`${f.phase}`)} — allowed by ${md(`${ruleName(f.rule)}`)}`,
      );
    for (const d of removed)
      out.push(`- no longer reached: ${inline(d.destination)} during ${md(d.phase)}`);
    if (note) out.push(`- note: ${md(note)}`);
    const snippets = findings.filter((f) => f.suggestion);
    if (snippets.length) {
      // phonehome lays the YAML out over lines: each is escaped, and the fence is longer than any
      // run of backticks in them, so no line can close the block.
      const yaml = [
        'rules:',
        ...snippets.flatMap((f) =>
          (f.suggestion ?? '')
            .trimEnd()
            .split('\n')
            .map((l) => `  ${t(l)}`),
        ),
      ];
      const fence = markdownFence(yaml);
      out.push(
        '',
        '<details><summary>Expected? Allow it in phonehome.policy.yaml, reviewed in this pull request</summary>',
        '',
        `${fence}yaml`,
        ...yaml,
        fence,
        '',
        '</details>',
      );
    }
    const events = p.report.events;
    if (events.length) {
      out.push(
        '',
        `<details><summary>${events.length} egress attempt(s)</summary>`,
        '',
        '| phase | kind | destination | process |',
        '| --- | --- | --- | --- |',
      );
      for (const e of events.slice(0, 50))
        out.push(
          `| ${md(e.phase)} | ${md(kindOf(e))} | ${code(targetLine(e))}${e.intercept === 'refused' || e.intercept === 'failed' ? ` (${md(refusal(e.tlsAlert, e.intercept))})` : ''} | ${e.process ? code(e.process) : ''} |`,
        );
      if (events.length > 50) out.push(`| … | | ${events.length - 50} more | |`);
      out.push('', '</details>');
    }
    out.push('');
  }
  if (r.notInstalled.length)
    out.push(
      `Not installed on this platform, not checked: ${r.notInstalled.map(inline).join(', ')}.`,
      '',
    );
  return out.join('\n').trimEnd() + '\n';
}

const LEVEL: Record<Finding['severity'], 'error' | 'warning' | 'note'> = {
  critical: 'error',
  high: 'error',
  medium: 'warning',
  low: 'warning',
  info: 'note',
};

/** SARIF 2.1.0: one result per finding of low severity or above, at the lockfile entry. */
export function renderGateSarif(r: GateReport): object {
  const rules = new Map<string, { id: string; shortDescription: { text: string } }>();
  const results: object[] = [];
  for (const p of r.packages)
    for (const f of judged(p)) {
      if (!rules.has(f.id))
        rules.set(f.id, {
          id: f.id,
          shortDescription: {
            text: f.rule?.startsWith('indicator:') ? `indicator ${f.id}` : f.id.replace(/-/g, ' '),
          },
        });
      results.push({
        ruleId: f.id,
        level: LEVEL[f.severity],
        message: { text: `${p.name} ${change(p)}: ${f.message}` },
        locations: [
          {
            physicalLocation: {
              artifactLocation: { uri: r.lockfile },
              ...(p.line ? { region: { startLine: p.line } } : {}),
            },
          },
        ],
        properties: {
          severity: f.severity,
          package: formatId(p.name, p.to),
          phase: f.phase ?? null,
        },
      });
    }
  for (const t of r.retargeted) {
    rules.set('lockfile-retargeted', {
      id: 'lockfile-retargeted',
      shortDescription: { text: 'package locked to other content with no version change' },
    });
    results.push({
      ruleId: 'lockfile-retargeted',
      level: 'error',
      message: {
        text: `${formatId(t.name, t.version)} is locked to another tarball with no version change (${t.before} → ${t.after})`,
      },
      locations: [{ physicalLocation: { artifactLocation: { uri: r.lockfile } } }],
    });
  }
  return {
    version: '2.1.0',
    $schema: 'https://json.schemastore.org/sarif-2.1.0.json',
    runs: [
      {
        tool: {
          driver: {
            name: 'phonehome',
            version: phonehomeVersion(),
            rules: [...rules.values()],
          },
        },
        results,
      },
    ],
  };
}

/** An attempt's kind as the comment shows it: a request read inside TLS is `https`. */
function kindOf(e: ReportEvent): string {
  return e.kind === 'tls' && e.method !== undefined ? 'https' : e.kind;
}

/** Where an attempt went, with the method and path of a request that was read (path cut at 200). */
function targetLine(e: ReportEvent): string {
  const where = `${e.sni ?? e.host ?? e.ip ?? ''}${e.port ? `:${e.port}` : ''}`;
  if (e.method === undefined) return where;
  const path = e.path ?? '';
  return `${e.method} ${where}${pathAfter(path.length > 200 ? `${path.slice(0, 200)}…` : path)}`;
}
