/**
 * End to end through a real npm registry (verdaccio on loopback): fixtures published with the
 * npm CLI, then checked by registry spec with --registry, the way users check packages.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { CheckReport } from '../../src/core/report.js';
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
});
