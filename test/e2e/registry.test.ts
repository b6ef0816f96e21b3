/**
 * End to end through a real npm registry (verdaccio on loopback): fixtures published with the
 * npm CLI, then checked by registry spec with --registry, the way users check packages.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AuditReport } from '../../src/audit/audit.js';
import type { CheckReport } from '../../src/core/report.js';
import { openReport } from '../support/browser.js';
import { cli, fixture, leftovers } from '../support/cli.js';
import { images } from '../support/sandbox.js';
import { startVerdaccio, type Verdaccio } from '../support/verdaccio.js';

describe('registry specs through a real registry (verdaccio)', () => {
  let registry: Verdaccio;
  const work = mkdtempSync(join(tmpdir(), 'phonehome-registry-e2e-'));
  // As in a user's shell: without the npm_config_* variables `npm test` itself exports.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^npm_config_/i.test(k)),
  );
  const check = async (args: string[]) => {
    const r = await cli(
      ['check', '--json', '--registry', registry.url, '--store', join(work, 's.sqlite'), ...args],
      env,
    );
    assert.ok(r.code === 0 || r.code === 1, `exit ${r.code}: ${r.stderr}`);
    assert.equal(await leftovers(r.pid), 0);
    return JSON.parse(r.stdout) as CheckReport;
  };

  before(async () => {
    await images();
    registry = await startVerdaccio();
    for (const f of [
      'telemetry-dep',
      'uses-telemetry-dep',
      'app-toolkit',
      'scoped-beacon',
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

  it('a transitive dependency that phones home at install is caught and charged to it', async () => {
    const report = await check(['app-toolkit@1.0.0']);
    assert.equal(report.subject.name, 'app-toolkit');
    assert.ok(report.subject.integrity?.startsWith('sha512-'));
    assert.deepEqual(report.packages?.map((p) => p.id).sort(), [
      'app-toolkit@1.0.0',
      'telemetry-dep@1.0.0',
      'uses-telemetry-dep@1.0.0',
    ]);
    const tls = report.events.find((e) => e.kind === 'tls' && e.phase === 'install');
    assert.equal(tls?.sni, 'metrics.dep-telemetry.example');
    assert.equal(tls?.package, 'telemetry-dep@1.0.0');
    assert.equal(report.verdict, 'fail');
    assert.ok(
      report.findings.some(
        (f) => f.id === 'egress-not-allowed' && f.package === 'telemetry-dep@1.0.0',
      ),
    );
  });

  it('a scoped package resolves and its install-time beacon is caught', async () => {
    const report = await check(['@acme-internal/scoped-beacon@1.0.0']);
    assert.equal(report.subject.name, '@acme-internal/scoped-beacon');
    const tls = report.events.find((e) => e.kind === 'tls');
    assert.equal(tls?.sni, 'ping.dep-confusion-research.example');
    assert.equal(tls?.package, '@acme-internal/scoped-beacon@1.0.0');
    assert.equal(report.verdict, 'fail');
  });

  it('a range and --against previous resolve through the registry', async () => {
    const report = await check(['upgrade-beacon@^1', '--against', 'previous']);
    assert.equal(report.subject.version, '1.0.1');
    assert.equal(report.comparison?.before.version, '1.0.0');
    assert.ok(report.findings.some((f) => f.id === 'new-destination' && f.phase === 'install'));
  });

  /** A project that depends on the published fixtures, locked by npm against the registry. */
  const project = async (name: string): Promise<string> => {
    const dir = mkdtempSync(join(work, `${name}-`));
    writeFileSync(
      join(dir, 'package.json'),
      JSON.stringify({
        name: 'shop-frontend',
        version: '2.3.0',
        private: true,
        dependencies: {
          'app-toolkit': '^1.0.0',
          'honest-no-scripts': '^1.0.0',
          'honest-postinstall-prints': '^1.0.0',
        },
        devDependencies: { 'upgrade-beacon': '1.0.0' },
      }),
    );
    await registry.lock(dir);
    return dir;
  };
  const audit = (args: string[]) =>
    cli(['audit', '--registry', registry.url, '--store', join(work, 'audit.sqlite'), ...args], env);

  it('audit: every locked package; the transitive one that phones home is named with its path; a second audit is served from the store', async () => {
    const dir = await project('audit');
    const r = await audit([dir, '--json']);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(await leftovers(r.pid), 0);
    const report = JSON.parse(r.stdout) as AuditReport;
    assert.equal(report.kind, 'audit');
    assert.equal(report.summary.packages, 6);
    assert.equal(report.summary.checked, 6);
    assert.equal(report.summary.notRun, 0);
    assert.equal(report.summary.fromStore, 0);
    assert.equal(report.summary.withInstallScripts, 2);
    const bad = report.packages.find((p) => p.id === 'telemetry-dep@1.0.0');
    assert.equal(bad?.verdict, 'fail');
    assert.deepEqual(bad?.path, [
      'shop-frontend',
      'app-toolkit',
      'uses-telemetry-dep',
      'telemetry-dep',
    ]);
    assert.ok(
      bad?.report?.findings.some((f) => f.id === 'egress-not-allowed' && f.phase === 'install'),
    );
    const honest = report.packages.find((p) => p.id === 'honest-postinstall-prints@1.0.0');
    assert.equal(honest?.verdict, 'pass');
    assert.deepEqual(honest?.installScripts, ['postinstall']);
    assert.ok(
      report.packages
        .filter((p) => p.id !== 'telemetry-dep@1.0.0')
        .every((p) => p.verdict === 'pass'),
    );

    const html = join(work, 'audit.html');
    const again = await audit([dir, '--html', html]);
    assert.equal(again.code, 1);
    assert.match(again.stdout, /6 of 6 package\(s\) checked, 6 from the result store/);
    assert.match(
      again.stdout,
      /via shop-frontend > app-toolkit > uses-telemetry-dep > telemetry-dep/,
    );
    assert.doesNotMatch(again.stderr, /fetching the locked tree/, 'nothing fetched or run');

    // The same audit as a page: every package in the table; "failing only" leaves the one that
    // phoned home, and its row opens its check view.
    const page = await openReport(html);
    try {
      const rows = () =>
        page.page.evaluate(
          `[...document.querySelectorAll('tr.item')].filter((tr) => !tr.hidden).map((tr) => tr.cells[0].textContent)`,
        ) as Promise<string[]>;
      assert.equal((await rows()).length, 6);
      await page.page.select('#filter-verdict', 'fail');
      assert.deepEqual(await rows(), ['telemetry-dep@1.0.0']);
      await page.page.click('tr.item:not([hidden])');
      const text = await page.text();
      assert.match(text, /FAIL telemetry-dep@1\.0\.0: \d+ egress attempt/);
      assert.match(text, /shop-frontend › app-toolkit › uses-telemetry-dep › telemetry-dep/);
      assert.match(text, /1 of 6 shown/);
      await page.page.select('#filter-verdict', 'all');
      await page.page.type('#filter-name', 'honest');
      assert.deepEqual((await rows()).sort(), [
        'honest-no-scripts@1.0.0',
        'honest-postinstall-prints@1.0.0',
      ]);
      await page.page.click('#filter-scripts');
      assert.deepEqual(await rows(), ['honest-postinstall-prints@1.0.0']);
      assert.deepEqual(page.errors, []);
      assert.deepEqual(page.requests, []);
      await page.page.evaluate(
        `document.getElementById('filter-name').value = ''; document.getElementById('filter-name').dispatchEvent(new Event('input')); document.getElementById('filter-scripts').click(); document.querySelector('tr.item[data-verdict="fail"]').click();`,
      );
      await page.screenshot('html-audit');
    } finally {
      await page.close();
    }

    const prod = await audit([dir, '--omit', 'dev', '--json']);
    const omitted = JSON.parse(prod.stdout) as AuditReport;
    assert.equal(omitted.summary.packages, 5);
    assert.ok(!omitted.packages.some((p) => p.id.startsWith('upgrade-beacon@')));
  });

  it('audit: broken, foreign and tampered lockfiles are clear errors, and nothing is left behind', async () => {
    const dir = await project('bad');
    const lockPath = join(dir, 'package-lock.json');
    const good = readFileSync(lockPath, 'utf8');
    const expectError = async (args: string[], code: number, pattern: RegExp) => {
      const r = await audit(args);
      assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, pattern);
      assert.match(r.stderr, /fix: /);
      assert.equal(r.stdout, '');
      assert.equal(await leftovers(r.pid), 0);
    };
    writeFileSync(lockPath, good.slice(0, Math.floor(good.length / 2)));
    await expectError([dir], 2, /ELOCKFILE.*not valid JSON/);
    writeFileSync(lockPath, JSON.stringify({ name: 'x', lockfileVersion: 1, dependencies: {} }));
    await expectError([dir], 2, /lockfileVersion 1/);
    const yarnDir = mkdtempSync(join(work, 'yarn-'));
    writeFileSync(join(yarnDir, 'yarn.lock'), '# yarn lockfile v1\n');
    await expectError([yarnDir], 2, /yarn\.lock has no package\.json beside it/);
    writeFileSync(join(yarnDir, 'bun.lockb'), Buffer.from([0x23, 0x21]));
    rmSync(join(yarnDir, 'yarn.lock'));
    await expectError([yarnDir], 2, /bun install --save-text-lockfile/);

    const lock = JSON.parse(good) as {
      packages: Record<string, { resolved?: string; integrity?: string }>;
    };
    const entry = lock.packages['node_modules/honest-no-scripts'];
    assert.ok(entry?.resolved && entry.integrity);
    // A tarball the registry does not have.
    const missing = structuredClone(lock);
    const m = missing.packages['node_modules/honest-no-scripts'] as {
      resolved: string;
      integrity: string;
    };
    m.resolved = m.resolved.replace('honest-no-scripts-1.0.0.tgz', 'honest-no-scripts-9.9.9.tgz');
    // With its own integrity the content would come from npm's cache, which is the locked
    // content; a tarball nobody has is one whose integrity nothing matches.
    m.integrity = `sha512-${Buffer.alloc(64, 7).toString('base64')}`;
    writeFileSync(lockPath, JSON.stringify(missing));
    await expectError([dir, '--no-cache'], 2, /ESPEC_NOT_FOUND|404/);
    // A tarball that does not match its locked integrity.
    const tampered = structuredClone(lock);
    (tampered.packages['node_modules/honest-no-scripts'] as { integrity: string }).integrity =
      `sha512-${Buffer.alloc(64, 9).toString('base64')}`;
    writeFileSync(lockPath, JSON.stringify(tampered));
    await expectError([dir, '--no-cache'], 2, /ESPEC_CORRUPT|integrity/i);
    // Another package's tarball and integrity at this place (npm ci would install it).
    const swapped = structuredClone(lock);
    const other = lock.packages['node_modules/honest-postinstall-prints'] as {
      resolved: string;
      integrity: string;
    };
    Object.assign(swapped.packages['node_modules/honest-no-scripts'] as object, {
      resolved: other.resolved,
      integrity: other.integrity,
    });
    writeFileSync(lockPath, JSON.stringify(swapped));
    await expectError(
      [dir, '--no-cache'],
      2,
      /ESPEC_CORRUPT.*node_modules\/honest-no-scripts is honest-postinstall-prints@1\.0\.0/s,
    );
    // A package.json that wants what the lockfile does not have.
    writeFileSync(lockPath, good);
    const pkgPath = join(dir, 'package.json');
    const pkg = JSON.parse(readFileSync(pkgPath, 'utf8')) as {
      dependencies: Record<string, string>;
    };
    pkg.dependencies['quiet-extra'] = '^1.0.0';
    writeFileSync(pkgPath, JSON.stringify(pkg));
    await expectError(
      [dir],
      2,
      /ELOCKFILE.*disagree: quiet-extra@\^1\.0\.0 is not in the lockfile/s,
    );
  });
});
