import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import pg from 'pg';
import { PhonehomeError } from '../../../src/core/errors.js';
import type { CheckReport } from '../../../src/core/report.js';
import { packageRoot } from '../../../src/paths.js';
import {
  MIGRATIONS,
  openStore,
  PG_SCHEMA_VERSION,
  SqliteStore,
  STORE_SCHEMA_VERSION,
  type ResultStore,
} from '../../../src/store/store.js';
import { Claims } from '../../../src/store/claims.js';
import { exportStore, importStore } from '../../../src/store/transfer.js';
import { startPostgres, type TestPostgres } from '../../support/postgres.js';

const dir = mkdtempSync(join(tmpdir(), 'phonehome-store-test-'));
let server: TestPostgres;
let dbs = 0;
before(async () => {
  server = await startPostgres();
});
after(() => {
  server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function report(
  version: string,
  verdict: CheckReport['verdict'] = 'pass',
  name = 'pkg',
): CheckReport {
  return {
    schemaVersion: 2,
    subject: { name, version, integrity: `sha512-${version}`, spec: `${name}@${version}` },
    phases: [],
    events: [],
    findings: [],
    verdict,
  };
}
const meta = { sandbox: 'phonehome@0 runner:a gateway:b', phonehomeVersion: '0', durationMs: 1234 };

/** A new empty store of each kind: a SQLite file, or a database of its own on the server. */
const backends: Record<string, () => Promise<string>> = {
  sqlite: async () => join(dir, `s${dbs++}.sqlite`),
  postgres: async () => {
    const name = `t${dbs++}`;
    const c = new pg.Client({ connectionString: server.url });
    await c.connect();
    await c.query(`CREATE DATABASE ${name}`);
    await c.end();
    return server.url.replace(/\/postgres$/, `/${name}`);
  },
};

const dist = (p: string) => JSON.stringify(join(packageRoot(), 'dist/src', p));
function node(source: string, args: string[]): Promise<number | null> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, ['--input-type=module', '-e', source, ...args], {
      stdio: 'inherit',
    });
    c.on('close', (code, signal) => resolve(signal ? -1 : code));
  });
}

