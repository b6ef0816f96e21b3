/**
 * `npm run eval`: the detection scorecard. Checks every fixture listed in fixtures/eval.json with
 * the shipped default policy (no policy file from the working directory), in fresh sandboxes,
 * and prints a table and a last line `recall H/N, false positives F/M`. With --write the table
 * goes to fixtures/eval-results.md too, which is checked in so changes in detection show up in
 * review. Nothing here or in phonehome knows a fixture's names or hosts: the verdict is the
 * plain `check` verdict.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { check } from '../src/check/check.js';
import type { CheckReport } from '../src/core/report.js';
import { packageRoot } from '../src/paths.js';
import { evalSandbox } from './sandbox.js';

interface Entry {
  fixture: string;
  behaviour?: string;
  note?: string;
}

function observed(r: CheckReport): string {
  const ids = [...new Set(r.findings.filter((f) => f.severity !== 'info').map((f) => f.id))];
  return `${r.verdict}${ids.length ? `: ${ids.join(', ')}` : ''}`;
}

async function main(): Promise<void> {
  const root = packageRoot();
  const plan = JSON.parse(readFileSync(join(root, 'fixtures', 'eval.json'), 'utf8')) as {
    threats: Entry[];
    controls: Entry[];
  };
  const { engine, images, policy } = await evalSandbox();
  const started = performance.now();
  const rows: string[][] = [];
  let hits = 0;
  let falsePositives = 0;
  const run = async (e: Entry) => {
    const t0 = performance.now();
    const report = await check(engine, images, join(root, 'fixtures', 'packages', e.fixture), {
      policy,
    });
    const s = ((performance.now() - t0) / 1000).toFixed(1);
    process.stderr.write(`[eval] ${e.fixture}: ${report.verdict} in ${s} s\n`);
    return { report, seconds: s };
  };
  for (const t of plan.threats) {
    const { report, seconds } = await run(t);
    const hit = report.verdict === 'fail';
    if (hit) hits++;
    rows.push([
      t.fixture,
      t.behaviour ?? '',
      'fail',
      observed(report),
      hit ? 'hit' : 'MISS',
      '',
      seconds,
    ]);
  }
  for (const c of plan.controls) {
    const { report, seconds } = await run(c);
    const fp = report.verdict !== 'pass';
    if (fp) falsePositives++;
    rows.push([
      c.fixture,
      `control: ${c.note ?? ''}`,
      'pass',
      observed(report),
      '',
      fp ? 'FALSE POSITIVE' : 'no',
      seconds,
    ]);
  }
  const total = ((performance.now() - started) / 1000).toFixed(0);
  const head = ['fixture', 'behaviour', 'expected', 'observed', 'hit', 'false positive', 's'];
  const md = [
    `| ${head.join(' | ')} |`,
    `| ${head.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${r.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`),
  ];
  const last = `recall ${hits}/${plan.threats.length}, false positives ${falsePositives}/${plan.controls.length}`;
  const text = [...md, '', `eval time ${total} s`, last].join('\n') + '\n';
  process.stdout.write(text);
  if (process.argv.includes('--write')) {
    writeFileSync(
      join(root, 'fixtures', 'eval-results.md'),
      `# Detection scorecard\n\nWritten by \`npm run eval -- --write\` (shipped default policy, fresh sandbox per fixture, laptop identity). Times are wall-clock seconds per check on the machine that wrote it.\n\n${md.join('\n')}\n\n${last}\n`,
    );
  }
  if (hits < plan.threats.length || falsePositives > 0) process.exitCode = 1;
}

await main();
