/**
 * A diff of two reports as text and as Markdown. Names, versions, destinations and script command
 * lines come from the packages: escaped here as they are written (forTerminal `t`, forMarkdown
 * `md`, forMarkdownCode `code`), never in the diff itself.
 */
import { diffIsEmpty, type DestinationChange, type ReportDiff } from '../core/compare.js';
import { forMarkdown as md, forMarkdownCode, forTerminal as t } from '../core/escape.js';

const dest = (d: DestinationChange) =>
  `${t(d.phase).padEnd(8)} ${(d.package ? t(d.package) : '(package not identified)').padEnd(24)} ${t(d.destination)}`;

/** The diff as text lines (without a trailing newline), indented by `indent`. */
export function diffLines(d: ReportDiff, indent = ''): string[] {
  const lines: string[] = [];
  const add = (l: string) => lines.push(`${indent}${l}`);
  if (d.phasesGainedEgress.length)
    add(`egress where there was none: ${t(d.phasesGainedEgress.join(', '))}`);
  if (d.phasesLostEgress.length) add(`no more egress in: ${t(d.phasesLostEgress.join(', '))}`);
  if (d.destinations.added.length || d.destinations.removed.length) {
    add('destinations');
    for (const x of d.destinations.added) add(`  + ${dest(x)}`);
    for (const x of d.destinations.removed) add(`  - ${dest(x)}`);
  }
  const s = d.installScripts;
  if (s.added.length || s.removed.length || s.changed.length) {
    add('install scripts');
    const head = (x: { package: string; event: string }) => `${t(x.package)} ${t(x.event)}`;
    for (const x of s.added) add(`  + ${head(x)}: ${t(x.after ?? '')}`);
    for (const x of s.removed) add(`  - ${head(x)}: ${t(x.before ?? '')}`);
    for (const x of s.changed)
      add(
        x.bodyChanged
          ? `  ~ ${head(x)}: ${t(x.after ?? '')} (the file it runs changed)`
          : `  ~ ${head(x)}: ${t(x.before ?? '')} -> ${t(x.after ?? '')}`,
      );
  }
  if (d.declarations.widened.length || d.declarations.narrowed.length) {
    add('declared egress');
    for (const x of d.declarations.widened) add(`  + ${dest(x)}`);
    for (const x of d.declarations.narrowed) add(`  - ${dest(x)}`);
  }
  const p = d.packages;
  if (p.added.length || p.removed.length || p.changed.length) {
    add('packages of the tree');
    for (const x of p.added) add(`  + ${t(x)}`);
    for (const x of p.removed) add(`  - ${t(x)}`);
    for (const x of p.changed) add(`  ~ ${t(x.name)} ${t(x.from)} -> ${t(x.to)}`);
  }
  if (diffIsEmpty(d)) add('no change in egress, install scripts, declarations or packages');
  return lines;
}

export function renderDiffText(d: ReportDiff): string {
  const head = `${t(d.after.name)} ${t(d.before.version)} -> ${t(d.after.version)} (verdict ${d.before.verdict} -> ${d.after.verdict})`;
  return [head, ...diffLines(d, '  ')].join('\n') + '\n';
}

/** A code span in a list item (outside a table: a pipe needs no backslash there). */
const code = (s: string | undefined) => forMarkdownCode(s ?? '', { inTable: false });

export function renderDiffMarkdown(d: ReportDiff): string {
  const out: string[] = [
    `### ${md(d.after.name)} ${md(d.before.version)} → ${md(d.after.version)}`,
    '',
    `Verdict: **${d.before.verdict}** → **${d.after.verdict}**`,
    '',
  ];
  if (d.phasesGainedEgress.length)
    out.push(`**Egress where there was none:** ${md(d.phasesGainedEgress.join(', '))}`, '');
  const rows = [
    ...d.destinations.added.map((x) => ['added', x]),
    ...d.destinations.removed.map((x) => ['removed', x]),
  ] as [string, DestinationChange][];
  if (rows.length) {
    out.push('| change | phase | package | destination |', '| --- | --- | --- | --- |');
    for (const [c, x] of rows)
      out.push(
        `| ${c} | ${md(x.phase)} | ${md(x.package || '?')} | ${forMarkdownCode(x.destination)} |`,
      );
    out.push('');
  }
  const s = d.installScripts;
  if (s.added.length || s.removed.length || s.changed.length) {
    out.push('**Install scripts**', '');
    for (const x of s.added)
      out.push(`- added: ${md(x.package)} ${code(x.event)}: ${code(x.after)}`);
    for (const x of s.removed)
      out.push(`- removed: ${md(x.package)} ${code(x.event)}: ${code(x.before)}`);
    for (const x of s.changed)
      out.push(
        `- changed: ${md(x.package)} ${code(x.event)}: ${x.bodyChanged ? `${code(x.after)} (the file it runs changed)` : `${code(x.before)} → ${code(x.after)}`}`,
      );
    out.push('');
  }
  if (d.declarations.widened.length || d.declarations.narrowed.length) {
    out.push('**Declared egress**', '');
    for (const x of d.declarations.widened)
      out.push(`- widened: ${md(x.package)} ${md(x.phase)} ${code(x.destination)}`);
    for (const x of d.declarations.narrowed)
      out.push(`- narrowed: ${md(x.package)} ${md(x.phase)} ${code(x.destination)}`);
    out.push('');
  }
  const p = d.packages;
  if (p.added.length || p.removed.length || p.changed.length) {
    out.push('<details><summary>Packages of the tree</summary>', '');
    for (const x of p.added) out.push(`- added ${md(x)}`);
    for (const x of p.removed) out.push(`- removed ${md(x)}`);
    for (const x of p.changed) out.push(`- ${md(x.name)} ${md(x.from)} → ${md(x.to)}`);
    out.push('', '</details>', '');
  }
  if (diffIsEmpty(d))
    out.push('No change in egress, install scripts, declarations or packages.', '');
  return out.join('\n');
}