for (const [kind, fresh] of Object.entries(backends)) {
  describe(`result store (${kind})`, () => {
    it('keeps reports across reopening and finds them by name, version, integrity and sandbox', async () => {
      const at = await fresh();
      const a = await openStore(at);
      assert.equal(a.kind, kind);
      await a.save(report('1.0.0'), meta);
      await a.save(report('1.0.1', 'fail'), meta);
      await a.close();
      const b = await openStore(at);
      assert.equal(await b.schema(), kind === 'sqlite' ? STORE_SCHEMA_VERSION : PG_SCHEMA_VERSION);
      const key = {
        name: 'pkg',
        version: '1.0.1',
        integrity: 'sha512-1.0.1',
        sandbox: meta.sandbox,
      };
      assert.equal((await b.find(key))?.report.verdict, 'fail');
      assert.equal(await b.find({ ...key, sandbox: 'another sandbox' }), undefined);
      assert.equal(await b.find({ ...key, integrity: 'sha512-tampered' }), undefined);
      const runs = await b.history('pkg');
      assert.deepEqual(
        runs.map((r) => r.version),
        ['1.0.1', '1.0.0'],
      );
      assert.equal(runs[0]?.durationMs, 1234);
      assert.equal((await b.report(runs[1]?.id as number))?.subject.version, '1.0.0');
      await b.close();
    });

    it('three processes writing at once, opening a new store together, lose and duplicate nothing', async () => {
      const at = await fresh();
      const writer = `
        import { openStore } from ${dist('store/store.js')};
        const s = await openStore(process.argv[1]);
        for (let i = 0; i < 200; i++)
          await s.save({ schemaVersion: 2, subject: { name: 'w' + process.argv[2], version: '1.0.' + i, integrity: 'sha512-' + i, spec: 'x' }, phases: [], events: [], findings: [], verdict: 'pass' },
                       { sandbox: 's', phonehomeVersion: '0', durationMs: 1 });
        await s.close();`;
      const codes = await Promise.all(['a', 'b', 'c'].map((n) => node(writer, [at, n])));
      assert.deepEqual(codes, [0, 0, 0]);
      const s = await openStore(at);
      assert.equal(await s.count(), 600);
      for (const n of ['a', 'b', 'c']) {
        const versions = (await s.history(`w${n}`, 1000)).map((r) => r.version);
        assert.equal(new Set(versions).size, 200, `writer ${n}: 200 distinct runs`);
      }
      if (s instanceof SqliteStore) assert.equal(s.integrityCheck(), 'ok');
      await s.close();
    });

    it('a claim is held by one owner until released, and a killed holder’s claim expires', async () => {
      const at = await fresh();
      const s = await openStore(at);
      const key = { name: 'pkg', version: '1.0.0', integrity: 'sha512-x', sandbox: 's' };
      assert.deepEqual(await s.claim([key], 'one', 60_000), [true]);
      assert.deepEqual(await s.claim([key], 'two', 60_000), [false], 'held by one');
      assert.deepEqual(await s.claim([key], 'one', 60_000), [true], 'renewed by its owner');
      await s.release([key], 'two');
      assert.deepEqual(
        await s.claim([key], 'two', 60_000),
        [false],
        'another owner cannot release it',
      );
      await s.release([key], 'one');
      assert.deepEqual(await s.claim([key], 'two', 60_000), [true], 'released');
      // A process that claims with a short lease and is killed: its claim lapses.
      const other = { ...key, version: '2.0.0' };
      const holder = `
        import { openStore } from ${dist('store/store.js')};
        const s = await openStore(process.argv[1]);
        const [ok] = await s.claim([${JSON.stringify(other)}], 'crashed', 1500);
        if (!ok) process.exit(3);
        process.kill(process.pid, 'SIGKILL');`;
      assert.equal(await node(holder, [at]), -1, 'the holder was killed');
      assert.deepEqual(await s.claim([other], 'two', 60_000), [false], 'still leased');
      await new Promise((r) => setTimeout(r, 1800));
      assert.deepEqual(await s.claim([other], 'two', 60_000), [true], 'taken after the lease');
      await s.close();
    });

    it('export and import move every run once, and a bad file changes nothing', async () => {
      const from = await openStore(await fresh());
      for (let i = 0; i < 30; i++)
        await from.save(report(`1.${i}.0`, i % 7 ? 'pass' : 'fail', `p${i % 3}`), meta);
      const file = join(dir, `export-${kind}.jsonl`);
      assert.deepEqual((await exportStore(from, file)).runs, 30);
      await assert.rejects(exportStore(from, file), (e: unknown) => e instanceof PhonehomeError);
      const into: ResultStore = await openStore(await fresh());
      await into.save(report('9.9.9', 'pass', 'own'), meta);
      assert.deepEqual(await importStore(into, file), { runs: 30, added: 30 });
      assert.deepEqual(await importStore(into, file), { runs: 30, added: 0 }, 'no second copy');
      assert.equal(await into.count(), 31);
      const key = {
        name: 'p0',
        version: '1.0.0',
        integrity: 'sha512-1.0.0',
        sandbox: meta.sandbox,
      };
      assert.equal((await into.find(key))?.report.verdict, 'fail');
      // A file altered at its last line: refused before anything is added.
      const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
      const forged = JSON.parse(lines[lines.length - 1] as string) as { verdict: string };
      forged.verdict = 'pass';
      const fresh2 = await openStore(await fresh());
      const bad = join(dir, `bad-${kind}.jsonl`);
      writeFileSync(
        bad,
        [
          ...lines.slice(0, -1),
          JSON.stringify({ ...forged, verdict: 'fail' === forged.verdict ? 'pass' : 'warn' }),
        ].join('\n'),
      );
      await assert.rejects(
        importStore(fresh2, bad),
        (e: unknown) =>
          e instanceof PhonehomeError &&
          e.code === 'ESTORE_FILE' &&
          /nothing was imported/.test(e.message),
      );
      assert.equal(await fresh2.count(), 0);
      // The header is the first line that is not blank: a blank line does not skip its check.
      writeFileSync(bad, `\n${lines.slice(1).join('\n')}\n`);
      await assert.rejects(
        importStore(fresh2, bad),
        (e: unknown) => e instanceof PhonehomeError && /not written by/.test(e.message),
      );
      writeFileSync(bad, 'not an export\n');
      await assert.rejects(
        importStore(fresh2, bad),
        (e: unknown) => e instanceof PhonehomeError && e.code === 'ESTORE_FILE',
      );
      for (const s of [from, into, fresh2]) await s.close();
    });

    it('an import adds only tarballs the store has no result for, the newest run of each', async () => {
      const key = {
        name: 'pkg',
        version: '1.0.0',
        integrity: 'sha512-1.0.0',
        sandbox: meta.sandbox,
      };
      const file = join(dir, `newest-${kind}.jsonl`);
      const run = (verdict: CheckReport['verdict'], createdAt: string) =>
        JSON.stringify({
          ...key,
          policyHash: null,
          spec: 'pkg@1.0.0',
          verdict,
          createdAt,
          phonehomeVersion: '0',
          durationMs: 5,
          report: JSON.stringify(report('1.0.0', verdict)),
        });
      const head = JSON.stringify({ format: 'phonehome-store-export', version: 1 });
      // Written out of order: the newer run (fail) comes first.
      writeFileSync(
        file,
        [
          head,
          run('fail', '2026-02-01T00:00:00.000Z'),
          run('pass', '2026-01-01T00:00:00.000Z'),
        ].join('\n') + '\n',
      );
      const empty = await openStore(await fresh());
      assert.deepEqual(await importStore(empty, file), { runs: 2, added: 1 });
      assert.equal((await empty.find(key))?.report.verdict, 'fail', 'the newest of the file');
      // A store that has its own result for the tarball keeps it.
      const own = await openStore(await fresh());
      await own.save(report('1.0.0', 'warn'), meta);
      assert.deepEqual(await importStore(own, file), { runs: 2, added: 0 });
      assert.equal((await own.find(key))?.report.verdict, 'warn', 'the store’s own result stands');
      // A run whose report names another tarball than its columns, or that holds a NUL: refused.
      const forged = JSON.parse(run('pass', '2026-03-01T00:00:00.000Z')) as Record<string, unknown>;
      for (const [why, line] of [
        ['integrity', { ...forged, integrity: 'sha512-other' }],
        ['NUL', { ...forged, spec: 'pkg\u0000@1.0.0' }],
        ['duration', { ...forged, durationMs: 2 ** 40 }],
      ] as const) {
        writeFileSync(file, [head, JSON.stringify(line)].join('\n'));
        await assert.rejects(
          importStore(empty, file),
          (e: unknown) => e instanceof PhonehomeError && e.code === 'ESTORE_FILE',
          why,
        );
      }
      assert.equal(await empty.count(), 1);
      await empty.close();
      await own.close();
    });

    it('claims: one key asked twice at once; a waiter gives up on a holder that never stores', async () => {
      const s = await openStore(await fresh());
      const key = { name: 'pkg', version: '1.0.0', integrity: 'sha512-x', sandbox: 's' };
      assert.deepEqual(await s.claim([key, key], 'one', 60_000), [true, true]);
      const claims = new Claims(s, { pollMs: 50, waitMs: 300 });
      const { mine, others } = await claims.take([key]);
      assert.deepEqual([mine.length, others.length], [0, 1]);
      const got = await claims.await(others, () => assert.fail('nothing was stored'));
      assert.deepEqual(got, { run: [key], waiting: [] }, 'handed back to run, past the bound');
      await claims[Symbol.asyncDispose]();
      assert.deepEqual(await s.claim([key], 'two', 60_000), [false], 'still the holder’s');
      await s.close();
    });
  });
}

