#!/usr/bin/env node
// Runs the compiled tests with Node's test runner: `unit`, `integration`, `e2e`, or all rings.
// Integration and e2e tests use the real Docker engine and the real gateway; they are not skipped
// when Docker is missing, they fail, so CI cannot pass without the sandbox.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const rings = process.argv.slice(2).length ? process.argv.slice(2) : ['unit', 'integration', 'e2e'];
const files = [];
function walk(dir) {
  let names;
  try {
    names = readdirSync(dir).sort();
  } catch {
    return;
  }
  for (const n of names) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) walk(p);
    else if (n.endsWith('.test.js')) files.push(p);
  }
}
for (const ring of rings) walk(join('dist', 'test', ring));
if (files.length === 0) {
  console.error(`no test files under dist/test/{${rings.join(',')}}; run npm run build first`);
  process.exit(1);
}
const r = spawnSync(
  process.execPath,
  ['--test', '--test-reporter=spec', '--test-concurrency=2', ...files],
  { stdio: 'inherit' },
);
process.exit(r.status ?? 1);
