/**
 * End to end, one audit over two Docker engines (the machine's own and a second daemon with its
 * own socket, data root and exec root, standing in for a remote one): the images are sent to the
 * engine that lacks them, shards go to both, and the report is the one engine's report. A second
 * engine whose daemon is killed in the middle of the audit: its shard is run again on the other,
 * the audit finishes with the same report, and nothing of it stays on either engine (the killed
 * one's containers removed by `phonehome sweep` once it is back).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import type { AuditReport } from '../../src/audit/audit.js';
import { LABEL_RUN } from '../../src/sandbox/sandbox.js';
import { cli, leftovers, owner } from '../support/cli.js';
import { reportLines, shop } from '../support/shop.js';
import { startSecondEngine, type SecondEngine } from '../support/second-engine.js';
import { images } from '../support/sandbox.js';
import { startVerdaccio, type Verdaccio } from '../support/verdaccio.js';

describe('an audit over two Docker engines (verdaccio)', () => {
  let registry: Verdaccio;
  let second: SecondEngine;
  let single: AuditReport;
  const work = mkdtempSync(join(tmpdir(), 'phonehome-engines-e2e-'));
  const dir = join(work, 'shop');
  const env = {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_config_/i.test(k))),
    PHONEHOME_STORE: '',
  };
  let stores = 0;
  const audit = (extra: string[]) =>
    cli(
      [
        'audit',
        dir,
        '--registry',
        registry.url,
        '--store',
        join(work, `s${stores++}.sqlite`),
        '--per-sandbox',
        '2',
        '--concurrency',
        '1',
        '--json',
        ...extra,
      ],
      env,
    );
  const onSecond = async (pid: number) =>
    (await second.docker.listContainers({ all: true, filters: { label: [owner(pid)] } })).length;

  /** Whether a sandbox runs on the second engine within a minute (polled every 100 ms). */
  const sandboxOnSecond = async (): Promise<boolean> => {
    for (let i = 0; i < 600; i++) {
      const list = await second.docker
        .listContainers({ filters: { label: [LABEL_RUN], status: ['running'] } })
        .catch(() => []);
      if (list.length) return true;
      await sleep(100);
    }
    return false;
  };

  before(async () => {
    await images();
    [registry, second] = await Promise.all([startVerdaccio(), startSecondEngine()]);
    await shop(registry, dir);
    const r = await audit([]);
    assert.equal(r.code, 1, r.stderr);
    single = JSON.parse(r.stdout) as AuditReport;
  });
  after(async () => {
    await registry?.close();
    await second?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('both engines: the images sent to the second, shards on both, the one engine’s report', async () => {
    const r = await audit(['--engine', 'default', '--engine', second.address]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /sending the sandbox images from default to unix:\/\//);
    assert.match(r.stderr, new RegExp(`${second.address}: \\d+ CPU`));
    assert.deepEqual(reportLines(JSON.parse(r.stdout) as AuditReport), reportLines(single));
    const events = (await second.docker.getEvents({
      since: Math.floor(r.startedAt / 1000),
      until: Math.ceil(r.endedAt / 1000),
      filters: { type: ['container'], event: ['start'], label: [owner(r.pid)] },
    })) as NodeJS.ReadableStream;
    let text = '';
    for await (const chunk of events) text += chunk.toString();
    const started = text.split('\n').filter(Boolean).length;
    assert.ok(started > 0, 'the second engine ran sandboxes of this audit');
    assert.equal(await leftovers(r.pid), 0);
    assert.equal(await onSecond(r.pid), 0);
  });

  it('the second engine’s daemon killed mid-audit: its shard runs on the first, same report', async () => {
    const running = audit(['--engine', 'default', '--engine', second.address]);
    // Killed as soon as a sandbox of this audit runs there.
    assert.ok(await sandboxOnSecond(), 'a sandbox ran on the second engine');
    second.kill();
    const r = await running;
    assert.equal(r.hung, false);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /stopped answering .*goes to the other engines/);
    const report = JSON.parse(r.stdout) as AuditReport;
    assert.deepEqual(reportLines(report), reportLines(single));
    assert.equal(report.summary.notRun, 0);
    assert.equal(await leftovers(r.pid), 0, 'nothing left on the first engine');
    // Back up, the killed daemon still has the containers of the run it lost; sweep removes
    // them (their owner process is gone).
    await second.start();
    const sweep = await cli(['sweep', '--engine', second.address], env);
    assert.equal(sweep.code, 0, sweep.stderr);
    assert.equal(await onSecond(r.pid), 0, 'nothing left on the second engine after the sweep');
  });

  it('the second engine frozen mid-audit (its connections hang): given up on after a minute, same report', async () => {
    const running = audit(['--engine', 'default', '--engine', second.address]);
    assert.ok(await sandboxOnSecond(), 'a sandbox ran on the second engine');
    second.freeze();
    try {
      const r = await running;
      assert.equal(r.hung, false, r.stderr);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /has not answered for a minute.*goes to the other engines/);
      const report = JSON.parse(r.stdout) as AuditReport;
      assert.deepEqual(reportLines(report), reportLines(single));
      assert.equal(await leftovers(r.pid), 0, 'nothing left on the first engine');
      second.thaw();
      const sweep = await cli(['sweep', '--engine', second.address], env);
      assert.equal(sweep.code, 0, sweep.stderr);
      assert.equal(await onSecond(r.pid), 0, 'nothing left on the second engine after the sweep');
    } finally {
      second.thaw();
    }
  });
});
