/**
 * End to end: versions through a registry. A fixture pair (1.0.0 clean, 1.0.1 adds a
 * postinstall beacon) served by a loopback registry; `diff` names the new destination and script,
 * `check --against` fails, and a repeated check is answered from the result store.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ReportDiff } from '../../src/core/compare.js';
import type { CheckReport } from '../../src/core/report.js';
import { cli, fixture, leftovers } from '../support/cli.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { images } from '../support/sandbox.js';

describe('versions, the result store, diff and --against (CLI)', () => {
  const work = mkdtempSync(join(tmpdir(), 'phonehome-versions-e2e-'));
  const store = join(work, 'results.sqlite');
  let registry: TestRegistry;
  // As in a user's shell: without the npm_config_* variables `npm test` itself exports.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^npm_config_/i.test(k)),
  );
  const run = async (args: string[]) => {
    const r = await cli([...args, '--registry', registry.url, '--store', store], env);
    assert.equal(await leftovers(r.pid), 0);
    return r;
  };

  before(async () => {
    await images();
    registry = await startRegistry([
      fixture('upgrade-beacon-1.0.0'),
      fixture('upgrade-beacon-1.0.1'),
    ]);
  });
  after(async () => {
    await registry.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('diff names the new install-time destination and the new install script', async () => {
    const r = await run(['diff', 'upgrade-beacon@1.0.0', 'upgrade-beacon@1.0.1', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const d = JSON.parse(r.stdout) as ReportDiff;
    assert.equal(d.before.version, '1.0.0');
    assert.equal(d.after.version, '1.0.1');
    assert.deepEqual(d.destinations.added, [
      { phase: 'install', package: 'upgrade-beacon', destination: 'cdn.upgrade-stats.example:443' },
    ]);
    assert.deepEqual(d.destinations.removed, []);
    assert.deepEqual(d.phasesGainedEgress, ['install']);
    assert.deepEqual(d.installScripts.added, [
      { package: 'upgrade-beacon', event: 'postinstall', after: 'node setup.js' },
    ]);
    // The text and Markdown forms say the same.
    const text = await run(['diff', 'upgrade-beacon@1.0.0', 'upgrade-beacon@1.0.1']);
    assert.match(text.stdout, /\+ install +upgrade-beacon +cdn\.upgrade-stats\.example:443/);
    assert.match(text.stdout, /\+ upgrade-beacon postinstall: node setup\.js/);
    const md = await run(['diff', 'upgrade-beacon@1.0.0', 'upgrade-beacon@1.0.1', '--markdown']);
    assert.match(
      md.stdout,
      /\| added \| install \| upgrade-beacon \| `cdn\.upgrade-stats\.example:443` \|/,
    );
  });

  it('check 1.0.1 --against 1.0.0 fails on the new install-time destination; --against previous finds 1.0.0', async () => {
    const r = await run(['check', 'upgrade-beacon@1.0.1', '--against', '1.0.0', '--json']);
    assert.equal(r.code, 1, r.stderr);
    const report = JSON.parse(r.stdout) as CheckReport;
    assert.equal(report.verdict, 'fail');
    const added = report.findings.find((f) => f.id === 'new-destination');
    assert.equal(added?.severity, 'high');
    assert.equal(added?.phase, 'install');
    assert.equal(added?.destination, 'cdn.upgrade-stats.example:443');
    assert.ok(report.findings.some((f) => f.id === 'install-script-added'));
    assert.equal(report.comparison?.before.version, '1.0.0');

    const prev = await run(['check', 'upgrade-beacon@1.0.1', '--against', 'previous']);
    assert.equal(prev.code, 1, prev.stderr);
    assert.match(prev.stderr, /comparing upgrade-beacon@1\.0\.1 with upgrade-beacon@1\.0\.0/);
    assert.match(prev.stdout, /changes since upgrade-beacon@1\.0\.0/);
  });

  it('a repeated check is served from the store and says so; --no-cache runs it; history lists the runs', async () => {
    const fresh = await run(['check', 'upgrade-beacon@1.0.1', '--json', '--no-cache']);
    assert.doesNotMatch(fresh.stderr, /served from the result store/);
    const cached = await run(['check', 'upgrade-beacon@1.0.1', '--json']);
    assert.match(cached.stderr, /upgrade-beacon@1\.0\.1: served from the result store/);
    assert.doesNotMatch(cached.stderr, /phase install/, 'nothing ran');
    const a = JSON.parse(fresh.stdout) as CheckReport;
    const b = JSON.parse(cached.stdout) as CheckReport;
    assert.deepEqual(b.findings, a.findings);
    assert.deepEqual(b.events, a.events);

    const h = await cli(['history', 'upgrade-beacon', '--json', '--store', store]);
    assert.equal(h.code, 0, h.stderr);
    const runs = (JSON.parse(h.stdout) as { runs: { version: string; verdict: string }[] }).runs;
    assert.ok(runs.length >= 3, h.stdout);
    assert.equal(runs[0]?.version, '1.0.1', 'newest first');
    assert.ok(runs.some((x) => x.version === '1.0.0' && x.verdict === 'pass'));
    const text = await cli(['history', 'upgrade-beacon', '--store', store]);
    assert.match(text.stdout, /^when \(UTC\) +version +verdict/);
  });
});
