import { diffIsEmpty, type DestinationChange, type ReportDiff } from '../core/compare.js';

const dest = (d: DestinationChange) =>
  `${d.phase.padEnd(8)} ${(d.package || '(package not identified)').padEnd(24)} ${d.destination}`;

/** The diff as text lines (without a trailing newline), indented by `indent`. */
export function diffLines(d: ReportDiff, indent = ''): string[] {
  const lines: string[] = [];
  const add = (l: string) => lines.push(`${indent}${l}`);
  if (d.phasesGainedEgress.length)
    add(`egress where there was none: ${d.phasesGainedEgress.join(', ')}`);
  if (d.phasesLostEgress.length) add(`no more egress in: ${d.phasesLostEgress.join(', ')}`);
  if (d.destinations.added.length || d.destinations.removed.length) {
    add('destinations');
    for (const x of d.destinations.added) add(`  + ${dest(x)}`);
    for (const x of d.destinations.removed) add(`  - ${dest(x)}`);
  }
  const s = d.installScripts;
  if (s.added.length || s.removed.length || s.changed.length) {
    add('install scripts');
    for (const x of s.added) add(`  + ${x.package} ${x.event}: ${x.after}`);
    for (const x of s.removed) add(`  - ${x.package} ${x.event}: ${x.before}`);
    for (const x of s.changed)
      add(
        x.bodyChanged
          ? `  ~ ${x.package} ${x.event}: ${x.after} (the file it runs changed)`
          : `  ~ ${x.package} ${x.event}: ${x.before} -> ${x.after}`,
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
    for (const x of p.added) add(`  + ${x}`);
    for (const x of p.removed) add(`  - ${x}`);
    for (const x of p.changed) add(`  ~ ${x.name} ${x.from} -> ${x.to}`);
  }
  if (diffIsEmpty(d)) add('no change in egress, install scripts, declarations or packages');
  return lines;
}

export function renderDiffText(d: ReportDiff): string {
  const head = `${d.after.name} ${d.before.version} -> ${d.after.version} (verdict ${d.before.verdict} -> ${d.after.verdict})`;
  return [head, ...diffLines(d, '  ')].join('\n') + '\n';
}

const cell = (s: string) => s.replace(/\|/g, '\\|');

export function renderDiffMarkdown(d: ReportDiff): string {
  const out: string[] = [
    `### ${cell(d.after.name)} ${d.before.version} → ${d.after.version}`,
    '',
    `Verdict: **${d.before.verdict}** → **${d.after.verdict}**`,
    '',
  ];
  if (d.phasesGainedEgress.length)
    out.push(`**Egress where there was none:** ${d.phasesGainedEgress.join(', ')}`, '');
  const rows = [
    ...d.destinations.added.map((x) => ['added', x]),
    ...d.destinations.removed.map((x) => ['removed', x]),
  ] as [string, DestinationChange][];
  if (rows.length) {
    out.push('| change | phase | package | destination |', '| --- | --- | --- | --- |');
    for (const [c, x] of rows)
      out.push(`| ${c} | ${x.phase} | ${cell(x.package || '?')} | \`${cell(x.destination)}\` |`);
    out.push('');
  }
  const s = d.installScripts;
  if (s.added.length || s.removed.length || s.changed.length) {
    out.push('**Install scripts**', '');
    for (const x of s.added) out.push(`- added: ${cell(x.package)} \`${x.event}\`: \`${x.after}\``);
    for (const x of s.removed)
      out.push(`- removed: ${cell(x.package)} \`${x.event}\`: \`${x.before}\``);
    for (const x of s.changed)
      out.push(
        `- changed: ${cell(x.package)} \`${x.event}\`: ${x.bodyChanged ? `\`${x.after}\` (the file it runs changed)` : `\`${x.before}\` → \`${x.after}\``}`,
      );
    out.push('');
  }
  if (d.declarations.widened.length || d.declarations.narrowed.length) {
    out.push('**Declared egress**', '');
    for (const x of d.declarations.widened)
      out.push(`- widened: ${cell(x.package)} ${x.phase} \`${x.destination}\``);
    for (const x of d.declarations.narrowed)
      out.push(`- narrowed: ${cell(x.package)} ${x.phase} \`${x.destination}\``);
    out.push('');
  }
  const p = d.packages;
  if (p.added.length || p.removed.length || p.changed.length) {
    out.push('<details><summary>Packages of the tree</summary>', '');
    for (const x of p.added) out.push(`- added ${cell(x)}`);
    for (const x of p.removed) out.push(`- removed ${cell(x)}`);
    for (const x of p.changed) out.push(`- ${cell(x.name)} ${x.from} → ${x.to}`);
    out.push('', '</details>', '');
  }
  if (diffIsEmpty(d))
    out.push('No change in egress, install scripts, declarations or packages.', '');
  return out.join('\n');
}
