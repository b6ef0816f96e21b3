/**
 * End to end: the same project locked by npm, pnpm, Yarn classic, Yarn Berry and Bun (each by
 * the real package manager, against the loopback registry), audited and gated through the real
 * sandbox. Every format gives the same packages and the same verdicts; a pull request that adds
 * an install beacon fails whatever wrote the lockfile; a monorepo's workspaces are audited with
 * paths that start at the workspace, and --workspace keeps to one.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AuditReport } from '../../src/audit/audit.js';
import type { GateReport } from '../../src/gate/gate.js';
import { cli, fixture, leftovers } from '../support/cli.js';
import { lockWith, MANAGERS, type Manager } from '../support/managers.js';
import { images } from '../support/sandbox.js';
import { startVerdaccio, type Verdaccio } from '../support/verdaccio.js';

const LOCKFILE: Record<Manager | 'npm', string> = {
  npm: 'package-lock.json',
  pnpm: 'pnpm-lock.yaml',
  'yarn-classic': 'yarn.lock',
  'yarn-berry': 'yarn.lock',
  bun: 'bun.lock',
};

describe('pnpm, Yarn and Bun lockfiles through the sandbox (verdaccio)', () => {
  let registry: Verdaccio;
  const work = mkdtempSync(join(tmpdir(), 'phonehome-lockfiles-e2e-'));
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^npm_config_/i.test(k)),
  );
  const run = (cmd: string, args: string[], store: string) =>
    cli([cmd, '--registry', registry.url, '--store', join(work, store), ...args], env);

  /** A project folder with this package.json, locked by `manager`. */
  const project = async (
    name: string,
    manager: Manager | 'npm',
    pkg: Record<string, unknown>,
    files: Record<string, string> = {},
  ): Promise<string> => {
    const dir = join(work, `${name}-${manager}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'package.json'), JSON.stringify(pkg, null, 2));
    for (const [f, text] of Object.entries(files)) {
      mkdirSync(join(dir, f, '..'), { recursive: true });
      writeFileSync(join(dir, f), text);
    }
    if (manager === 'npm') await registry.lock(dir);
    else await lockWith(manager, dir, registry.url);
    return dir;
  };

  before(async () => {
    await images();
    registry = await startVerdaccio();
    for (const f of [
      'telemetry-dep',
      'uses-telemetry-dep',
      'app-toolkit',
      'upgrade-beacon-1.0.0',
      'upgrade-beacon-1.0.1',
      'honest-no-scripts',
      'honest-postinstall-prints',
    ])
      await registry.publish(fixture(f));
  });
  after(async () => {
    await registry?.close();
    rmSync(work, { recursive: true, force: true });
  });

  const SHOP = {
    name: 'shop',
    version: '1.0.0',
    private: true,
    dependencies: { 'app-toolkit': '^1.0.0', 'honest-postinstall-prints': '^1.0.0' },
    devDependencies: { 'honest-no-scripts': '^1.0.0' },
  };

  it('audit: the same packages, paths and verdicts whichever package manager wrote the lockfile', async () => {
    const results = new Map<string, AuditReport>();
    for (const manager of ['npm', ...MANAGERS] as const) {
      const dir = await project('shop', manager, SHOP);
      // npm's and pnpm's run in the sandbox, each with a store of its own; the other formats
      // share npm's store: each of their packages is found there by the integrity it locks.
      const store = manager === 'pnpm' ? 'pnpm.sqlite' : 'shared.sqlite';
      const r = await run('audit', [dir, '--json'], store);
      assert.equal(r.code, 1, `${manager}: ${r.stderr}`);
      assert.equal(await leftovers(r.pid), 0);
      const report = JSON.parse(r.stdout) as AuditReport;
      assert.equal(report.lockfileFormat, manager === 'pnpm' ? 'pnpm' : manager);
      assert.ok(report.lockfile.endsWith(LOCKFILE[manager]), report.lockfile);
      results.set(manager, report);
    }
    const shape = (r: AuditReport) =>
      r.packages
        .map((p) => `${p.id} ${p.verdict} ${p.dev ? 'dev ' : ''}${p.path.slice(1).join('>')}`)
        .sort();
    const npm = results.get('npm') as AuditReport;
    assert.equal(npm.summary.checked, 5);
    assert.equal(npm.packages.find((p) => p.id === 'telemetry-dep@1.0.0')?.verdict, 'fail');
    for (const [manager, report] of results) {
      assert.deepEqual(shape(report), shape(npm), manager);
      assert.equal(report.verdict, 'fail', manager);
    }
    assert.equal(results.get('pnpm')?.summary.fromStore, 0, 'pnpm’s audit ran in the sandbox');
    // pnpm keeps no tarball URLs: the report says where they were fetched from.
    assert.deepEqual(results.get('pnpm')?.sources, [
      `5 package(s) from ${registry.url} (your npm configuration's registry; the lockfile names no tarball URL)`,
    ]);
    assert.equal(results.get('npm')?.sources, undefined);
    for (const m of ['yarn-classic', 'yarn-berry', 'bun'])
      assert.equal(results.get(m)?.summary.fromStore, 5, `${m}: found by the same integrity`);
    assert.deepEqual(
      results.get('yarn-berry')?.registryIntegrity,
      [
        'app-toolkit@1.0.0',
        'honest-no-scripts@1.0.0',
        'honest-postinstall-prints@1.0.0',
        'telemetry-dep@1.0.0',
        'uses-telemetry-dep@1.0.0',
      ],
      'Berry keeps no tarball integrity: the registry’s, and the report says so',
    );
  });

  it('an npm lockfile that hides a package’s install script (no hasInstallScript) still runs it', async () => {
    const dir = await project('hidden', 'npm', SHOP);
    const file = join(dir, 'package-lock.json');
    writeFileSync(file, readFileSync(file, 'utf8').replace(/\n\s*"hasInstallScript": true,?/g, ''));
    assert.doesNotMatch(readFileSync(file, 'utf8'), /hasInstallScript/);
    const r = await run('audit', [dir, '--json'], 'hidden.sqlite');
    assert.equal(r.code, 1, r.stderr);
    const report = JSON.parse(r.stdout) as AuditReport;
    const bad = report.packages.find((p) => p.id === 'telemetry-dep@1.0.0');
    assert.deepEqual(bad?.installScripts, ['postinstall']);
    assert.equal(bad?.verdict, 'fail');
  });

  for (const manager of ['pnpm', 'yarn-classic'] as const)
    it(`gate: a ${manager} pull request that adds an install beacon fails and names it; the same lockfile twice starts nothing`, async () => {
      const base = await project('gate-base', manager, {
        name: 'web',
        version: '1.0.0',
        dependencies: { 'honest-no-scripts': '^1.0.0' },
      });
      const head = await project('gate-head', manager, {
        name: 'web',
        version: '1.0.0',
        dependencies: { 'honest-no-scripts': '^1.0.0', 'upgrade-beacon': '1.0.1' },
      });
      const comment = join(work, `${manager}-comment.md`);
      const r = await run(
        'gate',
        ['--base', base, '--head', head, '--json', '--comment-file', comment],
        `gate-${manager}.sqlite`,
      );
      assert.equal(r.code, 1, r.stderr);
      const report = JSON.parse(r.stdout) as GateReport;
      assert.deepEqual(
        report.packages.map((p) => [p.name, p.kind, p.to, p.verdict]),
        [['upgrade-beacon', 'added', '1.0.1', 'fail']],
      );
      const md = readFileSync(comment, 'utf8');
      assert.match(md, /phonehome: FAIL/);
      assert.match(md, /`upgrade-beacon`/);
      assert.match(md, /cdn\.upgrade-stats\.example:443/);

      const same = await run(
        'gate',
        ['--base', head, '--head', head, '--json'],
        `gate-${manager}.sqlite`,
      );
      assert.equal(same.code, 0, same.stderr);
      assert.deepEqual((JSON.parse(same.stdout) as GateReport).packages, []);
      assert.doesNotMatch(same.stderr, /phase install|fetching the locked tree/);
      assert.equal(await leftovers(same.pid), 0);
    });

  it('a pnpm monorepo: every workspace’s dependencies, paths from the workspace, --workspace keeps to one', async () => {
    const dir = await project(
      'mono',
      'pnpm',
      { name: 'mono', version: '1.0.0', private: true },
      {
        'pnpm-workspace.yaml': "packages:\n  - 'packages/*'\n",
        'packages/web/package.json': JSON.stringify({
          name: '@mono/web',
          version: '1.0.0',
          dependencies: { 'app-toolkit': '^1.0.0' },
        }),
        'packages/docs/package.json': JSON.stringify({
          name: '@mono/docs',
          version: '1.0.0',
          dependencies: { 'honest-no-scripts': '^1.0.0' },
        }),
      },
    );
    const all = await run('audit', [dir, '--json'], 'mono.sqlite');
    assert.equal(all.code, 1, all.stderr);
    const report = JSON.parse(all.stdout) as AuditReport;
    assert.deepEqual(report.packages.find((p) => p.id === 'telemetry-dep@1.0.0')?.path, [
      'mono',
      '@mono/web',
      'app-toolkit',
      'uses-telemetry-dep',
      'telemetry-dep',
    ]);
    assert.ok(
      !report.packages.some((p) => p.id.startsWith('@mono/')),
      'workspaces are not packages',
    );
    const docs = await run('audit', [dir, '--json', '--workspace', '@mono/docs'], 'mono.sqlite');
    assert.equal(docs.code, 0, docs.stderr);
    assert.deepEqual(
      (JSON.parse(docs.stdout) as AuditReport).packages.map((p) => p.id),
      ['honest-no-scripts@1.0.0'],
    );
    const wrong = await run('audit', [dir, '--workspace', 'nope'], 'mono.sqlite');
    assert.equal(wrong.code, 2);
    assert.match(
      wrong.stderr,
      /no workspace named nope \(its workspaces: @mono\/(docs|web) in packages/,
    );
  });

  it('a Bun binary lockfile and a merge-conflicted yarn.lock: exit 2, the file, the fix', async () => {
    const dir = join(work, 'lockb');
    mkdirSync(dir);
    writeFileSync(join(dir, 'package.json'), '{"name":"x","version":"1.0.0"}');
    writeFileSync(join(dir, 'bun.lockb'), Buffer.from([0x23, 0x21, 0x2f, 0x75]));
    const r = await run('audit', [dir], 'bad.sqlite');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /bun install --save-text-lockfile/);
    const conflicted = join(work, 'conflicted');
    cpSync(await project('conflict', 'yarn-classic', SHOP), conflicted, { recursive: true });
    const file = join(conflicted, 'yarn.lock');
    writeFileSync(file, `<<<<<<< HEAD\n${readFileSync(file, 'utf8')}=======\n>>>>>>> topic\n`);
    const c = await run('audit', [conflicted], 'bad.sqlite');
    assert.equal(c.code, 2);
    assert.match(c.stderr, /yarn\.lock:1: has merge conflict markers/);
    assert.equal(await leftovers(c.pid), 0);
  });
});
