/**
 * `npm run bench`: measured, not guessed. Each figure is set beside a baseline run in the same
 * process on the same machine, and reported as a ratio.
 *
 * - gateway start-up: gateway ready + sandbox started, against starting one plain container;
 * - gateway burst: N connection attempts and DNS queries through the capture, against the same
 *   burst at loopback servers inside the same sandbox (no capture); events lost are attempts the
 *   capture did not record.
 * - tls: `check` of a package that makes one HTTPS request, with TLS intercepted and left alone
 *   (`tlsIntercept: false`), alternately; and in the burst, HTTPS requests through the capture
 *   against a loopback TLS server in the same sandbox.
 * - check: `check` of a tiny package with no scripts and of a small one with a postinstall,
 *   against a plain `npm install` of the same tarball in a fresh runner container with no
 *   network and no gateway (container start, copy, install, removal: what a careful user would
 *   do by hand).
 * - result store: the CLI's `check` of a registry package answered from the store, against the
 *   same command with --no-cache (a fresh run), both spawned as a user would.
 * - gate: a gate of a one-package upgrade whose two versions are already in the store, against
 *   the CLI's own start-up (`phonehome --version`); it must start no sandbox.
 * - audit: a lockfile of the dependency tree of a few popular tools (500+ registry packages),
 *   audited cold (empty store) and warm (everything stored); packages per minute, and how many
 *   needed an install phase. BENCH_AUDIT=0 skips it.
 * - lockfiles: one project of 1,200+ packages locked by npm, pnpm, Yarn classic, Yarn Berry and
 *   Bun (the real package managers, against the public registry), read by phonehome: the
 *   format's own reading and layout, and the whole tree read (arborist's virtual tree on top),
 *   each in a process of its own (time, peak memory), against npm's lockfile read the same way.
 * - stores: the result store on SQLite against PostgreSQL on loopback (bench/stores.ts): one
 *   write and one lookup, and a warm audit of the 1,200+-package lockfile tree from each.
 * - HTML report: `--html` of a 1,000-package audit (50 packages that phoned home, from a real
 *   check of a fixture, 950 honest ones, from another), against `--json` of the same report
 *   (JSON.stringify); render time and size.
 */
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import Arborist from '@npmcli/arborist';
import pacote from 'pacote';
import { AUDIT_SCHEMA_VERSION, type AuditPackage, type AuditReport } from '../src/audit/audit.js';
import { check } from '../src/check/check.js';
import { loadPolicy } from '../src/policy/load.js';
import { renderHtml } from '../src/report/html.js';
import { auditModel } from '../src/report/model.js';
import { packageRoot } from '../src/paths.js';
import { buildImages } from '../src/images/build.js';
import { DockerEngine } from '../src/sandbox/docker/engine.js';
import { DockerImages } from '../src/sandbox/docker/images.js';
import { CaptureTopology } from '../src/sandbox/topology.js';
import { BURST_SOURCE, TLS_BURST_SOURCE } from './burst.js';
import { benchStores } from './stores.js';
import { lockWith, type Manager } from '../test/support/managers.js';

const N = Number(process.env.BENCH_BURST ?? 6000);
/** HTTPS requests of the TLS burst (BENCH_TLS_BURST). */
const TLS_N = Number(process.env.BENCH_TLS_BURST ?? 1000);
const STARTS = Number(process.env.BENCH_STARTS ?? 5);
const CHECKS = Number(process.env.BENCH_CHECKS ?? 5);
/**
 * Which parts to run, comma-separated (default all): startup, check, store, gate, audit,
 * lockfiles, stores, html, burst.
 * `BENCH_ONLY=burst npm run bench` measures the capture alone; BENCH_RUNNER_IMAGE and
 * BENCH_GATEWAY_IMAGE run it with other images (an observer under work, an earlier capture).
 */
const ONLY = new Set(
  (process.env.BENCH_ONLY ?? 'startup,check,tls,store,gate,audit,lockfiles,stores,html,burst')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
);
/** Pinned, so the tree (and the figures) stay comparable between runs. */
const AUDIT_DEPENDENCIES = {
  express: '4.21.2',
  webpack: '5.97.1',
  jest: '29.7.0',
  eslint: '8.57.1',
  '@babel/core': '7.26.0',
  typescript: '5.7.2',
  esbuild: '0.24.2',
  sharp: '0.32.6',
};

