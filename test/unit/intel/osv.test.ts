import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { readOsvSource } from '../../../src/intel/import.js';
import {
  iocHost,
  normaliseIocs,
  readOsvRecord,
  recordAffects,
  type MaliciousRecord,
} from '../../../src/intel/osv.js';
import { packageRoot } from '../../../src/paths.js';

const osv = join(packageRoot(), 'fixtures', 'osv');
const work = mkdtempSync(join(tmpdir(), 'phonehome-osv-test-'));
after(() => rmSync(work, { recursive: true, force: true }));

const record = (affected: unknown[], extra: Record<string, unknown> = {}) => ({
  id: 'MAL-2026-1',
  modified: '2026-11-30T00:00:00Z',
  affected,
  ...extra,
});
const npm = (name: string, more: Record<string, unknown>) => ({
  package: { ecosystem: 'npm', name },
  ...more,
});

describe('OSV records', () => {
  it('reads an npm MAL- record: versions, ranges, summary and IOCs; others are skipped, not kept', () => {
    const [r] = readOsvRecord(
      record([npm('evil', { versions: ['1.0.1', '1.0.2'] })], {
        summary: 'Malicious code in evil',
        database_specific: {
          iocs: { domains: ['C2.Evil.example.'], ip_addresses: ['198.51.100.7'] },
        },
      }),
    ) as MaliciousRecord[];
    assert.ok(r);
    assert.equal(r.name, 'evil');
    assert.deepEqual(r.versions, ['1.0.1', '1.0.2']);
    assert.deepEqual(r.iocs, { domains: ['c2.evil.example'], ips: ['198.51.100.7'] });
    assert.equal(r.summary, 'Malicious code in evil');
    assert.equal(readOsvRecord({ ...record([npm('x', {})]), id: 'GHSA-1234' }), 'not-malicious');
    assert.equal(
      readOsvRecord(record([npm('x', {})], { withdrawn: '2026-12-01T00:00:00Z' })),
      'withdrawn',
    );
    assert.equal(
      readOsvRecord(record([{ package: { ecosystem: 'PyPI', name: 'x' }, versions: ['1'] }])),
      'not-npm',
    );
    for (const bad of [
      null,
      [],
      { modified: 'x', affected: [] },
      { id: 'MAL-1', affected: [] },
      { id: 'MAL-1', modified: 'x' },
    ])
      assert.throws(() => readOsvRecord(bad));
  });

  it('a record naming several npm packages is kept once per package; what is longer than a version or name is dropped', () => {
    const list = readOsvRecord(
      record([
        npm('typo-a', { versions: ['1.0.0', 'x'.repeat(300)] }),
        npm('typo-b', { versions: ['2.0.0'] }),
        npm('typo-a', { versions: ['1.0.1'] }),
        npm('n'.repeat(300), { versions: ['1.0.0'] }),
      ]),
    ) as MaliciousRecord[];
    assert.deepEqual(
      list.map((r) => [r.id, r.name, r.versions]),
      [
        ['MAL-2026-1', 'typo-a', ['1.0.0', '1.0.1']],
        ['MAL-2026-1', 'typo-b', ['2.0.0']],
      ],
    );
  });

  it('a record naming more than 1,000 packages keeps the first 1,000 and its IOCs', () => {
    const list = readOsvRecord(
      record(
        Array.from({ length: 1200 }, (_, i) => npm(`typo-${i}`, { versions: ['1.0.0'] })),
        { database_specific: { iocs: { domains: ['c2.evil.example'] } } },
      ),
    ) as MaliciousRecord[];
    assert.equal(list.length, 1000);
    assert.equal(list[999]?.name, 'typo-999');
    assert.deepEqual(list[0]?.iocs.domains, ['c2.evil.example']);
  });

  it('a version is affected when listed, or inside a SEMVER/ECOSYSTEM range as OSV walks it', () => {
    const r = (ranges: MaliciousRecord['ranges'], versions: string[] = []) => ({
      versions,
      ranges,
    });
    assert.ok(recordAffects(r([], ['1.0.1']), '1.0.1'));
    assert.ok(!recordAffects(r([], ['1.0.1']), '1.0.2'));
    const all = r([[{ introduced: '0' }]]);
    for (const v of ['0.0.1', '1.0.0', '99.0.0-beta.1']) assert.ok(recordAffects(all, v), v);
    const fixed = r([[{ introduced: '3.0.0' }, { fixed: '3.0.2' }]]);
    assert.deepEqual(
      ['2.9.9', '3.0.0', '3.0.1', '3.0.2', '3.1.0'].map((v) => recordAffects(fixed, v)),
      [false, true, true, false, false],
    );
    const last = r([[{ introduced: '4.1.0' }, { last_affected: '4.1.3' }]]);
    assert.deepEqual(
      ['4.0.9', '4.1.0', '4.1.3', '4.1.4'].map((v) => recordAffects(last, v)),
      [false, true, true, false],
    );
    // Events out of order, and reopened after a fix.
    const reopened = r([[{ introduced: '2.0.0' }, { fixed: '1.5.0' }, { introduced: '1.0.0' }]]);
    assert.deepEqual(
      ['0.9.0', '1.2.0', '1.5.0', '1.9.0', '2.0.0'].map((v) => recordAffects(reopened, v)),
      [false, true, false, false, true],
    );
    assert.ok(!recordAffects(all, 'not-a-version'));
    // Short bounds are read as npm would (1.0 is 1.0.0); at one version, what opens comes first.
    assert.ok(recordAffects(r([[{ introduced: '1.0' }, { fixed: '2.0' }]]), '1.5.0'));
    assert.ok(!recordAffects(r([[{ last_affected: '1.0.0' }, { introduced: '1.0.0' }]]), '3.0.0'));
    assert.ok(recordAffects(r([[{ last_affected: '1.0.0' }, { introduced: '1.0.0' }]]), '1.0.0'));
  });

  it('IOCs: defanged URLs are read, internal addresses and names that are no host are dropped', () => {
    assert.equal(iocHost('hxxps://ping.evil[.]example/collect?x=1'), 'ping.evil.example');
    assert.equal(iocHost('evil.example:8443/path'), 'evil.example');
    assert.deepEqual(
      normaliseIocs({
        domains: ['localhost', 'EVIL.example', 'not a host', 'x'.repeat(300) + '.example'],
        urls: ['https://cdn.evil.example/a', 'http://[2001:db8::1]:80/', 'http://127.0.0.1/x'],
        ip_addresses: ['10.1.2.3', '192.168.0.1', '203.0.113.5', '::1', '2001:db8::2', 'nope'],
      }),
      {
        domains: ['cdn.evil.example', 'evil.example'],
        ips: ['2001:db8::1', '2001:db8::2', '203.0.113.5'],
      },
    );
  });

  it('imports the fixture folder (ossf/malicious-packages layout) and the flat zip alike', async () => {
    const folder = await readOsvSource(osv);
    const zip = await readOsvSource(join(osv, 'npm-all.zip'));
    for (const r of [folder, zip]) {
      assert.deepEqual(
        r.records.map((x) => `${x.id} ${x.name}`),
        [
          'MAL-2026-90001 upgrade-beacon',
          'MAL-2026-90002 @acme-internal/scoped-beacon',
          'MAL-2026-90003 quiet-lib',
        ],
      );
      assert.deepEqual(r.skipped, { withdrawn: 1, 'not-npm': 1, 'not-malicious': 1 });
      assert.equal(r.problemCount, 1);
      assert.match(r.problems[0] ?? '', /broken\.json: not JSON/);
    }
    const scoped = folder.records.find((x) => x.id === 'MAL-2026-90002');
    assert.deepEqual(scoped?.iocs, {
      domains: ['ping.dep-confusion-research.example'],
      ips: ['203.0.113.77'],
    });
  });

  it('a folder is read without following symlinks or reading huge files; the newest copy of an id wins', async () => {
    const dir = join(work, 'tree');
    mkdirSync(join(dir, 'a'), { recursive: true });
    const doc = (modified: string, v: string) =>
      JSON.stringify(record([npm('dup', { versions: [v] })], { modified }));
    writeFileSync(join(dir, 'a', 'MAL-2026-1.json'), doc('2026-01-01T00:00:00Z', '1.0.0'));
    writeFileSync(join(dir, 'MAL-2026-1.json'), doc('2026-06-01T00:00:00Z', '2.0.0'));
    writeFileSync(join(dir, 'big.json'), Buffer.alloc(4 * 1024 * 1024 + 1, 32));
    symlinkSync('/etc', join(dir, 'etc'));
    symlinkSync(join(dir, 'MAL-2026-1.json'), join(dir, 'link.json'));
    const r = await readOsvSource(dir);
    assert.deepEqual(
      r.records.map((x) => x.versions),
      [['2.0.0']],
    );
    assert.equal(r.files, 2);
    assert.match(r.problems.join('\n'), /big\.json: 4194305 bytes/);
  });

  it('what is not a folder of records or a zip is a clear error', async () => {
    await assert.rejects(readOsvSource(join(work, 'missing')), { code: 'EINTEL' });
    const notZip = join(work, 'records.zip');
    writeFileSync(notZip, 'this is not a zip');
    await assert.rejects(readOsvSource(notZip), { code: 'EINTEL', message: /not a zip file/ });
  });
});
