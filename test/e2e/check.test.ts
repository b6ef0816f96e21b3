/**
 * End to end: spawn the built CLI on fixture packages and read its JSON, exit code and stderr.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import type { CheckReport } from '../../src/core/report.js';
import { packageRoot } from '../../src/paths.js';
import { LABEL_OWNER } from '../../src/sandbox/sandbox.js';
import { engine, images } from '../support/sandbox.js';

const CLI = join(packageRoot(), 'dist', 'src', 'cli', 'main.js');
const fixture = (name: string) => join(packageRoot(), 'fixtures', 'packages', name);

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  pid: number;
}

function cli(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr, pid: child.pid ?? 0 }));
  });
}

/** Containers a finished CLI process left behind (its owner label names its pid). */
async function leftovers(pid: number): Promise<number> {
  const list = await engine().docker.listContainers({
    all: true,
    filters: { label: [`${LABEL_OWNER}=${hostname()}:${pid}`] },
  });
  return list.length;
}

describe('phonehome check (CLI)', () => {
  before(async () => {
    await images();
  });

  it('an install-time POST of the environment: warn, exit 1, the request in the install phase', async () => {
    const r = await cli(['check', fixture('install-env-post'), '--json']);
    assert.equal(r.code, 1, r.stderr);
    const report = JSON.parse(r.stdout) as CheckReport;
    assert.equal(report.schemaVersion, 1);
    assert.equal(report.subject.name, 'install-env-post');
    assert.equal(report.subject.version, '1.0.0');
    assert.equal(report.verdict, 'warn');
    assert.deepEqual(
      report.phases.map((p) => [p.name, p.status]),
      [
        ['install', 'completed'],
        ['import', 'completed'],
        ['exercise', 'skipped'],
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
        (f) => f.phase === 'install' && f.destination === 'hooks.collector.example:80',
      ),
    );
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
  });

  it('an honest package with no scripts passes with exit 0 and no events', async () => {
    const r = await cli(['check', fixture('honest-no-scripts'), '--json']);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as CheckReport;
    assert.equal(report.verdict, 'pass');
    assert.deepEqual(report.events, []);
    assert.deepEqual(report.findings, []);
  });

  it('the same package twice gives the same report (stable ordering, no timestamps)', async () => {
    const a = await cli(['check', fixture('import-beacon'), '--json']);
    const b = await cli(['check', fixture('import-beacon'), '--json']);
    const strip = (s: string) => {
      const r = JSON.parse(s) as CheckReport;
      return { ...r, phases: r.phases.map((p) => ({ ...p, durationMs: 0 })) };
    };
    assert.deepEqual(strip(a.stdout), strip(b.stdout));
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

  it('a corrupt tarball: exit 2 with a clear error', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'corrupt-'));
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
    assert.ok(
      (
        await engine().docker.listContainers({
          all: true,
          filters: { label: [`${LABEL_OWNER}=${hostname()}:${pid}`] },
        })
      ).length > 0,
      'the run had containers',
    );
    child.kill('SIGINT');
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 130);
    assert.equal(await leftovers(pid), 0);
    const staging = readdirSync(tmpdir()).filter((n) => n.startsWith(`phonehome-stage-${pid}-`));
    assert.deepEqual(staging, [], 'the staging directory is removed');
  });

  it('usage errors exit 2', async () => {
    const r = await cli(['check']);
    assert.equal(r.code, 2);
    const u = await cli(['frobnicate']);
    assert.equal(u.code, 2);
  });
});
