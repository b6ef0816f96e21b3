import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LockEntry } from '../../../src/resolve/lockfile.js';
import type { WatchedPackument } from '../../../src/store/store.js';
import { PackumentFollower } from '../../../src/watch/registry.js';
import {
  candidates,
  followedPackages,
  NEW_VERSIONS_CAP,
  npmPicks,
  specAdmits,
  toCheck,
} from '../../../src/watch/watch.js';
import { fixture } from '../../support/cli.js';
import { startRegistry, type TestRegistry } from '../../support/registry.js';

const entry = (
  name: string,
  version: string,
  wantedBy: LockEntry['wantedBy'],
  more: Partial<LockEntry> = {},
): LockEntry => ({
  name,
  version,
  integrity: `sha512-${name}${version}`,
  resolved: `https://registry.npmjs.org/${name}/-/${name}-${version}.tgz`,
  location: `node_modules/${name}`,
  path: ['app', name],
  dev: false,
  optional: false,
  installable: true,
  wantedBy,
  ...more,
});

const packument = (
  versions: Record<string, { deprecated?: boolean; engines?: string }>,
  distTags: Record<string, string> = {},
): WatchedPackument => ({
  etag: null,
  lastModified: null,
  versions,
  distTags,
  fetchedAt: '2026-12-01T00:00:00Z',
});

