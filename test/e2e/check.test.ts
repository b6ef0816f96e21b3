/**
 * End to end: spawn the built CLI on fixture packages and read its JSON, exit code and stderr.
 */
import { scratch } from '../support/scratch.js';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import type { CheckReport } from '../../src/core/report.js';
import { CLI, cli, fixture, leftovers, staging } from '../support/cli.js';
import { startRegistry } from '../support/registry.js';
import { images } from '../support/sandbox.js';

describe('phonehome check (CLI)', () => {
  before(async () => {
    await images();
  });

  it('an install-time POST of the environment: fail, exit 1, the request in the install phase', async () => {
    const r = await cli(['check', fixture('install-env-post'), '--json']);
    assert.equal(r.code, 1, r.stderr);
    const report = JSON.parse(r.stdout) as CheckReport;
    assert.equal(report.schemaVersion, 2);
    assert.equal(report.subject.name, 'install-env-post');
    assert.equal(report.subject.version, '1.0.0');
    assert.equal(report.verdict, 'fail');
    assert.deepEqual(
      report.phases.map((p) => [p.name, p.status]),
      [
        ['install', 'completed'],
        ['import', 'completed'],
        ['exercise', 'completed'],
      ],
    );
    const post = report.events.find((e) => e.kind === 'http' && e.method === 'POST');
    assert.ok(post);
    assert.equal(post.phase, 'install');
    assert.equal(post.host, 'hooks.collector.example');
    assert.equal(post.path, '/env');
    assert.ok((post.bodyBytes ?? 0) > 100, 'the environment was sent');
    assert.ok(
      report.events.find(
        (e) => e.kind === 'tls' && e.sni === 'hooks.collector.example' && e.phase === 'install',
      ),
    );
    assert.ok(
      report.findings.some(
        (f) =>
          f.id === 'egress-not-allowed' &&
          f.severity === 'high' &&
          f.phase === 'install' &&
          f.destination === 'hooks.collector.example:80',
      ),
    );
    assert.equal(post.package, 'install-env-post@1.0.0');
    assert.equal(post.script, 'postinstall');
    assert.equal(post.process, 'node collect.js');
    assert.equal(await leftovers(r.pid), 0);
  });

  it('an import-time beacon to a raw IP on an odd port lands in the import phase', async () => {
    const r = await cli(['check', fixture('import-beacon'), '--json']);
    assert.equal(r.code, 1, r.stderr);
    const report = JSON.parse(r.stdout) as CheckReport;
    const tcp = report.events.find((e) => e.kind === 'tcp' && e.ip === '203.0.113.44');
    assert.ok(tcp);
    assert.equal(tcp.phase, 'import');
    assert.equal(tcp.port, 1224);
    assert.ok(!report.events.some((e) => e.phase === 'install'), 'nothing at install');
    const raw = report.findings.find((f) => f.id === 'raw-ip');
    assert.equal(raw?.destination, '203.0.113.44:1224');
    assert.equal(raw?.phase, 'import');
  });

  it('an honest package with no scripts passes with exit 0 and no events', async () => {
    const r = await cli(['check', fixture('honest-no-scripts'), '--json']);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as CheckReport;
    assert.equal(report.verdict, 'pass');
    assert.deepEqual(report.events, []);
    assert.deepEqual(report.findings, []);
  });

  it('the same package twice gives the same report (stable ordering; only times differ)', async () => {
    const a = await cli(['check', fixture('import-beacon'), '--json']);
    const b = await cli(['check', fixture('import-beacon'), '--json']);
    const strip = (s: string) => {
      const r = JSON.parse(s) as CheckReport;
      // A connection the client closes before the observer looks it up has no process, and
      // that race may go either way between two runs (see docs/check.md); all else must match.
      // The count of attempts without their process is that same race. The exercise's caller host
      // is made fresh per run, as bait secrets are.
      const { attribution: _, callerHosts: __, ...rest } = r;
      return {
        ...rest,
        phases: r.phases.map((p) => ({ ...p, durationMs: 0 })),
        // When in its phase an attempt was made (atMs) is a measurement, as durations are.
        events: r.events.map(({ atMs: _at, ...e }) =>
          e.kind === 'tcp' ? { ...e, process: undefined } : e,
        ),
      };
    };
    assert.deepEqual(strip(a.stdout), strip(b.stdout));
  });
});

