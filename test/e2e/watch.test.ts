/**
 * `watch` and the known-malicious set, end to end through a registry on loopback: new releases
 * published while watch runs are checked in the real sandbox as they appear; a restart checks
 * nothing again; the registry is asked with conditional requests; an imported OSV sample flags
 * a fixture's destination and a locked version without running it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AuditReport } from '../../src/audit/audit.js';
import type { CheckReport } from '../../src/core/report.js';
import { packageRoot } from '../../src/paths.js';
import { CLI, cli, fixture, leftovers, staging } from '../support/cli.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { images } from '../support/sandbox.js';

/**
 * A project depending on `dependencies`, its lockfile written by npm against the loopback
 * registry (which runs in this process: npm is started asynchronously).
 */
async function lockedProject(
  dir: string,
  dependencies: Record<string, string>,
  registry: string,
  env: NodeJS.ProcessEnv,
): Promise<string> {
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({ name: 'shop-frontend', version: '2.3.0', private: true, dependencies }),
  );
  await new Promise<void>((resolve, reject) => {
    const child = spawn(
      'npm',
      [
        'install',
        '--package-lock-only',
        '--ignore-scripts',
        '--no-audit',
        '--no-fund',
        '--registry',
        registry,
      ],
      { cwd: dir, env, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`npm: exit ${code}: ${err}`)),
    );
  });
  return dir;
}

