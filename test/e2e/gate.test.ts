/**
 * End to end: `phonehome gate` between two lockfiles, packages from a real registry (verdaccio).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tar from 'tar';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { GateReport } from '../../src/gate/gate.js';
import { openReport } from '../support/browser.js';
import { packageRoot } from '../../src/paths.js';
import { cli, fixture, leftovers } from '../support/cli.js';
import { images } from '../support/sandbox.js';
import { startVerdaccio, type Verdaccio } from '../support/verdaccio.js';

/** A RegExp engine for ajv that reads a leading inline `(?i)` as the `i` flag. */
const caseFlagRegExp = Object.assign(
  (pattern: string, flags: string) =>
    pattern.includes('(?i)')
      ? new RegExp(pattern.replace('(?i)', ''), `${flags}i`)
      : new RegExp(pattern, flags),
  { code: 'caseFlagRegExp' },
);

describe('phonehome gate (CLI)', () => {
  let registry: Verdaccio;
  const work = mkdtempSync(join(tmpdir(), 'phonehome-gate-e2e-'));
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^npm_config_/i.test(k)),
  );
  /** A project locked by npm against the registry; returns its folder. */
  const locked = async (name: string, dependencies: Record<string, string>) => {
    const dir = mkdtempSync(join(work, `${name}-`));
    writeFileSync(
      join(dir, 'package.json'),
      JSON.stringify({ name: 'web-shop', version: '1.0.0', private: true, dependencies }),
    );
    await registry.lock(dir);
    return dir;
  };
  const gate = async (args: string[], cwd?: string) => {
    const r = await cli(
      ['gate', '--registry', registry.url, '--store', join(work, 'gate.sqlite'), ...args],
      env,
      cwd ? { cwd } : {},
    );
    assert.equal(await leftovers(r.pid), 0);
    return r;
  };

  before(async () => {
    await images();
    registry = await startVerdaccio();
    for (const f of [
      'upgrade-beacon-1.0.0',
      'upgrade-beacon-1.0.1',
      'quiet-lib-1.0.0',
      'quiet-lib-1.1.0',
      'honest-no-scripts',
    ])
      await registry.publish(fixture(f));
  });
  after(async () => {
    await registry?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('an upgrade that adds an install-time beacon fails; the comment names it; SARIF validates', async () => {
    const base = await locked('base', { 'upgrade-beacon': '1.0.0', 'honest-no-scripts': '^1.0.0' });
    const head = await locked('head', { 'upgrade-beacon': '1.0.1', 'honest-no-scripts': '^1.0.0' });
    const sarif = join(work, 'results.sarif');
    const comment = join(work, 'comment.md');
    const html = join(work, 'gate.html');
    const r = await gate([
      '--html',
      html,
      '--base',
      join(base, 'package-lock.json'),
      '--head',
      join(head, 'package-lock.json'),
      '--json',
      '--sarif',
      sarif,
      '--comment-file',
      comment,
    ]);
    assert.equal(r.code, 1, r.stderr);
    const report = JSON.parse(r.stdout) as GateReport;
    assert.equal(report.verdict, 'fail');
    assert.deepEqual(
      report.packages.map((p) => [p.name, p.kind, p.from, p.to]),
      [['upgrade-beacon', 'upgraded', '1.0.0', '1.0.1']],
    );
    const md = readFileSync(comment, 'utf8');
    assert.match(md, /phonehome: FAIL/);
    assert.match(
      md,
      /\| `upgrade-beacon` \| 1\.0\.0 → 1\.0\.1 \(upgraded\) \| fail \| install: `cdn\.upgrade-stats\.example:443` \|/,
    );
    assert.match(md, /```yaml\nrules:\n {2}- allow: \[cdn\.upgrade-stats\.example:443\]/);
    const doc = JSON.parse(readFileSync(sarif, 'utf8')) as {
      runs: {
        results: {
          ruleId: string;
          locations: { physicalLocation: { region?: { startLine: number } } }[];
        }[];
      }[];
    };
    const schemaFile = join(
      import.meta.dirname,
      '..',
      '..',
      '..',
      'test',
      'support',
      'sarif-schema-2.1.0.json',
    );
    assert.ok(existsSync(schemaFile), 'the SARIF 2.1.0 schema is in test/support');
    // The published 2.1.0 schema is written in JSON Schema 2020-12, and its definition of
    // `region` has an `anyOf` placed under `properties` (a known erratum), so the schema itself
    // is not checked against the meta-schema; the document is checked against the schema.
    const validate = new Ajv2020({
      strict: false,
      allErrors: true,
      validateFormats: false,
      validateSchema: false,
      // One of its patterns uses an inline (?i), which JavaScript writes as a flag.
      code: { regExp: caseFlagRegExp },
    }).compile(JSON.parse(readFileSync(schemaFile, 'utf8')) as object);
    assert.ok(validate(doc), JSON.stringify(validate.errors));
    const results = doc.runs[0]?.results ?? [];
    assert.ok(results.some((x) => x.ruleId === 'new-destination'));
    const line = results[0]?.locations[0]?.physicalLocation.region?.startLine ?? 0;
    const lockLine = readFileSync(join(head, 'package-lock.json'), 'utf8').split('\n')[line - 1];
    assert.match(
      lockLine ?? '',
      /"node_modules\/upgrade-beacon": \{/,
      'points at the lockfile entry',
    );

    // The page: the change table, and the failing package's check view opened below it.
    const page = await openReport(html);
    try {
      const text = await page.text();
      assert.match(text, /FAIL\s+phonehome gate/);
      assert.match(text, /upgrade-beacon\s+1\.0\.0 → 1\.0\.1/);
      assert.match(text, /\+ install upgrade-beacon cdn\.upgrade-stats\.example:443/);
      assert.match(text, /FAIL upgrade-beacon@1\.0\.1: /, 'the failing package is open');
      assert.match(text, /Changes since the earlier version/);
      assert.deepEqual(page.errors, []);
      assert.deepEqual(page.requests, []);
      await page.screenshot('html-gate');
    } finally {
      await page.close();
    }
  });

  it('an upgrade with no egress change passes', async () => {
    const base = await locked('quiet-base', { 'quiet-lib': '1.0.0' });
    const head = await locked('quiet-head', { 'quiet-lib': '1.1.0' });
    const r = await gate(['--base', base, '--head', head, '--markdown']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /phonehome: PASS/);
    assert.match(r.stdout, /\| `quiet-lib` \| 1\.0\.0 → 1\.1\.0 \(upgraded\) \| pass \| — \| — \|/);
  });

  it('the same gate again is answered from the result store: nothing runs', async () => {
    const base = await locked('again-base', { 'quiet-lib': '1.0.0' });
    const head = await locked('again-head', { 'quiet-lib': '1.1.0' });
    const first = await gate(['--base', base, '--head', head, '--as', 'ci']);
    assert.equal(first.code, 0, first.stderr);
    const again = await gate(['--base', base, '--head', head, '--as', 'ci']);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /served from the result store/);
    assert.doesNotMatch(again.stderr, /\[check\] phase/, 'no sandbox was started');
    const fresh = await gate(['--base', base, '--head', head, '--as', 'ci', '--no-cache']);
    assert.match(fresh.stderr, /\[check\] phase install|\[check\] phase import/);
  });

  it('packages added from a file: tarball, a tarball URL and a git repository are checked as locked, and a second gate runs nothing', async () => {
    // Three copies of the beacon fixture under other names, each brought in another way.
    const src = join(work, 'sources');
    const copy = (name: string) => {
      const dir = join(src, name);
      cpSync(fixture('upgrade-beacon-1.0.1'), dir, { recursive: true });
      const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Record<
        string,
        unknown
      >;
      writeFileSync(
        join(dir, 'package.json'),
        JSON.stringify({ ...manifest, name, version: '1.0.0' }),
      );
      return dir;
    };
    const vendored = copy('vendored-beacon');
    mkdirSync(join(src, 'pack'), { recursive: true });
    cpSync(vendored, join(src, 'pack', 'package'), { recursive: true });
    const base = await locked('pins-base', { 'honest-no-scripts': '^1.0.0' });
    const head = mkdtempSync(join(work, 'pins-head-'));
    mkdirSync(join(head, 'vendor'));
    await tar.c(
      {
        gzip: true,
        file: join(head, 'vendor', 'vendored-beacon-1.0.0.tgz'),
        cwd: join(src, 'pack'),
      },
      ['package'],
    );
    const repo = copy('git-beacon');
    const git = (...args: string[]) =>
      execFileSync('git', ['-C', repo, ...args], { encoding: 'utf8' }).trim();
    git('init', '-q');
    git('-c', 'user.email=t@example.invalid', '-c', 'user.name=t', 'add', '.');
    git('-c', 'user.email=t@example.invalid', '-c', 'user.name=t', 'commit', '-q', '-m', 'fixture');
    const commit = git('rev-parse', 'HEAD');
    writeFileSync(
      join(head, 'package.json'),
      JSON.stringify({
        name: 'web-shop',
        version: '1.0.0',
        private: true,
        dependencies: {
          'honest-no-scripts': '^1.0.0',
          'vendored-beacon': 'file:vendor/vendored-beacon-1.0.0.tgz',
          'upgrade-beacon': new URL('upgrade-beacon/-/upgrade-beacon-1.0.1.tgz', registry.url).href,
          'git-beacon': `git+file://${repo}#${commit}`,
        },
      }),
    );
    await registry.lock(head);
    // The git repository is neither a registry nor inside the project: fetched only with consent.
    const refused = await gate(['--base', base, '--head', head, '--json']);
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /ELOCKFILE_SOURCE/);
    assert.match(refused.stderr, /node_modules\/git-beacon/);
    assert.doesNotMatch(refused.stderr, /vendored-beacon|upgrade-beacon/);
    const first = await gate(['--base', base, '--head', head, '--json', '--allow-remote-sources']);
    assert.equal(first.code, 1, first.stderr);
    const report = JSON.parse(first.stdout) as GateReport;
    const lock = JSON.parse(readFileSync(join(head, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { integrity?: string }>;
    };
    for (const name of ['vendored-beacon', 'upgrade-beacon', 'git-beacon']) {
      const p = report.packages.find((x) => x.name === name);
      assert.ok(p, `${name} is checked: ${first.stderr}`);
      assert.equal(p.kind, 'added');
      assert.equal(p.verdict, 'fail');
      const beacon = p.report.events.find((e) => e.phase === 'install' && e.kind !== 'dns');
      assert.ok(beacon, `${name}: its install-time beacon is seen`);
      assert.equal(beacon.package, `${name}@${name === 'upgrade-beacon' ? '1.0.1' : '1.0.0'}`);
      const locked = lock.packages[`node_modules/${name}`]?.integrity;
      if (locked) assert.equal(p.report.subject.integrity, locked, `${name}: the locked tarball`);
    }
    // Consent is given per run: answered from the store, the sources are still checked first.
    const unasked = await gate(['--base', base, '--head', head]);
    assert.equal(unasked.code, 2, unasked.stderr);
    assert.match(unasked.stderr, /ELOCKFILE_SOURCE/);
    const again = await gate(['--base', base, '--head', head, '--allow-remote-sources']);
    assert.equal(again.code, 1);
    assert.doesNotMatch(again.stderr, /\[check\] phase/, 'no sandbox was started');
    assert.equal((again.stderr.match(/served from the result store/g) ?? []).length, 3);
  });

  it('an added package whose download a policy entry allows passes, and the comment says which rule', async () => {
    const base = await locked('add-base', { 'honest-no-scripts': '^1.0.0' });
    const head = await locked('add-head', {
      'honest-no-scripts': '^1.0.0',
      'upgrade-beacon': '1.0.1',
    });
    writeFileSync(
      join(head, 'phonehome.policy.yaml'),
      'version: 1\nrules:\n  - allow: [cdn.upgrade-stats.example:443]\n    packages: [upgrade-beacon@^1]\n    phases: [install]\n    why: reviewed telemetry\n',
    );
    const r = await gate(['--base', base, '--head', '.', '--markdown'], head);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\| `upgrade-beacon` \| added 1\.0\.1 \| pass \|/);
    assert.match(
      r.stdout,
      /allowed: `cdn\.upgrade-stats\.example:443` during install — allowed by phonehome\.policy\.yaml:3/,
    );
  });

  it('a package locked to another tarball with no version change fails before anything runs', async () => {
    const base = await locked('swap-base', { 'honest-no-scripts': '^1.0.0', 'quiet-lib': '1.0.0' });
    const lock = JSON.parse(readFileSync(join(base, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { resolved?: string; integrity?: string }>;
    };
    const head = mkdtempSync(join(work, 'swap-head-'));
    writeFileSync(join(head, 'package.json'), readFileSync(join(base, 'package.json')));
    const target = lock.packages['node_modules/honest-no-scripts'] as object;
    Object.assign(target, { integrity: lock.packages['node_modules/quiet-lib']?.integrity });
    writeFileSync(join(head, 'package-lock.json'), JSON.stringify(lock));
    const r = await gate(['--base', base, '--head', head, '--markdown']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, /Locked to other content with no version change/);
    assert.match(r.stdout, /`honest-no-scripts@1\.0\.0`/);
  });

  it('identical trees pass at once without starting a container', async () => {
    const dir = await locked('same', { 'honest-no-scripts': '^1.0.0' });
    const r = await gate(['--base', dir, '--head', dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /PASS gate: 0 package\(s\) added or changed, 0 removed/);
    assert.doesNotMatch(r.stderr, /\[check\]/, 'nothing was checked');
  });

  it('an upgrade to a version a known-malicious record names fails at once, without a run', async () => {
    const store = join(work, 'malicious.sqlite');
    const imported = await cli(
      ['indicators', 'import', join(packageRoot(), 'fixtures', 'osv'), '--store', store],
      env,
    );
    assert.equal(imported.code, 0, imported.stderr);
    const base = await locked('mal-base', { 'upgrade-beacon': '1.0.0' });
    const head = await locked('mal-head', { 'upgrade-beacon': '1.0.1' });
    const r = await cli(
      [
        'gate',
        '--registry',
        registry.url,
        '--store',
        store,
        '--base',
        base,
        '--head',
        head,
        '--json',
      ],
      env,
    );
    assert.equal(r.code, 1, r.stderr);
    assert.equal(await leftovers(r.pid), 0);
    const report = JSON.parse(r.stdout) as GateReport;
    const p = report.packages[0];
    assert.equal(p?.knownMalicious, true);
    assert.equal(p?.verdict, 'fail');
    assert.ok(p?.report.phases.every((ph) => ph.status === 'skipped'));
    assert.match(
      p?.report.findings.find((f) => f.id === 'known-malicious-package')?.message ?? '',
      /upgrade-beacon@1\.0\.1 is a known malicious version: MAL-2026-90001/,
    );
    assert.match(r.stderr, /known malicious \(MAL-2026-90001\); not run/);
    assert.doesNotMatch(r.stderr, /\[check\]/, 'nothing was checked');
  });
});