describe('watch: what a routine update could bring', () => {
  it('a spec admits a version as npm reads it: ranges, aliases, dist-tags; git and files never', () => {
    assert.ok(specAdmits('a', '^1.0.0', '1.4.0'));
    assert.ok(!specAdmits('a', '^1.0.0', '2.0.0'));
    assert.ok(!specAdmits('a', '^1.0.0', '1.5.0-beta.1'));
    assert.ok(specAdmits('a', '~1.2.0', '1.2.9'));
    assert.ok(specAdmits('a', 'npm:b@^2.1.0', '2.3.0'));
    assert.ok(!specAdmits('a', 'npm:b@^2.1.0', '3.0.0'));
    assert.ok(specAdmits('a', 'latest', '5.0.0', { latest: '5.0.0' }));
    assert.ok(!specAdmits('a', 'latest', '5.0.1', { latest: '5.0.0' }));
    assert.ok(specAdmits('a', '*', '9.0.0'));
    for (const s of ['github:o/r', 'file:../x', 'https://example.com/a.tgz', 'git+ssh://h/r.git'])
      assert.ok(!specAdmits('a', s, '9.0.0'), s);
  });

  it('followed: registry packages with a dependent, once per name@version, direct when the project asks, not run when for another platform', () => {
    const f = followedPackages(
      [
        entry('a', '1.0.0', [{ spec: '^1.0.0', name: 'a', direct: true }]),
        entry('b', '2.0.0', [{ spec: '^2.0.0', name: 'b', direct: false }], {
          location: 'node_modules/a/node_modules/b',
        }),
        entry('b', '2.0.0', [{ spec: '~2.0.0', name: 'b', direct: false }]),
        entry('git-dep', '1.0.0', [{ spec: 'github:o/r', name: 'git-dep', direct: true }], {
          resolved: 'git+ssh://git@github.com/o/r.git#0123456789012345678901234567890123456789',
        }),
        entry('other-os', '1.0.0', [{ spec: '^1.0.0', name: 'other-os', direct: false }], {
          optional: true,
          installable: false,
        }),
      ],
      {},
    );
    assert.deepEqual(
      f.map((x) => [x.name, x.version, x.specs, x.direct, x.installable]),
      [
        ['a', '1.0.0', ['^1.0.0'], true, true],
        ['b', '2.0.0', ['^2.0.0', '~2.0.0'], false, true],
        // Another platform's package: followed for known-malicious records only.
        ['other-os', '1.0.0', ['^1.0.0'], false, false],
      ],
    );
  });

  it('candidates: newer versions a spec admits, newest first; deprecated ones only when nothing else is', () => {
    const f = {
      name: 'b',
      version: '2.0.0',
      integrity: null,
      specs: ['^2.0.0', '~2.0.0'],
      direct: false,
      installable: true,
    };
    assert.deepEqual(
      candidates(
        f,
        packument({
          '1.9.0': {},
          '2.0.0': {},
          '2.0.1': {},
          '2.0.3': { deprecated: true },
          '2.0.2': {},
          '2.1.0': {},
        }),
      ),
      // One spec is enough: npm gives the dependent whose range admits it its own copy.
      ['2.1.0', '2.0.2', '2.0.1'],
    );
    assert.deepEqual(candidates(f, packument({ '2.0.0': {}, '2.0.5': { deprecated: true } })), [
      '2.0.5',
    ]);
    assert.deepEqual(candidates(f, packument({ '2.0.0': {}, '3.0.0': {} })), []);
  });

  it('a pass checks the newest, and every version that appeared since the last pass: a bad release cannot hide behind honest ones', () => {
    const admitted = ['1.2.3', '1.2.2', '1.2.1', '1.2.0', '1.1.0'];
    // The first watch of a project: the newest only.
    assert.deepEqual(toCheck(admitted, undefined, 3), ['1.2.3', '1.2.2', '1.2.1']);
    // 1.2.0 (bad) and three honest releases appeared since the last pass, which had seen 1.1.0.
    assert.deepEqual(toCheck(admitted, new Set(['1.0.0', '1.1.0']), 3), [
      '1.2.3',
      '1.2.2',
      '1.2.1',
      '1.2.0',
    ]);
    // A version the last pass could not check is picked again.
    assert.deepEqual(
      toCheck(admitted, new Set(admitted), 1, (v) => v === '1.1.0'),
      ['1.2.3', '1.1.0'],
    );
    // A flood of releases is bounded.
    const flood = Array.from({ length: 60 }, (_, i) => `1.3.${59 - i}`);
    assert.equal(toCheck(flood, new Set(), 3).length, NEW_VERSIONS_CAP);
  });

  it('what npm would install is always checked: the latest tag over newer versions under another tag, engines that exclude this Node', () => {
    const f = {
      name: 'a',
      version: '1.0.0',
      integrity: null,
      specs: ['^1.0.0'],
      direct: true,
      installable: true,
    };
    const versions: Record<string, { engines?: string }> = { '1.0.0': {}, '1.0.1': {} };
    for (let i = 2; i <= 26; i++) versions[`1.0.${i}`] = {};
    const p = packument(versions, { latest: '1.0.1', next: '1.0.26' });
    const picks = npmPicks(f, p);
    assert.deepEqual(picks, ['1.0.1']);
    const admitted = candidates(f, p);
    const checked = toCheck(admitted, new Set(Object.keys(versions)), 3, () => false, picks);
    assert.equal(checked[0], '1.0.1');
    assert.ok(checked.includes('1.0.26'));
    // Newer versions that need another Node: npm installs the newest one this Node may run.
    const engines = packument(
      { '1.0.0': {}, '1.0.1': {}, '1.0.2': { engines: '>=99' }, '1.0.3': { engines: '>=99' } },
      { latest: '1.0.3' },
    );
    assert.deepEqual(npmPicks(f, engines, 'v20.19.0'), ['1.0.1']);
    // Nothing newer, or a pin npm keeps: nothing to pick.
    assert.deepEqual(npmPicks({ ...f, specs: ['1.0.0'] }, p), []);
    // What npm installs even when it is not newer by semver order, or not in every range: a
    // prerelease tagged latest under `*`, a latest tag moved down, two dependents' ranges.
    const rc = packument({ '1.0.0': {}, '2.0.0-rc.1': {} }, { latest: '2.0.0-rc.1' });
    assert.deepEqual(npmPicks({ ...f, specs: ['*'] }, rc), ['2.0.0-rc.1']);
    const down = packument({ '1.9.9': {}, '2.0.0': {} }, { latest: '1.9.9' });
    assert.deepEqual(npmPicks({ ...f, version: '2.0.0', specs: ['*'] }, down), ['1.9.9']);
    const two = packument({ '1.0.0': {}, '1.0.1': {}, '1.1.0': {} }, { latest: '1.1.0' });
    assert.deepEqual(npmPicks({ ...f, specs: ['^1.0.0', '~1.0.0'] }, two).sort(), [
      '1.0.1',
      '1.1.0',
    ]);
  });

  describe('following a packument politely', () => {
    let registry: TestRegistry;
    before(async () => {
      registry = await startRegistry([fixture('quiet-lib-1.0.0')]);
    });
    after(() => registry?.close());

    it('a conditional request after the first: unchanged is a 304; a new version is a 200 with it', async () => {
      const follower = new PackumentFollower({ registry: registry.url });
      const first = await follower.fetch('quiet-lib', undefined);
      assert.equal(first.kind, 'changed');
      const p = (first as { packument: WatchedPackument }).packument;
      assert.ok(p.etag);
      assert.deepEqual(Object.keys(p.versions), ['1.0.0']);
      assert.ok(p.versions['1.0.0']?.integrity?.startsWith('sha512-'));
      assert.ok(p.versions['1.0.0']?.time);
      assert.equal((await follower.fetch('quiet-lib', p)).kind, 'not-modified');
      await registry.publish(fixture('quiet-lib-1.1.0'));
      const next = await follower.fetch('quiet-lib', p);
      assert.equal(next.kind, 'changed');
      assert.deepEqual(Object.keys((next as { packument: WatchedPackument }).packument.versions), [
        '1.0.0',
        '1.1.0',
      ]);
      assert.deepEqual(registry.requests.slice(-3), [
        '200 /quiet-lib',
        '304 /quiet-lib',
        '200 /quiet-lib',
      ]);
    });

    it('a 304 to a request without validators is a failure, not "nothing new"', async () => {
      const follower = new PackumentFollower({ registry: registry.url });
      registry.failNext('quiet-lib', 304, 1);
      const r = await follower.fetch('quiet-lib', undefined);
      assert.equal(r.kind, 'failed');
      assert.match((r as { message: string }).message, /304 to a request without validators/);
    });

    it('a 429 or 5xx backs off (Retry-After, else doubling from 30 s) before the package is asked again', async () => {
      let now = 1_000_000;
      const follower = new PackumentFollower({ registry: registry.url }, () => now);
      registry.failNext('quiet-lib', 429, 1, 120);
      const r = await follower.fetch('quiet-lib', undefined);
      assert.equal(r.kind, 'failed');
      assert.equal((r as { status?: number }).status, 429);
      assert.ok(follower.waiting('quiet-lib'));
      now += 119_000;
      assert.ok(follower.waiting('quiet-lib'));
      now += 2_000;
      assert.ok(!follower.waiting('quiet-lib'));
      registry.failNext('quiet-lib', 503, 2);
      await follower.fetch('quiet-lib', undefined);
      // Doubled from the last back-off (120 s), not reset to 30 s.
      now += 239_000;
      assert.ok(follower.waiting('quiet-lib'));
      now += 2_000;
      assert.ok(!follower.waiting('quiet-lib'));
      await follower.fetch('quiet-lib', undefined);
      now += 400_000;
      assert.equal((await follower.fetch('quiet-lib', undefined)).kind, 'changed');
      assert.ok(!follower.waiting('quiet-lib'));
      // Each failure was one request: no burst of retries within a pass.
      assert.deepEqual(
        registry.requests.filter((x) => x.startsWith('4') || x.startsWith('5')),
        ['429 /quiet-lib', '503 /quiet-lib', '503 /quiet-lib'],
      );
    });
  });
});