/** A long-running CLI whose stdout lines can be waited for. */
function spawnCli(args: string[], env: NodeJS.ProcessEnv) {
  const child = spawn(process.execPath, [CLI, ...args], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const waiters: { re: RegExp; resolve: (line: string) => void }[] = [];
  const poll = () => {
    for (const w of [...waiters]) {
      const line = stdout.split('\n').find((l) => w.re.test(l));
      if (line) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  };
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    poll();
  });
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
  return {
    pid: child.pid ?? 0,
    out: () => stdout,
    err: () => stderr,
    closed,
    line: (re: RegExp, ms: number) =>
      new Promise<string>((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(new Error(`no line ${re} in ${ms} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`)),
          ms,
        );
        waiters.push({
          re,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
        poll();
      }),
    stop: async () => {
      child.kill('SIGINT');
      const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
      const code = await closed;
      clearTimeout(t);
      return code;
    },
  };
}

describe('watch: new releases checked as they appear', () => {
  let registry: TestRegistry;
  const work = mkdtempSync(join(tmpdir(), 'phonehome-watch-e2e-'));
  const store = join(work, 'watch.sqlite');
  // As in a user's shell: without the npm_config_* variables `npm test` itself exports.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^npm_config_/i.test(k)),
  );
  let project: string;

  before(async () => {
    await images();
    registry = await startRegistry([fixture('quiet-lib-1.0.0')]);
    project = await lockedProject(
      join(work, 'project'),
      { 'quiet-lib': '^1.0.0' },
      registry.url,
      env,
    );
  });
  after(async () => {
    await registry?.close();
    rmSync(work, { recursive: true, force: true });
  });

  /** Packument requests watch made (staging a version for a run makes npm's own). */
  const watchRequests = () =>
    registry.log.filter((r) => r.path === '/quiet-lib' && / watch /.test(r.agent));

  it('watch --interval 1s: 1.1.0 then 1.2.0 published during the run give two lines, pass then fail', async () => {
    const w = spawnCli(
      ['watch', project, '--interval', '1s', '--registry', registry.url, '--store', store],
      env,
    );
    try {
      // The first pass finds nothing newer than the pinned 1.0.0.
      await new Promise((r) => setTimeout(r, 3000));
      assert.equal(w.out(), '', w.err());
      await registry.publish(fixture('quiet-lib-1.1.0'));
      const pass = await w.line(/quiet-lib 1\.0\.0 -> 1\.1\.0/, 120_000);
      assert.match(pass, /^PASS /);
      assert.match(pass, /no new destinations/);
      assert.match(pass, /verdict [\d.]+ (s|min) after publication/);
      await registry.publish(fixture('quiet-lib-1.2.0'));
      const fail = await w.line(/quiet-lib 1\.0\.0 -> 1\.2\.0/, 120_000);
      assert.match(fail, /^FAIL /);
      assert.match(fail, /new: install stats\.quiet-lib-cdn\.example:443/);
      // Each version once: the passes after did not report 1.1.0 again.
      assert.equal(w.out().match(/-> 1\.1\.0/g)?.length, 1);
    } finally {
      const code = await w.stop();
      assert.equal(code, 130, w.err());
      assert.equal(await leftovers(w.pid), 0);
      assert.deepEqual(staging(w.pid), []);
    }
    // Polite: after the first answer every request was conditional, and only the passes after a
    // publication were answered with a body.
    const asked = watchRequests();
    assert.ok(asked.length >= 4, JSON.stringify(asked));
    assert.equal(asked[0]?.conditional, false);
    assert.ok(
      asked.slice(1).every((r) => r.conditional),
      JSON.stringify(registry.log.filter((r) => r.path === '/quiet-lib')),
    );
    assert.equal(asked.filter((r) => r.status === 200).length, 3);
    assert.ok(asked.filter((r) => r.status === 304).length >= 1);
  });

  it('watch --once on the same state exits 1 with markdown naming 1.2.0 and its new destination, without running anything', async () => {
    const before = registry.log.length;
    const r = await cli(
      ['watch', project, '--once', '--markdown', '--registry', registry.url, '--store', store],
      env,
    );
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, /^## phonehome watch: FAIL/);
    assert.match(
      r.stdout,
      /\| `quiet-lib` \| `1\.0\.0` → `1\.2\.0` \| fail \| `install stats\.quiet-lib-cdn\.example:443` \|/,
    );
    assert.match(r.stdout, /\| `quiet-lib` \| `1\.0\.0` → `1\.1\.0` \| pass \|/);
    assert.match(r.stdout, /### `quiet-lib@1\.2\.0`: fail/);
    // Both versions and the baseline from the result store: no sandbox, no tarball fetched.
    assert.doesNotMatch(r.stderr, /\[check\] resolving|\[watch\] checking/);
    assert.equal(r.stderr.match(/served from the result store/g)?.length, 4, r.stderr);
    assert.equal(await leftovers(r.pid), 0);
    const since = registry.log.slice(before);
    assert.ok(!since.some((x) => x.path.includes('/-/')), JSON.stringify(since));
    assert.deepEqual(
      since.map((x) => [x.status, x.conditional, / watch /.test(x.agent)]),
      [[304, true, true]],
    );
  });

  it('a restart does not check or report either version again', async () => {
    const w = spawnCli(
      ['watch', project, '--interval', '1s', '--registry', registry.url, '--store', store],
      env,
    );
    await new Promise((r) => setTimeout(r, 4000));
    const code = await w.stop();
    assert.equal(code, 130);
    assert.deepEqual(staging(w.pid), []);
    assert.equal(w.out(), '');
    assert.doesNotMatch(w.err(), /\[watch\] checking/);
    assert.match(w.err(), /1 package\(s\) followed/);
  });

  it('a record imported later makes a reported version fail at the next pass, without a run', async () => {
    const osv = join(work, 'osv');
    mkdirSync(osv, { recursive: true });
    writeFileSync(
      join(osv, 'MAL-2026-90010.json'),
      JSON.stringify({
        id: 'MAL-2026-90010',
        modified: '2026-12-01T08:00:00Z',
        summary: 'quiet-lib 1.1.0 carries a payload that waits',
        affected: [{ package: { ecosystem: 'npm', name: 'quiet-lib' }, versions: ['1.1.0'] }],
      }),
    );
    const w = spawnCli(
      ['watch', project, '--interval', '1s', '--registry', registry.url, '--store', store],
      env,
    );
    try {
      await new Promise((r) => setTimeout(r, 2500));
      assert.equal(w.out(), '', 'nothing new before the import');
      const imported = await cli(['indicators', 'import', osv, '--store', store], env);
      assert.equal(imported.code, 0, imported.stderr);
      const line = await w.line(/quiet-lib 1\.0\.0 -> 1\.1\.0/, 30_000);
      assert.match(line, /^FAIL .*KNOWN MALICIOUS: MAL-2026-90010/);
      assert.doesNotMatch(w.err(), /\[watch\] checking/);
    } finally {
      assert.equal(await w.stop(), 130);
      assert.deepEqual(staging(w.pid), []);
    }
  });

  it('bad flags are usage errors with a fix', async () => {
    for (const [args, re] of [
      [['--interval', '0s'], /--interval wants a duration of at least a second/],
      [['--interval', 'soon'], /--interval wants a duration/],
      [['--markdown'], /--markdown summarises one pass: add --once/],
      [['--once', '--max-versions', '0'], /--max-versions wants a whole number above zero/],
    ] as const) {
      const r = await cli(['watch', project, '--store', store, ...args], env);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, re);
    }
    const missing = await cli(['watch', join(work, 'nowhere'), '--once', '--store', store], env);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /ELOCKFILE/);
  });
});