describe('result store locations', () => {
  it('a URL of a kind phonehome cannot use is refused, not taken for a file', async () => {
    for (const url of ['mysql://u@h/db', 'file:///tmp/x.sqlite', 'redis://h'])
      await assert.rejects(
        openStore(url),
        (e: unknown) =>
          e instanceof PhonehomeError && e.code === 'ESTORE' && /postgres:\/\//.test(e.fix),
        url,
      );
  });
});

describe('result store (postgres): errors', () => {
  const refused = (re: RegExp) => (e: unknown) =>
    e instanceof PhonehomeError &&
    e.code === 'ESTORE' &&
    e.exitCode === 3 &&
    re.test(e.fix) &&
    !e.message.includes(server.password);

  it('a wrong password, a missing database, a server that is down: a code and a fix, no password shown', async () => {
    await assert.rejects(
      openStore(server.url.replace(encodeURIComponent(server.password), 'wrong-password')),
      refused(/credentials/),
    );
    await assert.rejects(
      openStore(server.url.replace(/\/postgres$/, '/nosuchdb')),
      refused(/createdb/),
    );
    await assert.rejects(
      openStore(`postgres://phonehome:${server.password}@127.0.0.1:1/postgres`),
      refused(/Start the PostgreSQL server/),
    );
    await assert.rejects(
      openStore('postgres://%zz@'),
      (e: unknown) => e instanceof PhonehomeError && e.code === 'ESTORE',
    );
  });

  it('refuses a store written by a newer phonehome, and migrates once under many openers', async () => {
    const url = await backends.postgres!();
    const opened = await Promise.all(Array.from({ length: 6 }, () => openStore(url)));
    for (const s of opened) assert.equal(await s.schema(), PG_SCHEMA_VERSION);
    await Promise.all(opened.map((s) => s.close()));
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query(`UPDATE phonehome_schema SET version = $1`, [PG_SCHEMA_VERSION + 3]);
    await c.end();
    await assert.rejects(
      openStore(url),
      (e: unknown) => e instanceof PhonehomeError && /newer phonehome/.test(e.message),
    );
  });

  it('a server stopped under an open store: the next call is ESTORE with a fix', async () => {
    const s = await openStore(await backends.postgres!());
    await s.save(report('1.0.0'), meta);
    server.halt();
    try {
      await assert.rejects(s.count(), refused(/./));
    } finally {
      server.start();
      await s.close().catch(() => undefined);
    }
  });
});

