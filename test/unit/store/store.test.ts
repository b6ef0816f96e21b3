import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { PhonehomeError } from '../../../src/core/errors.js';
import type { CheckReport } from '../../../src/core/report.js';
import { packageRoot } from '../../../src/paths.js';
import { MIGRATIONS, ResultStore, STORE_SCHEMA_VERSION } from '../../../src/store/store.js';

const dir = mkdtempSync(join(tmpdir(), 'phonehome-store-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function report(version: string, verdict: CheckReport['verdict'] = 'pass'): CheckReport {
  return {
    schemaVersion: 2,
    subject: { name: 'pkg', version, integrity: `sha512-${version}`, spec: `pkg@${version}` },
    phases: [],
    events: [],
    findings: [],
    verdict,
  };
}
const meta = { sandbox: 'phonehome@0 runner:a gateway:b', phonehomeVersion: '0', durationMs: 1234 };

describe('result store', () => {
  it('keeps reports across reopening and finds them by name, version, integrity and sandbox', () => {
    const path = join(dir, 'reopen.sqlite');
    const a = ResultStore.open(path);
    a.save(report('1.0.0'), meta);
    a.save(report('1.0.1', 'fail'), meta);
    a.close();
    const b = ResultStore.open(path);
    assert.equal(b.schemaVersion, STORE_SCHEMA_VERSION);
    const key = { name: 'pkg', version: '1.0.1', integrity: 'sha512-1.0.1', sandbox: meta.sandbox };
    assert.equal(b.find(key)?.report.verdict, 'fail');
    assert.equal(b.find({ ...key, sandbox: 'another sandbox' }), undefined);
    assert.equal(b.find({ ...key, integrity: 'sha512-tampered' }), undefined);
    assert.deepEqual(
      b.history('pkg').map((r) => r.version),
      ['1.0.1', '1.0.0'],
    );
    assert.equal(b.history('pkg')[0]?.durationMs, 1234);
    b.close();
  });

  it('migrates a store written by an older schema, keeping its runs', () => {
    const path = join(dir, 'old.sqlite');
    const db = new Database(path);
    db.exec(MIGRATIONS[0] as string);
    db.pragma('user_version = 1');
    db.prepare(
      `INSERT INTO runs (name, version, integrity, sandbox, policy_hash, spec, verdict, report, created_at)
       VALUES ('pkg', '0.9.0', 'sha512-0.9.0', 's', NULL, 'pkg@0.9.0', 'pass', ?, '2026-01-01T00:00:00.000Z')`,
    ).run(JSON.stringify(report('0.9.0')));
    db.close();
    const s = ResultStore.open(path);
    assert.equal(s.schemaVersion, STORE_SCHEMA_VERSION);
    const runs = s.history('pkg');
    assert.equal(runs.length, 1);
    assert.equal(runs[0]?.phonehomeVersion, null, 'the new column exists, empty for old runs');
    s.save(report('1.0.0'), meta);
    assert.equal(s.history('pkg')[0]?.phonehomeVersion, '0');
    s.close();
  });

  it('refuses a store from a newer phonehome and a file that is not a store, with a fix', () => {
    const newer = join(dir, 'newer.sqlite');
    const db = new Database(newer);
    db.pragma(`user_version = ${STORE_SCHEMA_VERSION + 5}`);
    db.close();
    assert.throws(
      () => ResultStore.open(newer),
      (e: unknown) =>
        e instanceof PhonehomeError && e.code === 'ESTORE' && /newer phonehome/.test(e.message),
    );
    const junk = join(dir, 'junk.sqlite');
    writeFileSync(junk, 'this is not a database file, it is text that is long enough to matter');
    assert.throws(
      () => ResultStore.open(junk),
      (e: unknown) =>
        e instanceof PhonehomeError && e.code === 'ESTORE' && /move it away/.test(e.fix),
    );
  });

  it('two processes writing at once lose nothing and leave a sound file', async () => {
    const path = join(dir, 'shared.sqlite');
    const writer = `
      import { ResultStore } from ${JSON.stringify(join(packageRoot(), 'dist/src/store/store.js'))};
      const s = ResultStore.open(process.argv[1]);
      for (let i = 0; i < 150; i++)
        s.save({ schemaVersion: 2, subject: { name: 'w' + process.argv[2], version: '1.0.' + i, integrity: 'sha512-' + i, spec: 'x' }, phases: [], events: [], findings: [], verdict: 'pass' },
               { sandbox: 's', phonehomeVersion: '0', durationMs: 1 });
      s.close();`;
    const run = (n: string) =>
      new Promise<number | null>((resolve) => {
        const c = spawn(process.execPath, ['--input-type=module', '-e', writer, path, n], {
          stdio: 'inherit',
        });
        c.on('close', resolve);
      });
    // Both open a store that does not exist yet: they race on the first migration too.
    const codes = await Promise.all([run('a'), run('b'), run('c')]);
    assert.deepEqual(codes, [0, 0, 0]);
    const s = ResultStore.open(path);
    assert.equal(s.count(), 450);
    assert.equal(s.history('wa', 1000).length, 150);
    assert.equal(s.integrityCheck(), 'ok');
    s.close();
  });
});