describe('known-malicious records from an OSV sample', () => {
  let registry: TestRegistry;
  const work = mkdtempSync(join(tmpdir(), 'phonehome-osv-e2e-'));
  const store = join(work, 'osv.sqlite');
  const osv = join(packageRoot(), 'fixtures', 'osv');
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^npm_config_/i.test(k)),
  );

  before(async () => {
    await images();
    registry = await startRegistry([fixture('upgrade-beacon-1.0.1'), fixture('quiet-lib-1.0.0')]);
  });
  after(async () => {
    await registry?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('indicators import reads the sample, says what it kept, and doctor-style show dates it', async () => {
    const r = await cli(['indicators', 'import', osv, '--store', store], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /imported 3 known-malicious npm record\(s\)/);
    assert.match(r.stdout, /2 with indicators of compromise: 5 destination pattern\(s\)/);
    assert.match(
      r.stdout,
      /1 IOC host\(s\) of shared services kept but not matched .*api\.github\.com/,
    );
    assert.match(r.stdout, /1 not MAL-, 1 for other ecosystems, 1 withdrawn/);
    assert.match(r.stdout, /1 file\(s\) are not OSV records/);
    const show = await cli(['indicators', 'show', 'upgrade-beacon', '--store', store], env);
    assert.match(
      show.stdout,
      /^3 known-malicious npm record\(s\) from .*; newest record (?:\d+ day\(s\) old|today)/,
    );
    assert.match(show.stdout, /MAL-2026-90001 {2}upgrade-beacon {2}1\.0\.1/);
    const none = await cli(['indicators', 'import', join(osv, 'withdrawn'), '--store', store], env);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /EINTEL.*holds no MAL- record for npm/s);
    // The failed import changed nothing.
    const still = await cli(['indicators', 'show', '--json', '--store', store], env);
    assert.equal((JSON.parse(still.stdout) as { records: number }).records, 3);
  });

  it("a fixture's egress to an IOC is known-malicious-destination, and its version known-malicious-package", async () => {
    const r = await cli(
      ['check', fixture('upgrade-beacon-1.0.1'), '--json', '--store', store, '--no-cache'],
      env,
    );
    assert.equal(r.code, 1, r.stderr);
    const report = JSON.parse(r.stdout) as CheckReport;
    const dest = report.findings.find((f) => f.id === 'known-malicious-destination');
    assert.equal(dest?.severity, 'critical');
    assert.equal(dest?.phase, 'install');
    assert.match(dest?.message ?? '', /cdn\.upgrade-stats\.example.*MAL-2026-90001/);
    const pkg = report.findings.find((f) => f.id === 'known-malicious-package');
    assert.equal(pkg?.package, 'upgrade-beacon@1.0.1');
    assert.match(report.policy?.malicious ?? '', /^3 known-malicious record\(s\)/);
    assert.equal(await leftovers(r.pid), 0);
  });

  it('an audit of a lockfile pinning a MAL- version flags it with the record id without a sandbox run', async () => {
    const project = await lockedProject(
      join(work, 'project'),
      { 'upgrade-beacon': '1.0.1' },
      registry.url,
      env,
    );
    const before = registry.log.length;
    const r = await cli(
      ['audit', project, '--json', '--registry', registry.url, '--store', store],
      env,
    );
    assert.equal(r.code, 1, r.stderr);
    const report = JSON.parse(r.stdout) as AuditReport;
    const p = report.packages.find((x) => x.id === 'upgrade-beacon@1.0.1');
    assert.equal(p?.status, 'known-malicious');
    assert.equal(p?.verdict, 'fail');
    assert.ok(
      p?.report?.phases.every(
        (ph) => ph.status === 'skipped' && /MAL-2026-90001/.test(ph.note ?? ''),
      ),
    );
    assert.match(
      p?.report?.findings.find((f) => f.id === 'known-malicious-package')?.message ?? '',
      /MAL-2026-90001 \(Malicious code in upgrade-beacon \(npm\)\)/,
    );
    assert.equal(report.summary.knownMalicious, 1);
    assert.match(r.stderr, /0 to run/);
    // Not fetched, not run.
    assert.ok(!registry.log.slice(before).some((x) => x.path.includes('/-/')));
    assert.equal(await leftovers(r.pid), 0);
    const text = await cli(['audit', project, '--registry', registry.url, '--store', store], env);
    assert.match(
      text.stdout,
      /1 KNOWN MALICIOUS version\(s\), flagged without running: upgrade-beacon@1\.0\.1/,
    );
  });
});