/** A project of 1,200+ packages, for the lockfile readers; pinned so the figures stay comparable. */
const LOCK_DEPENDENCIES = {
  express: '4.21.2',
  webpack: '5.97.1',
  jest: '29.7.0',
  eslint: '8.57.1',
  '@babel/core': '7.26.0',
  typescript: '5.7.2',
  esbuild: '0.24.2',
  mocha: '10.8.2',
  gulp: '4.0.2',
  karma: '6.4.4',
  'webpack-dev-server': '5.2.0',
  '@angular/cli': '19.0.6',
};

/** A tiny package (the worst case for the ratio: its fresh check is quick) and a typical one. */
const STORE_SPECS = (process.env.BENCH_STORE_SPECS ?? 'is-number@7.0.0,express@4.21.2').split(',');
const CHECK_FIXTURES = [
  ['tiny, no scripts', 'honest-no-scripts'],
  ['small, postinstall', 'honest-postinstall-prints'],
] as const;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

async function main(): Promise<void> {
  const engine = new DockerEngine();
  const { refs } = await buildImages(new DockerImages(engine.docker), {
    log: (l) => process.stderr.write(`${l}\n`),
  });
  process.on('SIGINT', () => void engine.disposeAll().finally(() => process.exit(130)));

  // ---- start-up ----
  const topoMs: number[] = [];
  const plainMs: number[] = [];
  for (let i = 0; i < (ONLY.has('startup') ? STARTS : 0); i++) {
    {
      await using run = engine.newRun();
      const t0 = performance.now();
      await run.start({
        role: 'sandbox',
        image: refs.runner,
        entrypoint: ['sleep', '60'],
        network: { mode: 'none' },
      });
      plainMs.push(performance.now() - t0);
    }
    {
      await using run = engine.newRun();
      const t0 = performance.now();
      await CaptureTopology.start(run, { runnerImage: refs.runner, gatewayImage: refs.gateway });
      topoMs.push(performance.now() - t0);
    }
  }
  const startRows = [
    ['plain container start (baseline)', median(plainMs)],
    ['gateway ready + sandbox started', median(topoMs)],
  ] as const;

  // ---- check vs plain npm install ----
  const images = new DockerImages(engine.docker);
  const checkRows: { name: string; plain: number; check: number }[] = [];
  const work = await mkdtemp(join(tmpdir(), 'phonehome-bench-'));
  try {
    for (const [name, fixture] of ONLY.has('check') ? CHECK_FIXTURES : []) {
      const folder = join(packageRoot(), 'fixtures', 'packages', fixture);
      const tgz = join(work, `${fixture}.tgz`);
      await pacote.tarball.file(`file:${folder}`, tgz, { ignoreScripts: true, Arborist });
      const data = await readFile(tgz);
      const plain: number[] = [];
      const checked: number[] = [];
      for (let i = 0; i < CHECKS; i++) {
        {
          const t0 = performance.now();
          await using run = engine.newRun();
          const c = await run.start({
            role: 'sandbox',
            image: refs.runner,
            entrypoint: ['sleep', '600'],
            network: { mode: 'none' },
            user: '1000:1000',
            tmpfs: {
              '/work': 'rw,exec,size=256m,uid=1000,gid=1000',
              '/tmp': 'rw,size=64m,mode=1777',
            },
          });
          const put = await c.exec(['sh', '-c', 'cat > /tmp/pkg.tgz'], {
            stdin: Readable.from([data]),
          });
          const install = await c.exec(
            [
              'npm',
              'install',
              '--offline',
              '--no-audit',
              '--no-fund',
              '--dangerously-allow-all-scripts',
              '/tmp/pkg.tgz',
            ],
            { workingDir: '/work', env: { HOME: '/tmp', npm_config_update_notifier: 'false' } },
          );
          if (put.exitCode !== 0 || install.exitCode !== 0)
            throw new Error(
              `plain npm install of ${fixture} failed: ${install.stderr.slice(0, 2000)}`,
            );
          await run[Symbol.asyncDispose]();
          plain.push(performance.now() - t0);
        }
        {
          const t0 = performance.now();
          await check(engine, images, folder, {});
          checked.push(performance.now() - t0);
        }
      }
      checkRows.push({ name, plain: median(plain), check: median(checked) });
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }

  // ---- check of a package making one HTTPS request: TLS intercepted vs left alone ----
  const tlsRow: { off: number; on: number } | undefined = await (async () => {
    if (!ONLY.has('tls')) return undefined;
    const folder = join(packageRoot(), 'fixtures', 'packages', 'honest-https-declared-post');
    const off: number[] = [];
    const on: number[] = [];
    for (let i = 0; i < CHECKS; i++) {
      let t0 = performance.now();
      await check(engine, images, folder, { tlsIntercept: false });
      off.push(performance.now() - t0);
      t0 = performance.now();
      const r = await check(engine, images, folder, {});
      on.push(performance.now() - t0);
      if (!r.events.some((e) => e.kind === 'tls' && e.intercept === 'decrypted'))
        throw new Error('the HTTPS request of honest-https-declared-post was not read');
    }
    return { off: median(off), on: median(on) };
  })();

  // ---- result store: cached vs fresh, through the CLI ----
  const storeWork = await mkdtemp(join(tmpdir(), 'phonehome-bench-store-'));
  const cliRun = (spec: string, extra: string[]) => {
    const t0 = performance.now();
    const r = spawnSync(
      process.execPath,
      [
        join(packageRoot(), 'dist', 'src', 'cli', 'main.js'),
        'check',
        spec,
        '--json',
        '--store',
        join(storeWork, 'results.sqlite'),
        ...extra,
      ],
      { encoding: 'utf8' },
    );
    const ms = performance.now() - t0;
    if (r.status !== 0 && r.status !== 1)
      throw new Error(`check ${spec} failed (${r.status}): ${r.stderr.slice(0, 2000)}`);
    return { ms, cached: /served from the result store/.test(r.stderr) };
  };
  const storeRows: { spec: string; fresh: number; cached: number }[] = [];
  try {
    for (const spec of ONLY.has('store') ? STORE_SPECS : []) {
      const freshMs: number[] = [];
      const cachedMs: number[] = [];
      for (let i = 0; i < CHECKS; i++) {
        const f = cliRun(spec, ['--no-cache']);
        const c = cliRun(spec, []);
        if (f.cached || !c.cached)
          throw new Error(`the store did not answer the second check of ${spec}`);
        freshMs.push(f.ms);
        cachedMs.push(c.ms);
      }
      storeRows.push({ spec, fresh: median(freshMs), cached: median(cachedMs) });
    }
  } finally {
    await rm(storeWork, { recursive: true, force: true });
  }

  // ---- gate of a one-package upgrade whose two versions are stored, against CLI start-up ----
  let gateRow: { gateMs: number; startMs: number; started: boolean } | undefined;
  if (ONLY.has('gate')) {
    const proj = await mkdtemp(join(tmpdir(), 'phonehome-bench-gate-'));
    try {
      const lockOf = async (dir: string, version: string): Promise<string> => {
        await mkdir(join(proj, dir));
        await writeFile(
          join(proj, dir, 'package.json'),
          JSON.stringify({
            name: 'bench-gate',
            version: '1.0.0',
            dependencies: { 'is-number': version },
          }),
        );
        const r = spawnSync(
          'npm',
          ['install', '--package-lock-only', '--ignore-scripts', '--no-audit', '--no-fund'],
          {
            cwd: join(proj, dir),
            encoding: 'utf8',
          },
        );
        if (r.status !== 0) throw new Error(`npm could not lock is-number@${version}: ${r.stderr}`);
        return join(proj, dir, 'package-lock.json');
      };
      const base = await lockOf('base', '6.0.0');
      const head = await lockOf('head', '7.0.0');
      const cli = (args: string[]) => {
        const t0 = performance.now();
        const r = spawnSync(
          process.execPath,
          [join(packageRoot(), 'dist', 'src', 'cli', 'main.js'), ...args],
          {
            cwd: proj,
            encoding: 'utf8',
          },
        );
        return { ms: performance.now() - t0, r };
      };
      const gateArgs = [
        'gate',
        '--base',
        base,
        '--head',
        head,
        '--json',
        '--store',
        join(proj, 'results.sqlite'),
      ];
      const first = cli(gateArgs);
      if (first.r.status !== 0 && first.r.status !== 1)
        throw new Error(`gate failed (${first.r.status}): ${first.r.stderr.slice(0, 2000)}`);
      const gateMs: number[] = [];
      const startMs: number[] = [];
      let started = false;
      for (let i = 0; i < CHECKS; i++) {
        startMs.push(cli(['--version']).ms);
        const g = cli(gateArgs);
        // A run that reached a sandbox says so in its progress lines.
        if (/\[check\] phase /.test(g.r.stderr)) started = true;
        gateMs.push(g.ms);
      }
      gateRow = { gateMs: median(gateMs), startMs: median(startMs), started };
    } finally {
      await rm(proj, { recursive: true, force: true });
    }
  }

  // ---- audit of a real lockfile: cold, then warm ----
  let auditRow:
    | { packages: number; checked: number; scripted: number; coldMs: number; warmMs: number }
    | undefined;
  if (process.env.BENCH_AUDIT !== '0' && ONLY.has('audit')) {
    const proj = await mkdtemp(join(tmpdir(), 'phonehome-bench-audit-'));
    try {
      await writeFile(
        join(proj, 'package.json'),
        JSON.stringify({
          name: 'bench-app',
          version: '1.0.0',
          private: true,
          dependencies: AUDIT_DEPENDENCIES,
        }),
      );
      const env = Object.fromEntries(
        Object.entries(process.env).filter(([k]) => !/^npm_config_/i.test(k)),
      );
      const lock = spawnSync('npm', ['install', '--package-lock-only', '--ignore-scripts'], {
        cwd: proj,
        env,
        encoding: 'utf8',
      });
      if (lock.status !== 0)
        throw new Error(`npm could not lock the audit project: ${lock.stderr.slice(0, 2000)}`);
      const auditRun = () => {
        const t0 = performance.now();
        const r = spawnSync(
          process.execPath,
          [
            join(packageRoot(), 'dist', 'src', 'cli', 'main.js'),
            'audit',
            proj,
            '--json',
            '--store',
            join(proj, 's.sqlite'),
          ],
          { encoding: 'utf8', env, maxBuffer: 512 * 1024 * 1024 },
        );
        if (r.status !== 0 && r.status !== 1)
          throw new Error(`audit failed (${r.status}): ${r.stderr.slice(-2000)}`);
        return {
          ms: performance.now() - t0,
          report: JSON.parse(r.stdout) as {
            summary: {
              packages: number;
              checked: number;
              fromStore: number;
              withInstallScripts: number;
            };
          },
        };
      };
      const cold = auditRun();
      const warm = auditRun();
      if (warm.report.summary.fromStore !== warm.report.summary.checked)
        throw new Error('the warm audit ran packages again');
      auditRow = {
        packages: cold.report.summary.packages,
        checked: cold.report.summary.checked,
        scripted: cold.report.summary.withInstallScripts,
        coldMs: cold.ms,
        warmMs: warm.ms,
      };
    } finally {
      await rm(proj, { recursive: true, force: true });
    }
  }

  // ---- lockfiles of every format, read, against npm's ----
  const lockRows: {
    format: string;
    entries: number;
    layoutMs: number;
    treeMs: number;
    rssMb: number;
  }[] = [];
  if (ONLY.has('lockfiles')) {
    const base = await mkdtemp(join(tmpdir(), 'phonehome-bench-lockfiles-'));
    try {
      const files: Record<string, string> = {
        npm: 'package-lock.json',
        pnpm: 'pnpm-lock.yaml',
        'yarn-classic': 'yarn.lock',
        'yarn-berry': 'yarn.lock',
        bun: 'bun.lock',
      };
      for (const format of Object.keys(files)) {
        const dir = join(base, format);
        await mkdir(dir);
        await writeFile(
          join(dir, 'package.json'),
          JSON.stringify({
            name: 'big',
            version: '1.0.0',
            private: true,
            dependencies: LOCK_DEPENDENCIES,
          }),
        );
        process.stderr.write(`[bench] locking with ${format}\n`);
        if (format === 'npm')
          spawnSync(
            'npm',
            ['install', '--package-lock-only', '--ignore-scripts', '--no-audit', '--no-fund'],
            {
              cwd: dir,
              stdio: 'ignore',
            },
          );
        else await lockWith(format as Manager, dir, 'https://registry.npmjs.org/');
        // Each reading in a process of its own: its peak memory is its own.
        const script = `
          import { readFileSync } from 'node:fs';
          import { readGraph } from ${JSON.stringify(join(packageRoot(), 'dist/src/resolve/formats.js'))};
          import { npmLockFrom } from ${JSON.stringify(join(packageRoot(), 'dist/src/resolve/npm-lock.js'))};
          import { loadLockTree } from ${JSON.stringify(join(packageRoot(), 'dist/src/resolve/lockfile.js'))};
          const dir = ${JSON.stringify(dir)};
          const file = dir + '/' + ${JSON.stringify(files[format])};
          const pkg = JSON.parse(readFileSync(dir + '/package.json', 'utf8'));
          const med = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
          const layout = [], tree = [];
          let entries = 0;
          for (let i = 0; i < ${CHECKS}; i++) {
            let t0 = performance.now();
            if (${JSON.stringify(format)} === 'npm') JSON.parse(readFileSync(file, 'utf8'));
            else npmLockFrom(readGraph(file, pkg), pkg, {}, file);
            layout.push(performance.now() - t0);
            t0 = performance.now();
            const t = await loadLockTree(dir, {});
            tree.push(performance.now() - t0);
            entries = t.entries.length;
            await t[Symbol.asyncDispose]();
          }
          process.stdout.write(JSON.stringify({ layoutMs: med(layout), treeMs: med(tree), entries,
            rssMb: process.resourceUsage().maxRSS / 1024 }));
        `;
        const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
          encoding: 'utf8',
        });
        if (r.status !== 0) throw new Error(`reading the ${format} lockfile: ${r.stderr}`);
        lockRows.push({
          format,
          ...(JSON.parse(r.stdout) as Omit<(typeof lockRows)[number], 'format'>),
        });
      }
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  }

  // ---- HTML report of a 1,000-package audit, against its JSON ----
  let htmlRow: { jsonMs: number; htmlMs: number; jsonBytes: number; htmlBytes: number } | undefined;
  if (ONLY.has('html')) {
    const fixtureReport = (name: string) =>
      check(engine, images, join(packageRoot(), 'fixtures', 'packages', name), {
        policy: loadPolicy({ discover: false }),
      });
    const flagged = await fixtureReport('install-env-post');
    const honest = await fixtureReport('honest-postinstall-prints');
    const packages: AuditPackage[] = Array.from({ length: 1000 }, (_, i) => {
      const report = structuredClone(i % 20 === 0 ? flagged : honest);
      report.subject.name = `pkg-${i}`;
      return {
        id: `pkg-${i}@1.0.0`,
        status: 'checked',
        path: ['app', `mid-${i % 30}`, `pkg-${i}`],
        dev: false,
        optional: false,
        fromStore: false,
        installScripts: report.packages?.[0]?.installScripts ?? [],
        verdict: report.verdict,
        report,
      };
    });
    const audit: AuditReport = {
      schemaVersion: AUDIT_SCHEMA_VERSION,
      kind: 'audit',
      lockfile: 'package-lock.json',
      project: { name: 'app', version: '1.0.0' },
      summary: {
        packages: 1000,
        checked: 1000,
        notInstalled: 0,
        notRun: 0,
        fromStore: 0,
        withInstallScripts: 1000,
        withEgress: 50,
        findings: {},
        unattributed: 0,
        unattributedLeaks: [],
      },
      packages,
      verdict: 'fail',
      policy: { sources: [], hash: '' },
    };
    const jsonMs: number[] = [];
    const htmlMs: number[] = [];
    let json = '';
    let html = '';
    for (let i = 0; i < CHECKS; i++) {
      let t0 = performance.now();
      json = JSON.stringify(audit, null, 2);
      jsonMs.push(performance.now() - t0);
      t0 = performance.now();
      html = renderHtml(auditModel(audit));
      htmlMs.push(performance.now() - t0);
    }
    htmlRow = {
      jsonMs: median(jsonMs),
      htmlMs: median(htmlMs),
      jsonBytes: Buffer.byteLength(json),
      htmlBytes: Buffer.byteLength(html),
    };
  }

  // ---- burst ----
  const burstResult = ONLY.has('burst') ? await runBurst(engine, refs) : undefined;

  const storesResult = ONLY.has('stores') ? await benchStores(LOCK_DEPENDENCIES) : undefined;

  const out: string[] = [];
  out.push(
    `phonehome bench (${new Date().toISOString().slice(0, 10)}, ${STARTS} start-ups, burst of ${2 * Math.floor(N / 2)} attempts)`,
  );
  out.push('');
  if (topoMs.length > 0) {
    out.push('start-up (median)                        ms      ratio');
    for (const [name, ms] of startRows)
      out.push(
        `${name.padEnd(40)} ${ms.toFixed(0).padStart(5)}  ${(ms / startRows[0][1]).toFixed(2).padStart(6)}`,
      );
    out.push('');
  }
  if (tlsRow) {
    out.push(
      `check of one HTTPS request (median of ${CHECKS})      left alone  intercepted  ratio`,
    );
    out.push(
      `${'honest-https-declared-post'.padEnd(40)} ${tlsRow.off.toFixed(0).padStart(10)} ${tlsRow.on.toFixed(0).padStart(12)}  ${(tlsRow.on / tlsRow.off).toFixed(2).padStart(5)}`,
    );
  }
  if (checkRows.length > 0) {
    out.push(`check vs plain npm install (median of ${CHECKS})     plain ms  check ms  ratio`);
    for (const r of checkRows)
      out.push(
        `${r.name.padEnd(40)} ${r.plain.toFixed(0).padStart(9)} ${r.check.toFixed(0).padStart(9)}  ${(r.check / r.plain).toFixed(2).padStart(5)}`,
      );
    out.push('');
  }
  if (storeRows.length > 0) {
    out.push(
      `result store: CLI check, fresh (--no-cache) vs answered from the store (median of ${CHECKS})`,
    );
    out.push(`${'package'.padEnd(40)} fresh ms  stored ms  speed-up`);
    for (const r of storeRows)
      out.push(
        `${r.spec.padEnd(40)} ${r.fresh.toFixed(0).padStart(8)} ${r.cached.toFixed(0).padStart(10)}  ${(r.fresh / r.cached).toFixed(1).padStart(8)}`,
      );
    out.push('');
  }
  if (gateRow) {
    out.push(
      `gate of is-number 6.0.0 -> 7.0.0, both stored, vs CLI start-up (median of ${CHECKS})`,
    );
    out.push(
      `  gate ${gateRow.gateMs.toFixed(0)} ms, \`phonehome --version\` ${gateRow.startMs.toFixed(0)} ms: ${(gateRow.gateMs / gateRow.startMs).toFixed(2)}x; ${gateRow.started ? 'a sandbox was started' : 'no sandbox started'}`,
    );
    out.push('');
  }
  if (auditRow) {
    out.push(`audit of a lockfile (${Object.keys(AUDIT_DEPENDENCIES).join(', ')})`);
    out.push(
      `  ${auditRow.packages} packages (${auditRow.checked} installable here), ${auditRow.scripted} with an install phase`,
    );
    out.push(
      `  cold ${(auditRow.coldMs / 1000).toFixed(1)} s (${((auditRow.checked / auditRow.coldMs) * 60_000).toFixed(0)} packages/min), warm ${(auditRow.warmMs / 1000).toFixed(2)} s; warm is ${(auditRow.coldMs / auditRow.warmMs).toFixed(0)}x faster`,
    );
    out.push('');
  }
  if (lockRows.length) {
    const npm = lockRows.find((r) => r.format === 'npm');
    out.push(
      `lockfiles of one project (${Object.keys(LOCK_DEPENDENCIES).length} direct dependencies), read (median of ${CHECKS}, own process each)`,
    );
    out.push(`${'format'.padEnd(14)} packages  layout ms  tree ms  ratio  peak MB`);
    for (const r of lockRows)
      out.push(
        `${r.format.padEnd(14)} ${String(r.entries).padStart(8)} ${r.layoutMs.toFixed(0).padStart(10)} ${r.treeMs.toFixed(0).padStart(8)} ${(npm ? r.treeMs / npm.treeMs : NaN).toFixed(2).padStart(6)} ${r.rssMb.toFixed(0).padStart(8)}`,
      );
    out.push(
      '  (layout: the format read and laid out as an npm lockfile; npm: JSON.parse. tree: the whole read, arborist included; Yarn Berry also asks the registry for every integrity)',
    );
    out.push('');
  }
  if (htmlRow) {
    out.push(`HTML report of a 1,000-package audit vs its --json (median of ${CHECKS})`);
    out.push(
      `  --json ${htmlRow.jsonMs.toFixed(0)} ms, ${(htmlRow.jsonBytes / 1e6).toFixed(2)} MB; --html ${htmlRow.htmlMs.toFixed(0)} ms, ${(htmlRow.htmlBytes / 1e6).toFixed(2)} MB: ${(htmlRow.htmlMs / htmlRow.jsonMs).toFixed(2)}x the time, ${(htmlRow.htmlBytes / htmlRow.jsonBytes).toFixed(2)}x the size`,
    );
    out.push('');
  }
  if (storesResult) out.push(...storesResult);
  if (burstResult) out.push(...burstResult);
  process.stdout.write(out.join('\n') + '\n');
}

