/**
 * What `watch` prints: a line per new version as it is judged, and for `--once --markdown` a
 * summary fit for an issue or a job summary. Names, versions and destinations come from the
 * registry and the packages: escaped as they are written.
 */
import { forMarkdown as md, forMarkdownCode as code, forTerminal as t } from '../core/escape.js';
import type { WatchResult } from '../watch/watch.js';

/** 4.2 s, 3 min, 5 h, 2 days. */
export function duration(ms: number): string {
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min`;
  if (ms < 172_800_000) return `${Math.round(ms / 3_600_000)} h`;
  return `${Math.round(ms / 86_400_000)} days`;
}

const since = (r: WatchResult) =>
  r.sincePublishedMs !== undefined
    ? `verdict ${duration(r.sincePublishedMs)} after publication`
    : '';

export function watchLine(r: WatchResult): string {
  const worst = r.report.findings.find((f) => f.severity !== 'info');
  const parts = [
    `${r.verdict.toUpperCase().padEnd(4)} ${t(r.name)} ${t(r.from)} -> ${t(r.to)}${r.direct ? '' : ' (transitive)'}`,
    r.knownMalicious
      ? `KNOWN MALICIOUS: ${t(r.knownMalicious.join(', '))}`
      : r.newDestinations.length
        ? `new: ${t(r.newDestinations.slice(0, 5).join(', '))}${r.newDestinations.length > 5 ? `, and ${r.newDestinations.length - 5} more` : ''}`
        : 'no new destinations',
    ...(worst && r.verdict !== 'pass' ? [`${worst.severity}: ${t(worst.id)}`] : []),
    ...(since(r) ? [since(r)] : []),
    ...(r.fromStore || r.reportedBefore ? ['(from the result store)'] : []),
  ];
  return parts.join('  ') + '\n';
}

export function renderWatchMarkdown(
  lockfile: string,
  results: WatchResult[],
  verdict: string,
  errors: { name: string; from: string; to: string; message: string }[] = [],
): string {
  const out = [`## phonehome watch: ${verdict.toUpperCase()}`, ''];
  if (errors.length) {
    out.push(
      '**Not checked** (the environment kept them from running; their verdict is unknown):',
      '',
    );
    for (const e of errors)
      out.push(
        `- ${code(`${e.name}@${e.to}`, { inTable: false })} (from ${code(e.from, { inTable: false })}): ${md(e.message)}`,
      );
    out.push('');
  }
  if (!results.length) {
    out.push(
      `No version newer than ${code(lockfile, { inTable: false })} pins is admitted by its ranges.`,
      '',
    );
    return out.join('\n');
  }
  out.push(
    `What a routine update of ${code(lockfile, { inTable: false })} would bring, each new version checked against the version the lockfile pins.`,
    '',
    '| package | update | verdict | new destinations | published | verdict after |',
    '| --- | --- | --- | --- | --- | --- |',
  );
  for (const r of results)
    out.push(
      `| ${code(r.name)}${r.direct ? '' : ' (transitive)'} | ${code(r.from)} → ${code(r.to)} | ${r.verdict}${r.knownMalicious ? ` (known malicious: ${md(r.knownMalicious.join(', '))})` : ''} | ${r.newDestinations.map((d) => code(d)).join('<br>') || '—'} | ${r.publishedAt ? md(r.publishedAt.slice(0, 16).replace('T', ' ')) : '—'} | ${r.sincePublishedMs !== undefined ? duration(r.sincePublishedMs) : '—'} |`,
    );
  out.push('');
  for (const r of results.filter((x) => x.verdict !== 'pass')) {
    out.push(`### ${code(`${r.name}@${r.to}`, { inTable: false })}: ${r.verdict}`, '');
    for (const f of r.report.findings.filter((x) => x.severity !== 'info').slice(0, 20))
      out.push(`- **${f.severity}** ${md(f.message)}`);
    out.push('');
  }
  return out.join('\n');
}
