/**
 * End to end, a team's shared result store on PostgreSQL (a real server on loopback) and the real
 * sandbox: an audit split into three parts run by three processes at once, then assembled with
 * `--report-only`, says what one whole audit says; two checks of one package started together
 * run it once, the second served the first's result.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { AuditReport } from '../../src/audit/audit.js';
import { cli, leftovers } from '../support/cli.js';
import { reportLines, shop } from '../support/shop.js';
import { startPostgres, type TestPostgres } from '../support/postgres.js';
import { images } from '../support/sandbox.js';
import { startVerdaccio, type Verdaccio } from '../support/verdaccio.js';

describe('a shared PostgreSQL store through the sandbox (verdaccio)', () => {
  let registry: Verdaccio;
  let server: TestPostgres;
  let dbs = 0;
  const work = mkdtempSync(join(tmpdir(), 'phonehome-shared-store-e2e-'));
  const env = {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_config_/i.test(k))),
    PHONEHOME_STORE: '',
  };
  const run = (args: string[]) => cli([...args, '--registry', registry.url], env);

  /** A database of its own on the server, as a store URL. */
  const database = async (): Promise<string> => {
    const name = `e${dbs++}`;
    const c = new pg.Client({ connectionString: server.url });
    await c.connect();
    await c.query(`CREATE DATABASE ${name}`);
    await c.end();
    return server.url.replace(/\/postgres$/, `/${name}`);
  };
  const runsOf = async (url: string, name: string): Promise<number> => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    const { rows } = await c.query(`SELECT count(*) AS n FROM runs WHERE name = $1`, [name]);
    await c.end();
    return Number((rows[0] as { n: string }).n);
  };

  before(async () => {
    await images();
    [registry, server] = await Promise.all([startVerdaccio(), startPostgres()]);
  });
  after(async () => {
    await registry?.close();
    server?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('audit --shard 1/3, 2/3, 3/3 in three processes, then --report-only: the single audit’s report', async () => {
    const dir = join(work, 'shop');
    await shop(registry, dir);

    const whole = await run(['audit', dir, '--store', join(work, 'whole.sqlite'), '--json']);
    assert.equal(whole.code, 1, whole.stderr);
    const single = JSON.parse(whole.stdout) as AuditReport;
    assert.equal(single.summary.packages, 7);

    const url = await database();
    const parts = await Promise.all(
      [1, 2, 3].map((k) =>
        run(['audit', dir, '--store', url, '--shard', `${k}/3`, '--concurrency', '1', '--json']),
      ),
    );
    const reports = parts.map((p) => JSON.parse(p.stdout) as AuditReport);
    // Every package in exactly one part.
    assert.deepEqual(
      reports.flatMap((r) => r.packages.map((p) => p.id)).sort(),
      single.packages.map((p) => p.id).sort(),
    );
    for (const [i, p] of parts.entries()) {
      assert.equal(p.hung, false);
      assert.equal(reports[i]?.part?.index, i + 1);
      assert.ok(p.code === 0 || p.code === 1, `part ${i + 1}: exit ${p.code}\n${p.stderr}`);
      assert.equal(await leftovers(p.pid), 0, 'no containers left by a part');
    }
    const assembled = await run(['audit', dir, '--store', url, '--report-only', '--json']);
    assert.equal(assembled.code, 1, assembled.stderr);
    const report = JSON.parse(assembled.stdout) as AuditReport;
    assert.deepEqual(reportLines(report), reportLines(single));
    assert.equal(report.verdict, single.verdict);
    assert.equal(report.summary.fromStore, report.summary.checked, 'nothing ran');
    assert.equal(report.summary.notRun, 0);
    // Each tarball was run once, by one part.
    for (const p of single.packages)
      assert.equal(await runsOf(url, p.id.slice(0, p.id.lastIndexOf('@'))), 1, p.id);
  });

  it('two checks of one package started together: it runs once, and both give its verdict', async () => {
    const url = await database();
    const [a, b] = await Promise.all([
      run(['check', 'upgrade-beacon@1.0.1', '--store', url, '--json']),
      run(['check', 'upgrade-beacon@1.0.1', '--store', url, '--json']),
    ]);
    for (const r of [a, b]) {
      assert.equal(r?.code, 1, r?.stderr);
      assert.equal((JSON.parse(r?.stdout ?? '{}') as { verdict: string }).verdict, 'fail');
    }
    assert.equal(await runsOf(url, 'upgrade-beacon'), 1, 'one run stored');
    const served = [a, b].filter((r) => /served from the result store/.test(r?.stderr ?? ''));
    assert.equal(served.length, 1, 'one of the two was served the other’s result');
  });
});
