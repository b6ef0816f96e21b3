/**
 * `npm run eval:real`: the false-positive suite. Checks every package of eval/real-packages.json
 * (widely used registry packages, pinned) with the shipped default policy, in fresh sandboxes, and
 * prints a table, each failure's findings and a last line `false positives F/N`. A verdict of fail
 * is a false positive (what `gate` blocks and a `check` user acts on); a warning is listed with
 * its findings but is not one. With --write the table goes to eval/real-results.md, checked in
 * like the detection scorecard.
 *
 *   --sample N       N packages spread evenly over the list (CI runs 20)
 *   --concurrency N  checks at once (default 2)
 *   --only a,b       these packages (by name) only
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { check } from '../src/check/check.js';
import type { CheckReport } from '../src/core/report.js';
import { parseId } from '../src/core/package-id.js';
import { packageRoot } from '../src/paths.js';
import { evalSandbox } from './sandbox.js';

interface Entry {
  spec: string;
  category: string;
}

interface Row {
  entry: Entry;
  verdict: CheckReport['verdict'] | 'error';
  /** Findings above info, as `severity id destination`; or the error. */
  notes: string[];
  seconds: number;
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** `n` entries spread evenly over the list, always the same ones for the same list. */
function sample<T>(list: T[], n: number): T[] {
  if (n >= list.length) return list;
  return Array.from({ length: n }, (_, i) => list[Math.floor((i * list.length) / n)] as T);
}

async function main(): Promise<void> {
  const root = packageRoot();
  const all = (
    JSON.parse(readFileSync(join(root, 'eval', 'real-packages.json'), 'utf8')) as {
      packages: Entry[];
    }
  ).packages;
  const only = arg('--only')?.split(',');
  const n = Number(arg('--sample') ?? all.length);
  const concurrency = Math.max(1, Number(arg('--concurrency') ?? 2));
  const list = sample(
    only ? all.filter((e) => only.includes(parseId(e.spec).name)) : all,
    Number.isInteger(n) && n > 0 ? n : all.length,
  );
  const { engine, images, policy } = await evalSandbox();
  const started = performance.now();
  const rows: Row[] = [];
  const one = async (entry: Entry): Promise<Row> => {
    const t0 = performance.now();
    let last: unknown;
    // A registry hiccup is not the package's fault: one more try before it counts as an error.
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const report = await check(engine, images, entry.spec, { policy });
        return {
          entry,
          verdict: report.verdict,
          notes: report.findings
            .filter((f) => f.severity !== 'info')
            .map((f) => `${f.severity} ${f.id}${f.destination ? ` ${f.destination}` : ''}`),
          seconds: (performance.now() - t0) / 1000,
        };
      } catch (e) {
        last = e;
      }
    }
    const e = last as { code?: string; message?: string };
    return {
      entry,
      verdict: 'error',
      notes: [`${e.code ?? 'error'}: ${(e.message ?? String(last)).split('\n')[0]}`],
      seconds: (performance.now() - t0) / 1000,
    };
  };
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, list.length) }, async () => {
      while (next < list.length) {
        const entry = list[next++] as Entry;
        const row = await one(entry);
        rows.push(row);
        process.stderr.write(
          `[eval:real] ${rows.length}/${list.length} ${entry.spec}: ${row.verdict} in ${row.seconds.toFixed(1)} s${row.notes.length ? ` (${row.notes.join('; ')})` : ''}\n`,
        );
      }
    }),
  );
  rows.sort((a, b) => list.indexOf(a.entry) - list.indexOf(b.entry));
  const total = (performance.now() - started) / 1000;
  const count = (v: Row['verdict']) => rows.filter((r) => r.verdict === v).length;
  const cell = (s: string) => s.replace(/\|/g, '\\|');
  const md = [
    '| package | category | verdict | findings above info | s |',
    '| --- | --- | --- | --- | --- |',
    ...rows.map(
      (r) =>
        `| ${cell(r.entry.spec)} | ${cell(r.entry.category)} | ${r.verdict} | ${cell(r.notes.join('; '))} | ${r.seconds.toFixed(1)} |`,
    ),
  ];
  const failures = rows.filter((r) => r.verdict === 'fail' || r.verdict === 'error');
  const last = `false positives ${count('fail')}/${rows.length}, warnings ${count('warn')}, errors ${count('error')}`;
  const text = [
    ...md,
    '',
    ...(failures.length
      ? ['Failures:', ...failures.map((r) => `- ${r.entry.spec}: ${r.notes.join('; ')}`), '']
      : []),
    `eval:real time ${total.toFixed(0)} s, concurrency ${concurrency}`,
    last,
  ].join('\n');
  process.stdout.write(`${text}\n`);
  if (process.argv.includes('--write'))
    writeFileSync(
      join(root, 'eval', 'real-results.md'),
      `# False positives on widely used packages\n\nWritten by \`npm run eval:real -- --write\` (shipped default policy, fresh sandbox per package, laptop identity, ${concurrency} checks at once). Times are wall-clock seconds per check on the machine that wrote it, staging from the registry included.\n\n${md.join('\n')}\n\neval:real time ${total.toFixed(0)} s\n\n${last}\n`,
    );
  if (failures.length > 0) process.exitCode = 1;
}

await main();
