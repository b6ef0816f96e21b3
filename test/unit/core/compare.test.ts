import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { diffIsEmpty, diffReports } from '../../../src/core/compare.js';
import type { CheckReport, Finding, PackageSummary } from '../../../src/core/report.js';
import { previousVersion } from '../../../src/resolve/versions.js';

function report(
  version: string,
  findings: Partial<Finding>[],
  packages: PackageSummary[],
): CheckReport {
  return {
    schemaVersion: 2,
    subject: { name: 'pkg', version, integrity: `sha512-${version}`, spec: `pkg@${version}` },
    phases: [],
    events: [],
    findings: findings.map((f) => ({ id: 'egress-allowed', severity: 'info', message: '', ...f })),
    verdict: 'pass',
    packages,
  };
}

const egress = (phase: 'install' | 'import' | 'exercise', pkg: string, destination: string) => ({
  id: 'egress-not-allowed',
  severity: 'high' as const,
  phase,
  package: pkg,
  destination,
});

describe('diffing reports', () => {
  const before = report(
    '1.0.0',
    [
      egress('import', 'pkg@1.0.0', 'api.example.com:443'),
      egress('exercise', 'dep@2.0.0', 'old.example.com:443'),
    ],
    [
      {
        id: 'pkg@1.0.0',
        installScripts: [],
        capabilities: [],
        declares: { import: ['api.example.com:443'] },
      },
      {
        id: 'dep@2.0.0',
        installScripts: ['install'],
        scripts: { install: { command: 'node i.js', digest: 'sha256-a' } },
        capabilities: [],
      },
      { id: 'gone@1.0.0', installScripts: [], capabilities: [] },
    ],
  );
  const after = report(
    '1.0.1',
    [
      egress('import', 'pkg@1.0.1', 'api.example.com:443'),
      egress('install', 'pkg@1.0.1', 'beacon.example.net:443'),
      {
        id: 'raw-ip',
        severity: 'medium',
        phase: 'install',
        package: 'pkg@1.0.1',
        destination: 'x',
      },
    ],
    [
      {
        id: 'pkg@1.0.1',
        installScripts: ['postinstall'],
        scripts: { postinstall: { command: 'node setup.js' } },
        capabilities: [],
        declares: { import: ['api.example.com:443', '*.cdn.example.com'] },
      },
      {
        id: 'dep@2.1.0',
        installScripts: ['install'],
        scripts: { install: { command: 'node i.js', digest: 'sha256-b' } },
        capabilities: [],
      },
      { id: 'new@0.1.0', installScripts: [], capabilities: [] },
    ],
  );

  it('names added and removed destinations by package name, new phases, scripts, declarations, packages', () => {
    const d = diffReports(before, after);
    assert.deepEqual(d.destinations.added, [
      { phase: 'install', package: 'pkg', destination: 'beacon.example.net:443' },
    ]);
    assert.deepEqual(d.destinations.removed, [
      { phase: 'exercise', package: 'dep', destination: 'old.example.com:443' },
    ]);
    assert.deepEqual(d.phasesGainedEgress, ['install']);
    assert.deepEqual(d.phasesLostEgress, ['exercise']);
    assert.deepEqual(d.installScripts.added, [
      { package: 'pkg', event: 'postinstall', after: 'node setup.js' },
    ]);
    assert.deepEqual(d.installScripts.changed, [
      {
        package: 'dep',
        event: 'install',
        before: 'node i.js',
        after: 'node i.js',
        bodyChanged: true,
      },
    ]);
    assert.deepEqual(d.declarations.widened, [
      { phase: 'import', package: 'pkg', destination: '*.cdn.example.com' },
    ]);
    assert.deepEqual(d.packages, {
      added: ['new@0.1.0'],
      removed: ['gone@1.0.0'],
      changed: [{ name: 'dep', from: '2.0.0', to: '2.1.0' }],
    });
    assert.equal(d.before.version, '1.0.0');
    assert.equal(d.after.version, '1.0.1');
  });

  it('is independent of the order of findings and packages', () => {
    const shuffled = {
      ...after,
      findings: [...after.findings].reverse(),
      packages: [...(after.packages ?? [])].reverse(),
    };
    assert.deepEqual(diffReports(before, shuffled), diffReports(before, after));
  });

  it('a report against itself is empty', () => {
    assert.ok(diffIsEmpty(diffReports(after, after)));
    assert.ok(!diffIsEmpty(diffReports(before, after)));
  });
});

describe('the previous version', () => {
  const v = (deprecated?: string) => (deprecated ? { deprecated } : {});
  const packument = {
    name: 'pkg',
    versions: {
      '1.0.0': v(),
      '1.1.0': v(),
      '1.2.0': v('broken build'),
      '2.0.0-beta.1': v(),
      '2.0.0-beta.2': v(),
      '2.0.0': v(),
      '2.0.1': v(),
    },
  };

  it('is the one before by semver, not by publish order, skipping pre-releases for a release', () => {
    assert.equal(previousVersion(packument, '2.0.1'), '2.0.0');
    assert.equal(
      previousVersion(packument, '2.0.0'),
      '1.1.0',
      'pre-releases and the deprecated 1.2.0 passed over',
    );
  });

  it('counts pre-releases when the subject is one', () => {
    assert.equal(previousVersion(packument, '2.0.0-beta.2'), '2.0.0-beta.1');
    assert.equal(previousVersion(packument, '2.0.0-beta.1'), '1.1.0');
  });

  it('unpublished versions are not in the packument; all-deprecated falls back to the newest', () => {
    const p = { name: 'x', versions: { '0.9.0': v('old'), '1.0.0': v('old too'), '1.0.1': v() } };
    assert.equal(previousVersion(p, '1.0.1'), '1.0.0');
    assert.equal(previousVersion(p, '0.9.0'), undefined);
    // 1.0.2 was unpublished: it is simply absent, and 1.0.3's previous is 1.0.1.
    assert.equal(
      previousVersion({ name: 'x', versions: { '1.0.1': v(), '1.0.3': v() } }, '1.0.3'),
      '1.0.1',
    );
  });

  it('works for a version the packument does not list (a local build) and rejects nonsense', () => {
    assert.equal(previousVersion(packument, '3.0.0'), '2.0.1');
    assert.equal(previousVersion(packument, 'latest'), undefined);
  });
});