async function checkJson(args: string[], env?: NodeJS.ProcessEnv): Promise<CheckReport> {
  const r = await cli(['check', '--json', ...args], env);
  assert.ok(r.code === 0 || r.code === 1, `exit ${r.code}: ${r.stderr}`);
  assert.equal(await leftovers(r.pid), 0);
  return JSON.parse(r.stdout) as CheckReport;
}

describe('phonehome check (CLI), threat behaviours and controls', () => {
  before(async () => {
    await images();
  });

  it('DNS-only exfiltration: the data-carrying names, at install, nothing else', async () => {
    const report = await checkJson([fixture('dns-exfil')]);
    const lookups = report.events.filter((e) => e.kind === 'dns');
    const names = lookups.map((e) => e.host ?? '');
    // It asks for the user and host names, which tell a laptop from a runner: three names under
    // each identity.
    assert.equal(names.length, 6);
    assert.equal(lookups.filter((e) => e.identity === 'laptop').length, 3);
    assert.equal(lookups.filter((e) => e.identity === 'ci').length, 3);
    for (const n of names) assert.match(n, /^[0-9a-f]+\.\d\.q\.exfil-zone\.example$/);
    assert.ok(report.events.every((e) => e.kind === 'dns' && e.phase === 'install'));
    assert.ok(report.events.every((e) => e.script === 'preinstall'));
    const data = report.findings.filter((f) => f.id === 'dns-data');
    // User and host names (a few hex characters each) are too short to tell from a name; the
    // project folder's path is not.
    assert.ok(data.length >= 1, JSON.stringify(report.findings));
    assert.ok(data.some((f) => f.destination?.startsWith(Buffer.from('/work').toString('hex'))));
    assert.ok(data.every((f) => f.severity === 'high' && !f.suggestion));
    assert.equal(report.verdict, 'fail');
  });

  it('a curl/wget second stage from a shell script: the GET, made by curl', async () => {
    const report = await checkJson([fixture('shell-second-stage')]);
    const get = report.events.find((e) => e.kind === 'http');
    assert.ok(get);
    assert.equal(get.phase, 'install');
    assert.equal(get.method, 'GET');
    assert.equal(get.ip, '198.51.100.23');
    assert.equal(get.port, 8080);
    assert.equal(get.path, '/stage2.bin');
    assert.match(get.process ?? '', /^curl /);
    assert.equal(get.package, 'shell-second-stage@1.0.0');
    const tripped = new Set(report.findings.map((f) => f.id));
    for (const id of ['foreign-process', 'raw-ip', 'nonstandard-port', 'egress-not-allowed'])
      assert.ok(tripped.has(id), `${id}: ${[...tripped].join(', ')}`);
  });

  it('a detached child that phones home after its postinstall ended counts for install', async () => {
    const report = await checkJson([fixture('detached-beacon'), '--settle', '5']);
    const tls = report.events.find((e) => e.kind === 'tls');
    assert.ok(tls, JSON.stringify(report.events));
    assert.equal(tls.sni, 'late.beacon.example');
    assert.equal(tls.phase, 'install');
    assert.equal(tls.package, 'detached-beacon@1.0.0');
    assert.match(tls.process ?? '', /later\.js$/);
    const install = report.phases.find((p) => p.name === 'install');
    assert.ok(install?.leftovers?.some((c) => c.endsWith('later.js')));
  });

  it('egress only when an export is called lands in exercise, not import', async () => {
    const report = await checkJson([fixture('call-time-beacon')]);
    assert.ok(!report.events.some((e) => e.phase === 'import'));
    const tls = report.events.find((e) => e.kind === 'tls');
    assert.ok(tls);
    assert.equal(tls.phase, 'exercise');
    assert.equal(tls.sni, 'api.wallet-lookup.example');
    const exercise = report.phases.find((p) => p.name === 'exercise');
    assert.ok((exercise?.calls?.functions ?? 0) >= 1);
  });

  it('a bin that phones home is run in exercise, with harmless arguments', async () => {
    const report = await checkJson([fixture('bin-beacon')]);
    const dns = report.events.filter((e) => e.kind === 'dns');
    assert.ok(dns.length > 0);
    assert.ok(dns.every((e) => e.phase === 'exercise' && e.host === 'telemetry.cli.example'));
    const runs = new Set(dns.map((e) => e.process));
    assert.ok(runs.has('node /work/node_modules/.bin/bin-beacon --help'), [...runs].join(', '));
    assert.ok(runs.has('node /work/node_modules/.bin/bin-beacon --version'));
  });

  it('only the CommonJS entry phones home: seen on require(), not on import()', async () => {
    const report = await checkJson([fixture('require-only-beacon')]);
    const atImport = report.events.filter((e) => e.phase === 'import');
    assert.ok(atImport.length > 0);
    assert.ok(atImport.every((e) => e.process === 'node (phonehome harness: require)'));
  });

  it('the install script of a bundled dependency runs and is charged to the package that ships it', async () => {
    // A bundled package's code comes from its bundler's tarball (npm never rebuilds it by name):
    // its install scripts run in the bundler's install step, and are the bundler's.
    const report = await checkJson([fixture('bundles-beacon')]);
    const dns = report.events.find((e) => e.host === 'bundled.beacon.example');
    assert.ok(dns);
    assert.equal(dns.phase, 'install');
    assert.equal(dns.package, 'bundles-beacon@1.0.0');
    assert.match(dns.process ?? '', /bundled\.beacon\.example/);
  });

  it('--as ci: the sandbox looks like a CI runner, and a CI-only payload acts', async () => {
    const ci = await checkJson([fixture('ci-only-beacon'), '--as', 'ci', '--no-cache']);
    assert.equal(ci.verdict, 'fail');
    assert.ok(
      ci.events.some((e) => e.host === 'runner.ci-beacon.example' && e.phase === 'install'),
    );
    assert.ok(
      ci.events.every((e) => e.identity === 'ci'),
      JSON.stringify(ci.events),
    );
    // The default identity is a laptop; the postinstall reads CI variables, so install runs again
    // as a CI runner, and the payload is caught there.
    const laptop = await checkJson([fixture('ci-only-beacon'), '--no-cache']);
    assert.equal(laptop.verdict, 'fail');
    const seen = laptop.events.filter((e) => e.host === 'runner.ci-beacon.example');
    assert.ok(seen.length > 0, JSON.stringify(laptop.events));
    assert.ok(seen.every((e) => e.identity === 'ci' && e.phase === 'install'));
    assert.match(laptop.phases.find((p) => p.name === 'install')?.note ?? '', /also run as ci/);
  });

  it('--as ci still catches a payload that acts only on a laptop; a CI-aware banner passes', async () => {
    const ci = await checkJson([fixture('laptop-only-beacon'), '--as', 'ci', '--no-cache']);
    assert.equal(ci.verdict, 'fail');
    const seen = ci.events.filter((e) => e.host === 'desk.laptop-beacon.example');
    assert.ok(
      seen.length > 0 && seen.every((e) => e.identity === 'laptop'),
      JSON.stringify(ci.events),
    );
    const honest = await checkJson([fixture('honest-ci-aware'), '--no-cache']);
    assert.equal(honest.verdict, 'pass', JSON.stringify(honest.findings));
    assert.match(
      honest.phases.find((p) => p.name === 'install')?.note ?? '',
      /also run as ci \(honest-ci-aware@1\.0\.0 can tell the identities apart\): completed$/,
    );
  });

  it('honest controls pass: a postinstall that prints, a loopback self-test', async () => {
    for (const name of ['honest-postinstall-prints', 'honest-loopback-server']) {
      const report = await checkJson([fixture(name)]);
      assert.equal(report.verdict, 'pass', `${name}: ${JSON.stringify(report.events)}`);
      assert.ok(
        report.phases.every((p) => p.status === 'completed'),
        name,
      );
    }
  });

  it('a dependency that phones home, from an authenticated registry named in the npmrc', async () => {
    const token = 'test-token-5d1e';
    const registry = await startRegistry(
      [fixture('telemetry-dep'), fixture('uses-telemetry-dep')],
      { token },
    );
    try {
      const dir = scratch('npmrc-');
      const npmrc = join(dir, 'npmrc');
      const hostPath = registry.url.replace(/^http:/, '');
      writeFileSync(npmrc, `registry=${registry.url}\n${hostPath}:_authToken=\${TEST_TOKEN}\n`);
      // As in a user's shell: without the npm_config_* variables `npm test` itself exports.
      const shell = Object.fromEntries(
        Object.entries(process.env).filter(([k]) => !/^npm_config_/i.test(k)),
      );
      const env = { ...shell, NPM_CONFIG_USERCONFIG: npmrc, TEST_TOKEN: token };
      const report = await checkJson(['uses-telemetry-dep@^1'], env);
      assert.equal(report.subject.name, 'uses-telemetry-dep');
      const tls = report.events.find((e) => e.kind === 'tls' && e.phase === 'install');
      assert.ok(tls, JSON.stringify(report.events));
      assert.equal(tls.sni, 'metrics.dep-telemetry.example');
      assert.equal(tls.package, 'telemetry-dep@1.0.0', 'charged to the dependency');
      assert.ok(report.findings.some((f) => f.package === 'telemetry-dep@1.0.0'));

      // Without the token: a clear auth error, nothing started.
      const denied = await cli(['check', 'uses-telemetry-dep@^1', '--registry', registry.url]);
      assert.equal(denied.code, 3, denied.stderr);
      assert.match(denied.stderr, /EREGISTRY_AUTH/);
      assert.equal(await leftovers(denied.pid), 0);
    } finally {
      await registry.close();
    }
  });
});