describe('result store (sqlite): files', () => {
  it('migrates a store written by an older schema, keeping its runs', async () => {
    const path = join(dir, 'old.sqlite');
    const db = new Database(path);
    db.exec(MIGRATIONS[0] as string);
    db.pragma('user_version = 1');
    db.prepare(
      `INSERT INTO runs (name, version, integrity, sandbox, policy_hash, spec, verdict, report, created_at)
       VALUES ('pkg', '0.9.0', 'sha512-0.9.0', 's', NULL, 'pkg@0.9.0', 'pass', ?, '2026-01-01T00:00:00.000Z')`,
    ).run(JSON.stringify(report('0.9.0')));
    db.close();
    const s = SqliteStore.open(path);
    assert.equal(s.schemaVersion, STORE_SCHEMA_VERSION);
    const runs = await s.history('pkg');
    assert.equal(runs.length, 1);
    assert.equal(runs[0]?.phonehomeVersion, null, 'the new column exists, empty for old runs');
    await s.save(report('1.0.0'), meta);
    assert.equal((await s.history('pkg'))[0]?.phonehomeVersion, '0');
    await s.close();
  });

  it('refuses a store from a newer phonehome and a file that is not a store, with a fix', () => {
    const newer = join(dir, 'newer.sqlite');
    const db = new Database(newer);
    db.pragma(`user_version = ${STORE_SCHEMA_VERSION + 5}`);
    db.close();
    assert.throws(
      () => SqliteStore.open(newer),
      (e: unknown) =>
        e instanceof PhonehomeError && e.code === 'ESTORE' && /newer phonehome/.test(e.message),
    );
    const junk = join(dir, 'junk.sqlite');
    writeFileSync(junk, 'this is not a database file, it is text that is long enough to matter');
    assert.throws(
      () => SqliteStore.open(junk),
      (e: unknown) =>
        e instanceof PhonehomeError && e.code === 'ESTORE' && /move it away/.test(e.fix),
    );
  });
});