interface BurstFigures {
  tcpOk: number;
  dnsOk: number;
  tcpMs: number;
  dnsMs: number;
  totalMs: number;
}

/** The burst through the capture (with the observer, so attribution is measured too). */
async function runBurst(
  engine: DockerEngine,
  refs: { runner: string; gateway: string },
): Promise<string[]> {
  await using run = engine.newRun();
  const topo = await CaptureTopology.start(run, {
    // BENCH_RUNNER_IMAGE, BENCH_GATEWAY_IMAGE: measure the burst with other images (an observer
    // under work, or an earlier capture for a before/after comparison).
    runnerImage: process.env.BENCH_RUNNER_IMAGE || refs.runner,
    gatewayImage: process.env.BENCH_GATEWAY_IMAGE || refs.gateway,
  });
  const burst = async (mode: 'egress' | 'loopback'): Promise<BurstFigures> => {
    const r = await topo.sandbox.exec(['node', '-e', BURST_SOURCE, String(N), mode], {
      timeoutMs: 300_000,
    });
    const line = r.stdout.trim().split('\n').pop() ?? '';
    if (r.exitCode !== 0 || !line)
      throw new Error(`burst (${mode}) failed: ${r.stderr.slice(0, 2000)}`);
    return JSON.parse(line) as BurstFigures;
  };
  const base = await burst('loopback');
  const cap = await burst('egress');
  const log = await topo.events();
  const tcp = log.events.filter((e) => e.kind === 'tcp' && e.ip.startsWith('203.0.113.'));
  const dns = log.events.filter((e) => e.kind === 'dns' && e.qname.endsWith('.burst.example'));
  const attributed = [...tcp, ...dns].filter((e) => 'proc' in e && e.proc !== undefined).length;
  const half = Math.floor(N / 2);
  const summarised = log.summaries
    .filter(
      (s) =>
        (s.of === 'tcp' && s.ip?.startsWith('203.0.113.')) ||
        (s.of === 'dns' && s.qname?.endsWith('.burst.example')),
    )
    .reduce((n, s) => n + s.count, 0);
  const lost =
    2 * half -
    tcp.length -
    dns.length -
    summarised -
    (log.truncatedCounts.tcp ?? 0) -
    (log.truncatedCounts.dns ?? 0);
  const stats = log.captureStats;

  const out: string[] = [];
  out.push('burst                                    attempts  ok     ms      attempts/s  ratio');
  const row = (name: string, r: BurstFigures) => {
    const ok = r.tcpOk + r.dnsOk;
    const rate = (2 * half) / (r.totalMs / 1000);
    return `${name.padEnd(40)} ${String(2 * half).padStart(8)}  ${String(ok).padStart(5)}  ${r.totalMs.toFixed(0).padStart(6)}  ${rate.toFixed(0).padStart(10)}`;
  };
  out.push(`${row('loopback servers, no capture (baseline)', base)}  ${'1.00'.padStart(5)}`);
  out.push(
    `${row('through the capture gateway', cap)}  ${(cap.totalMs / base.totalMs).toFixed(2).padStart(5)}`,
  );
  out.push(
    `  tcp: ${half} attempts in ${cap.tcpMs.toFixed(0)} ms (baseline ${base.tcpMs.toFixed(0)} ms, ${(half / (cap.tcpMs / 1000)).toFixed(0)}/s); dns: ${half} queries in ${cap.dnsMs.toFixed(0)} ms (baseline ${base.dnsMs.toFixed(0)} ms, ${(half / (cap.dnsMs / 1000)).toFixed(0)}/s)`,
  );
  out.push(`  events recorded: tcp ${tcp.length}, dns ${dns.length}; events lost: ${lost}`);
  out.push(
    `  attribution: ${attributed} of ${tcp.length + dns.length} events carry their process (${((100 * attributed) / Math.max(1, tcp.length + dns.length)).toFixed(1)}%)`,
  );
  if (stats)
    out.push(
      `  capture stats: lookups ${stats.lookups}, timed out ${stats.lookupsTimedOut}, skipped ${stats.lookupsSkipped}, unasked ${stats.lookupsUnasked}, datagrams lost ${stats.datagramsLost}`,
    );
  out.push(
    ...(await runTlsBurst(
      topo,
      log.events.length ? Math.max(...log.events.map((e) => e.seq)) : -1,
    )),
  );
  return out;
}

