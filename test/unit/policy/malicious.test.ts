import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { CheckReport, ReportEvent } from '../../../src/core/report.js';
import { readOsvSource } from '../../../src/intel/import.js';
import type { MaliciousRecord } from '../../../src/intel/osv.js';
import { evaluate } from '../../../src/policy/evaluate.js';
import {
  loadPolicy,
  mergeLayers,
  shippedSharedHosts,
  withMalicious,
} from '../../../src/policy/load.js';
import { maliciousIntel } from '../../../src/policy/malicious.js';
import { parsePolicyLayer } from '../../../src/policy/parse.js';
import { readStructured } from '../../../src/policy/source.js';
import { packageRoot } from '../../../src/paths.js';
import { SqliteStore, type MaliciousSet } from '../../../src/store/store.js';

const work = mkdtempSync(join(tmpdir(), 'phonehome-malicious-test-'));
after(() => rmSync(work, { recursive: true, force: true }));

const rec = (id: string, name: string, more: Partial<MaliciousRecord>): MaliciousRecord => ({
  id,
  name,
  modified: '2026-11-30T00:00:00Z',
  versions: [],
  ranges: [],
  iocs: { domains: [], ips: [] },
  ...more,
});

function setOf(records: MaliciousRecord[]): MaliciousSet {
  return {
    source: 'test',
    importedAt: '2026-12-01T00:00:00Z',
    records: records.length,
    newestModified: '2026-11-30T00:00:00Z',
    recordsOf: (n) => records.filter((r) => r.name === n),
    affecting: (n, v) => records.filter((r) => r.name === n && r.versions.includes(v)),
    withIocs: records.filter((r) => r.iocs.domains.length + r.iocs.ips.length > 0),
  };
}

const report = (events: ReportEvent[], packages: string[] = []): CheckReport => ({
  schemaVersion: 2,
  subject: { name: 'pkg', version: '1.0.0', integrity: null, spec: 'pkg@1.0.0' },
  phases: [],
  events,
  findings: [],
  verdict: 'pass',
  packages: ['pkg@1.0.0', ...packages].map((id) => ({
    id,
    installScripts: [],
    capabilities: ['network'],
    fromRegistry: true,
  })),
});

const tls = (host: string, pkg = 'pkg@1.0.0'): ReportEvent[] => [
  { phase: 'install', package: pkg, kind: 'dns', host, qtype: 'A', resolver: '192.168.1.1' },
  { phase: 'install', package: pkg, kind: 'tls', host, sni: host, ip: '198.18.0.9', port: 443 },
];

