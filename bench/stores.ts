/**
 * The result store, SQLite against PostgreSQL on loopback, side by side in one process:
 *
 * - latency of one write (`save`) and one lookup (`find`), the median over a few hundred of each;
 * - a warm audit of a large real lockfile (every package's result already stored, so nothing
 *   runs): the CLI's whole `audit`, once with each store, median of a few runs each.
 *
 * The stored reports are small ones written here for the lockfile's exact keys (name, version,
 * integrity, sandbox): what a warm audit reads is the store, not a sandbox.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { sandboxVersion } from '../src/check/stored.js';
import type { CheckReport } from '../src/core/report.js';
import { packageRoot } from '../src/paths.js';
import { loadLockTree } from '../src/resolve/lockfile.js';
import { openStore, type ResultStore } from '../src/store/store.js';
import { startPostgres } from '../test/support/postgres.js';

const OPS = Number(process.env.BENCH_STORE_OPS ?? 400);
const RUNS = Number(process.env.BENCH_CHECKS ?? 5);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

function report(name: string, version: string, integrity: string): CheckReport {
  return {
    schemaVersion: 2,
    subject: { name, version, integrity, spec: `${name}@${version}` },
    phases: [
      { name: 'install', status: 'skipped', durationMs: 0, note: 'no install scripts' },
      { name: 'import', status: 'completed', durationMs: 40 },
    ],
    events: [],
    findings: [],
    verdict: 'pass',
    packages: [
      {
        id: `${name}@${version}`,
        installScripts: [],
        capabilities: ['network'],
        fromRegistry: true,
      },
    ],
  };
}

async function latency(store: ResultStore): Promise<{ writeMs: number; findMs: number }> {
  const meta = { sandbox: 'bench', phonehomeVersion: '0', durationMs: 1 };
  const writes: number[] = [];
  for (let i = 0; i < OPS; i++) {
    const r = report(`bench-${i % 50}`, `1.0.${i}`, `sha512-${i}`);
    const t0 = performance.now();
    await store.save(r, meta);
    writes.push(performance.now() - t0);
  }
  const finds: number[] = [];
  for (let i = 0; i < OPS; i++) {
    const j = (i * 7919) % OPS;
    const key = {
      name: `bench-${j % 50}`,
      version: `1.0.${j}`,
      integrity: `sha512-${j}`,
      sandbox: 'bench',
    };
    const t0 = performance.now();
    const hit = await store.find(key);
    finds.push(performance.now() - t0);
    if (!hit) throw new Error(`the store lost ${key.name}@${key.version}`);
  }
  return { writeMs: median(writes), findMs: median(finds) };
}

/** The bench's lines of output. */
export async function benchStores(dependencies: Record<string, string>): Promise<string[]> {
  const work = await mkdtemp(join(tmpdir(), 'phonehome-bench-stores-'));
  const server = await startPostgres();
  try {
    const database = async (name: string) => {
      const c = new pg.Client({ connectionString: server.url });
      await c.connect();
      await c.query(`CREATE DATABASE ${name}`);
      await c.end();
      return server.url.replace(/\/postgres$/, `/${name}`);
    };
    const stores = { SQLite: join(work, 'latency.sqlite'), PostgreSQL: await database('latency') };
    const lat: Record<string, { writeMs: number; findMs: number }> = {};
    for (const [kind, at] of Object.entries(stores)) {
      const s = await openStore(at);
      try {
        lat[kind] = await latency(s);
      } finally {
        await s.close();
      }
    }

    // The large tree, locked by npm; every entry stored under the audit's own key.
    const proj = join(work, 'tree');
    await rm(proj, { recursive: true, force: true });
    await import('node:fs/promises').then((f) => f.mkdir(proj));
    await writeFile(
      join(proj, 'package.json'),
      JSON.stringify({ name: 'big', version: '1.0.0', private: true, dependencies }),
    );
    process.stderr.write('[bench] locking the store bench tree with npm\n');
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !/^npm_config_/i.test(k)),
    );
    const lock = spawnSync(
      'npm',
      ['install', '--package-lock-only', '--ignore-scripts', '--no-audit', '--no-fund'],
      { cwd: proj, env, encoding: 'utf8' },
    );
    if (lock.status !== 0) throw new Error(`npm could not lock the tree: ${lock.stderr}`);
    const sandbox = `${sandboxVersion({})} audit`;
    const warmStores = { SQLite: join(work, 'warm.sqlite'), PostgreSQL: await database('warm') };
    let packages = 0;
    {
      await using tree = await loadLockTree(proj, {});
      const meta = { sandbox, phonehomeVersion: '0', durationMs: 1 };
      for (const at of Object.values(warmStores)) {
        const s = await openStore(at);
        const seen = new Set<string>();
        for (const e of tree.entries) {
          if (!e.integrity || seen.has(`${e.name}@${e.version}\0${e.integrity}`)) continue;
          seen.add(`${e.name}@${e.version}\0${e.integrity}`);
          await s.save(report(e.name, e.version, e.integrity), meta);
        }
        packages = seen.size;
        await s.close();
      }
    }
    const auditMs: Record<string, number> = {};
    for (const [kind, at] of Object.entries(warmStores)) {
      const times: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        const t0 = performance.now();
        const r = spawnSync(
          process.execPath,
          [join(packageRoot(), 'dist/src/cli/main.js'), 'audit', proj, '--json', '--store', at],
          { encoding: 'utf8', env, maxBuffer: 512 * 1024 * 1024 },
        );
        times.push(performance.now() - t0);
        if (r.status !== 0 && r.status !== 1)
          throw new Error(`the warm audit failed (${r.status}): ${r.stderr.slice(-2000)}`);
        const sum = (JSON.parse(r.stdout) as { summary: { fromStore: number; checked: number } })
          .summary;
        if (sum.fromStore !== sum.checked)
          throw new Error(
            `the warm audit from ${kind} ran packages (${sum.fromStore} of ${sum.checked} stored)`,
          );
      }
      auditMs[kind] = median(times);
    }
    const s = lat.SQLite as { writeMs: number; findMs: number };
    const p = lat.PostgreSQL as { writeMs: number; findMs: number };
    const aS = auditMs.SQLite as number;
    const aP = auditMs.PostgreSQL as number;
    return [
      `result store, SQLite vs PostgreSQL on loopback (median of ${OPS} operations; audits median of ${RUNS})`,
      `${''.padEnd(34)} SQLite ms  PostgreSQL ms  ratio`,
      `${'write one run (save)'.padEnd(34)} ${s.writeMs.toFixed(3).padStart(9)} ${p.writeMs.toFixed(3).padStart(14)}  ${(p.writeMs / s.writeMs).toFixed(2).padStart(5)}`,
      `${'look one tarball up (find)'.padEnd(34)} ${s.findMs.toFixed(3).padStart(9)} ${p.findMs.toFixed(3).padStart(14)}  ${(p.findMs / s.findMs).toFixed(2).padStart(5)}`,
      `${`warm audit, ${packages} packages (CLI)`.padEnd(34)} ${aS.toFixed(0).padStart(9)} ${aP.toFixed(0).padStart(14)}  ${(aP / aS).toFixed(2).padStart(5)}`,
      '',
    ];
  } finally {
    server.stop();
    await rm(work, { recursive: true, force: true });
  }
}