/** HTTPS requests through the capture (each intercepted) next to a loopback TLS server. */
async function runTlsBurst(topo: CaptureTopology, afterSeq: number): Promise<string[]> {
  const n = TLS_N;
  // The baseline server's certificate, made in the sandbox (as a package would make one).
  const mk = await topo.sandbox.exec(
    [
      'sh',
      '-c',
      'openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost -addext subjectAltName=DNS:localhost -keyout /tmp/bench.key -out /tmp/bench.pem 2>&1',
    ],
    { timeoutMs: 30_000 },
  );
  if (mk.exitCode !== 0) throw new Error(`tls burst: no certificate: ${mk.stdout}`);
  const burst = async (mode: 'egress' | 'loopback') => {
    const r = await topo.sandbox.exec(
      ['node', '-e', TLS_BURST_SOURCE, String(n), mode, '/tmp/bench.pem', '/tmp/bench.key'],
      { timeoutMs: 300_000 },
    );
    const line = r.stdout.trim().split('\n').pop() ?? '';
    if (r.exitCode !== 0 || !line)
      throw new Error(`tls burst (${mode}) failed: ${r.stderr.slice(0, 2000)}`);
    return JSON.parse(line) as { ok: number; handshakes: number; ms: number };
  };
  const base = await burst('loopback');
  const cap = await burst('egress');
  const log = await topo.events();
  const mine = (host?: string) => host?.endsWith('.burst-tls.example') ?? false;
  const tls = log.events.filter((e) => e.seq > afterSeq && e.kind === 'tls' && mine(e.sni));
  const decrypted = tls.filter(
    (e) => 'intercept' in e && e.intercept === 'decrypted' && e.method === 'GET',
  );
  const summarised = log.summaries
    .filter((s) => s.of === 'tls' && mine(s.sni))
    .reduce((k, s) => k + s.count, 0);
  const lost = n - tls.length - summarised - (log.truncatedCounts.tls ?? 0);
  const rate = (r: { ms: number }) => (n / (r.ms / 1000)).toFixed(0);
  return [
    'tls burst                                requests  ok     ms      requests/s  ratio',
    `${'loopback TLS server, no capture (baseline)'.padEnd(40)} ${String(n).padStart(8)}  ${String(base.ok).padStart(5)}  ${base.ms.toFixed(0).padStart(6)}  ${rate(base).padStart(10)}  ${'1.00'.padStart(5)}`,
    `${'through the capture, intercepted'.padEnd(40)} ${String(n).padStart(8)}  ${String(cap.ok).padStart(5)}  ${cap.ms.toFixed(0).padStart(6)}  ${rate(cap).padStart(10)}  ${(cap.ms / base.ms).toFixed(2).padStart(5)}`,
    `  handshakes completed: ${cap.handshakes} of ${n} (${(cap.handshakes / (cap.ms / 1000)).toFixed(0)}/s; baseline ${base.handshakes}); requests read inside: ${decrypted.length}; events lost: ${lost}`,
  ];
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