describe('known-malicious records in evaluation', () => {
  const shared = shippedSharedHosts();
  const intel = maliciousIntel(
    setOf([
      rec('MAL-1', 'evil', {
        versions: ['2.0.0'],
        iocs: {
          domains: [
            'c2.evil.example',
            'api.github.com',
            'attacker.github.io',
            'discord.com',
            'raw.githubusercontent.com',
            'objects.githubusercontent.com',
            'storage.googleapis.com',
            'evil-c2.workers.dev',
            'sheets.googleapis.com',
            'github-releases.githubusercontent.com',
            'dynamodb.us-east-1.amazonaws.com',
            'attacker-1.glitch.me',
            'abc-8080.euw.devtunnels.ms',
            'attacker-1.requestrepo.com',
            'x.webhook.site',
            'mybucket.s3.us-east-1.amazonaws.com',
            'drop.storage.googleapis.com',
            'ec2-203-0-113-5.compute-1.amazonaws.com',
          ],
          ips: ['203.0.113.77'],
        },
      }),
      rec('MAL-2', 'other', {
        versions: ['1.0.0'],
        iocs: { domains: ['c2.evil.example'], ips: [] },
      }),
    ]),
    shared,
    loadPolicy({ discover: false }).knownEgress,
  );
  const base = loadPolicy({ discover: false });
  const judge = { ...base, malicious: intel, resolvers: ['192.168.1.1'] };

  it("an IOC name matches itself and below when it is its owner's; a user's host under a platform suffix only itself; a shared service's host or a documented download host never", () => {
    const patterns = intel.destinations
      .map((d) => `${d.pattern.text} ${d.records.join(',')}`)
      .sort();
    assert.deepEqual(patterns, [
      '*.c2.evil.example MAL-1,MAL-2',
      '203.0.113.77 MAL-1',
      'abc-8080.euw.devtunnels.ms MAL-1',
      'attacker-1.glitch.me MAL-1',
      'attacker-1.requestrepo.com MAL-1',
      'attacker.github.io MAL-1',
      'c2.evil.example MAL-1,MAL-2',
      'drop.storage.googleapis.com MAL-1',
      'ec2-203-0-113-5.compute-1.amazonaws.com MAL-1',
      'evil-c2.workers.dev MAL-1',
      'mybucket.s3.us-east-1.amazonaws.com MAL-1',
      'x.webhook.site MAL-1',
    ]);
    assert.deepEqual(intel.sharedIocs, [
      'api.github.com',
      'discord.com',
      'dynamodb.us-east-1.amazonaws.com',
      'github-releases.githubusercontent.com',
      'objects.githubusercontent.com',
      'raw.githubusercontent.com',
      'sheets.googleapis.com',
      'storage.googleapis.com',
    ]);
  });

  it('egress to an IOC is known-malicious-destination, critical, and no rule allows it', () => {
    const policy = mergeLayers(
      [
        parsePolicyLayer(
          readStructured('p.yaml', 'rules:\n  - allow: "*.evil.example"\n'),
          base.indicators.map((i) => i.id),
          {},
        ).layer,
      ],
      ['p.yaml'],
    );
    for (const j of [judge, { ...judge, policy }]) {
      const r = evaluate(report(tls('x.c2.evil.example')), j);
      const f = r.findings.find((x) => x.id === 'known-malicious-destination');
      assert.equal(f?.severity, 'critical');
      assert.match(f?.message ?? '', /MAL-1, MAL-2/);
      assert.equal(r.verdict, 'fail');
      assert.equal(f?.suggestion, undefined);
    }
    // A raw connection to the IOC address, and the platform subdomain.
    const raw = evaluate(
      report([
        { phase: 'import', package: 'pkg@1.0.0', kind: 'tcp', ip: '203.0.113.77', port: 8080 },
      ]),
      judge,
    );
    assert.ok(raw.findings.some((f) => f.id === 'known-malicious-destination'));
    for (const host of ['attacker.github.io', 'evil-c2.workers.dev'])
      assert.ok(
        evaluate(report(tls(host)), judge).findings.some(
          (f) => f.id === 'known-malicious-destination',
        ),
        host,
      );
    // Shared services' hosts, a documented download host, a sibling of a user's platform host:
    // not IOC matches.
    for (const host of [
      'api.github.com',
      'someone-else.github.io',
      'x.evil-c2.workers.dev',
      'raw.githubusercontent.com',
      'storage.googleapis.com',
      'evil.example',
    ])
      assert.ok(
        !evaluate(report(tls(host)), judge).findings.some(
          (f) => f.id === 'known-malicious-destination',
        ),
        host,
      );
    // Without an imported set, nothing of the kind.
    assert.ok(
      !evaluate(report(tls('c2.evil.example')), {
        ...base,
        resolvers: ['192.168.1.1'],
      }).findings.some((f) => f.id === 'known-malicious-destination'),
    );
  });

  it('a package version a record names, the subject or one of its tree, is known-malicious-package', () => {
    const r = evaluate(report([], ['evil@2.0.0', 'evil@1.0.0']), judge);
    const found = r.findings.filter((f) => f.id === 'known-malicious-package');
    assert.deepEqual(
      found.map((f) => [f.package, f.severity, f.rule]),
      [['evil@2.0.0', 'critical', 'malicious:MAL-1']],
    );
    assert.equal(r.verdict, 'fail');
    assert.match(
      r.policy?.malicious ?? '',
      /^2 known-malicious record\(s\) from test, newest 2026-11-30/,
    );
    // Judged again without the set (a stored report), the finding goes.
    assert.ok(
      !evaluate(r, { ...base, resolvers: ['192.168.1.1'] }).findings.some(
        (f) => f.id === 'known-malicious-package',
      ),
    );
  });

  it('a policy cannot turn the indicator off or lower it', () => {
    const parsed = parsePolicyLayer(
      readStructured('p.yaml', 'indicators:\n  known-malicious-destination: "off"\n'),
      base.indicators.map((i) => i.id),
      Object.fromEntries(base.indicators.filter((i) => i.locked).map((i) => [i.id, i.severity])),
    );
    assert.ok(parsed.problems.length > 0);
  });

  it('the store keeps one imported set, replaced whole, and looks records up by name', async () => {
    const store = SqliteStore.open(join(work, 'set.sqlite'));
    try {
      assert.equal(await store.maliciousSet(), undefined);
      assert.equal(await withMalicious(base, store), base);
      const read = await readOsvSource(join(packageRoot(), 'fixtures', 'osv'));
      const kept = await store.replaceMalicious(read.records, {
        source: 'fixtures/osv',
        importedAt: '2026-12-01T10:00:00Z',
      });
      assert.deepEqual(kept, { records: 3, newestModified: '2026-11-30T17:02:00Z' });
      const set = (await store.maliciousSet()) as MaliciousSet;
      assert.deepEqual(
        set.affecting('upgrade-beacon', '1.0.1').map((r) => r.id),
        ['MAL-2026-90001'],
      );
      assert.deepEqual(set.affecting('upgrade-beacon', '1.0.0'), []);
      assert.deepEqual(
        set.affecting('@acme-internal/scoped-beacon', '7.7.7').map((r) => r.id),
        ['MAL-2026-90002'],
      );
      assert.deepEqual(
        set.affecting('quiet-lib', '3.0.1').map((r) => r.id),
        ['MAL-2026-90003'],
      );
      assert.deepEqual(set.affecting('quiet-lib', '1.0.0'), []);
      assert.deepEqual(set.withIocs.map((r) => r.id).sort(), ['MAL-2026-90001', 'MAL-2026-90002']);
      const loaded = await withMalicious(base, store);
      assert.equal(loaded.malicious?.records, 3);
      await store.replaceMalicious([rec('MAL-9', 'x', { versions: ['1.0.0'] })], {
        source: 'other',
        importedAt: '2026-12-02T00:00:00Z',
      });
      const again = (await store.maliciousSet()) as MaliciousSet;
      assert.equal(again.records, 1);
      assert.equal(again.source, 'other');
      assert.deepEqual(again.affecting('upgrade-beacon', '1.0.1'), []);
    } finally {
      await store.close();
    }
  });
});