describe('phonehome check (CLI), bad input', () => {
  it('a package that is not in the registry: exit 2, ESPEC_NOT_FOUND, no container', async () => {
    const r = await cli(['check', 'phonehome-fixture-that-does-not-exist-7f3a9c@1.0.0']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /ESPEC_NOT_FOUND/);
    assert.match(r.stderr, /fix: /);
    assert.equal(r.stdout, '');
    assert.equal(await leftovers(r.pid), 0);
  });

  it('a corrupt tarball: exit 2 with a clear error', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'corrupt-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const tgz = join(dir, 'broken-1.0.0.tgz');
    writeFileSync(
      tgz,
      Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08, 0x00]), Buffer.alloc(100, 0x41)]),
    );
    const r = await cli(['check', tgz]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /ESPEC_CORRUPT|ESPEC/);
    assert.equal(await leftovers(r.pid), 0);
  });

  it('a path that does not exist and an invalid spec: exit 2', async () => {
    const missing = await cli(['check', './no/such/package']);
    assert.equal(missing.code, 2, missing.stderr);
    assert.match(missing.stderr, /ESPEC/);
    const invalid = await cli(['check', '@@not a spec']);
    assert.equal(invalid.code, 2, invalid.stderr);
    assert.match(invalid.stderr, /ESPEC/);
  });

  it('a dead Docker daemon: exit 3 and how to fix it, from check and doctor', async () => {
    const env = { ...process.env, DOCKER_HOST: `unix://${join(tmpdir(), 'no-docker-here.sock')}` };
    const r = await cli(['check', fixture('honest-no-scripts')], env);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /EDOCKER_UNREACHABLE/);
    assert.match(r.stderr, /fix: .*dockerd/);
    const d = await cli(['doctor'], env);
    assert.equal(d.code, 3);
    assert.match(d.stdout, /FAIL docker/);
    assert.match(d.stdout, /fix:/);
  });

  it('a postinstall that never ends times out, and the run is still reported', async () => {
    const r = await cli([
      'check',
      fixture('hostile-infinite-loop'),
      '--json',
      '--install-timeout',
      '3',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as CheckReport;
    assert.equal(report.phases.find((p) => p.name === 'install')?.status, 'timeout');
    assert.equal(report.phases.find((p) => p.name === 'import')?.status, 'completed');
    assert.equal(await leftovers(r.pid), 0);
  });

  it('Ctrl-C in the middle of a run removes its containers and exits 130', async () => {
    const child = spawn(process.execPath, [CLI, 'check', fixture('hostile-infinite-loop')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    await new Promise<void>((resolve) => {
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (stderr.includes('phase install')) resolve();
      });
    });
    const pid = child.pid ?? 0;
    assert.ok((await leftovers(pid)) > 0, 'the run had containers');
    child.kill('SIGINT');
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 130);
    assert.equal(await leftovers(pid), 0);
    assert.deepEqual(staging(pid), [], 'the staging directory is removed');
  });

  it('usage errors exit 2', async () => {
    const r = await cli(['check']);
    assert.equal(r.code, 2);
    const u = await cli(['frobnicate']);
    assert.equal(u.code, 2);
  });
});
