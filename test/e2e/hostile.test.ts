/**
 * End to end, hostile packages: packages that attack the sandbox and the tool itself (fork bomb,
 * full disk, a flood of output, an import that never returns, a package.json that is not JSON, a
 * tarball whose entries point outside the package). Whatever the package does, the check must end
 * with a report or a clean spec error, and leave no container and no staging directory behind.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import * as tar from 'tar';
import type { CheckReport, PhaseResult } from '../../src/core/report.js';
import {
  cli,
  fixture,
  HANG_MS,
  leftovers,
  owner,
  staging,
  type CliResult,
} from '../support/cli.js';
import { engine, images } from '../support/sandbox.js';

/** Containers the engine created for a CLI process while it ran, from the engine's event log. */
async function containersCreated(r: CliResult): Promise<number> {
  const stream = await engine().docker.getEvents({
    since: Math.floor(r.startedAt / 1000) - 1,
    until: Math.ceil(r.endedAt / 1000) + 1,
    filters: { type: ['container'], event: ['create'], label: [owner(r.pid)] },
  });
  let text = '';
  for await (const chunk of stream as AsyncIterable<Buffer>) text += chunk.toString();
  return text.split('\n').filter((l) => l.trim()).length;
}

/** What holds however the run ended: it ended, and nothing of it is left. */
async function assertCleanEnd(r: CliResult): Promise<void> {
  assert.equal(r.hung, false, `the CLI did not end within ${HANG_MS / 1000} s`);
  assert.equal(await leftovers(r.pid), 0, 'no container is left');
  assert.deepEqual(staging(r.pid), [], 'the staging directory is removed');
}

function parseReport(r: CliResult): CheckReport {
  assert.notEqual(r.code, 4, `internal error (exit 4):\n${r.stderr}`);
  assert.ok(r.code === 0 || r.code === 1, `exit ${r.code}:\n${r.stderr}`);
  return JSON.parse(r.stdout) as CheckReport;
}

function phaseOf(report: CheckReport, name: PhaseResult['name']): PhaseResult {
  const p = report.phases.find((x) => x.name === name);
  assert.ok(p, `the report has a ${name} phase`);
  return p;
}

describe('phonehome check (CLI), hostile packages', () => {
  before(async () => {
    await images();
  });

  describe('a fork bomb in postinstall', () => {
    let r: CliResult;
    before(async () => {
      r = await cli([
        'check',
        fixture('hostile-fork-bomb'),
        '--json',
        '--install-timeout',
        '8',
        '--settle',
        '1',
      ]);
    });

    it('leaves no container and no staging directory behind', async () => {
      await assertCleanEnd(r);
    });

    it('is stopped at the install timeout, and import and exercise still run', () => {
      const report = parseReport(r);
      assert.equal(r.code, 0, 'no egress, so a pass');
      assert.equal(report.subject.name, 'hostile-fork-bomb');
      // Always the timeout: the script npm starts never ends (see the fixture's bomb.sh). A copy
      // of the bomb exits when its fork() fails, which is why the first script is not one.
      const install = phaseOf(report, 'install');
      assert.equal(install.status, 'timeout', install.note);
      assert.equal(install.exitCode, null);
      assert.match(
        install.note ?? '',
        /^killed at its timeout \(postinstall of hostile-fork-bomb@1\.0\.0\)/,
      );
      assert.equal(phaseOf(report, 'import').status, 'completed');
      assert.equal(phaseOf(report, 'exercise').status, 'completed');
      assert.deepEqual(report.events, []);
    });
  });

  describe('a postinstall that fills the disk', () => {
    let r: CliResult;
    before(async () => {
      r = await cli([
        'check',
        fixture('hostile-disk-fill'),
        '--json',
        '--install-timeout',
        '20',
        '--settle',
        '1',
      ]);
    });

    it('fails the install phase, and import and exercise still run', () => {
      const report = parseReport(r);
      assert.equal(r.code, 0, r.stderr);
      // The project folder is a 1 GB tmpfs: full within a few seconds (1-2 s here), far inside
      // the 20 s install timeout, so the script always ends on its own, with its exit code.
      const install = phaseOf(report, 'install');
      assert.equal(install.status, 'failed', install.note);
      assert.equal(install.exitCode, 1);
      assert.match(install.note ?? '', /exit 1: disk full after \d+ bytes: ENOSPC/);
      assert.equal(phaseOf(report, 'import').status, 'completed');
      assert.equal(phaseOf(report, 'exercise').status, 'completed');
      assert.equal(phaseOf(report, 'exercise').calls?.functions, 1, 'the export was called');
    });

    it('leaves no container and no staging directory behind', async () => {
      await assertCleanEnd(r);
    });
  });

  describe('a postinstall that prints 100 MB', () => {
    let r: CliResult;
    before(async () => {
      r = await cli(['check', fixture('hostile-huge-stdout'), '--json', '--settle', '1']);
    });

    it('leaves no container and no staging directory behind', async () => {
      await assertCleanEnd(r);
    });

    it('counts every byte but keeps the report small', () => {
      const report = parseReport(r);
      assert.equal(r.code, 0, r.stderr);
      const install = phaseOf(report, 'install');
      assert.equal(install.status, 'completed');
      assert.ok((install.outputBytes ?? 0) >= 100_000_000, `outputBytes ${install.outputBytes}`);
      assert.ok(r.stdout.length < 1_000_000, `JSON report of ${r.stdout.length} bytes`);
      assert.ok(r.stderr.length < 1_000_000, `stderr of ${r.stderr.length} bytes`);
      assert.equal(phaseOf(report, 'import').status, 'completed');
    });
  });

  describe('a main module that never returns from require()', () => {
    let r: CliResult;
    before(async () => {
      r = await cli([
        'check',
        fixture('hostile-import-hang'),
        '--json',
        '--import-timeout',
        '3',
        '--exercise-timeout',
        '3',
        '--settle',
        '1',
      ]);
    });

    it('times out import and exercise and still reports the run', () => {
      const report = parseReport(r);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(report.subject.name, 'hostile-import-hang');
      assert.equal(phaseOf(report, 'install').status, 'skipped');
      const imp = phaseOf(report, 'import');
      assert.equal(imp.status, 'timeout');
      assert.match(imp.note ?? '', /timeout/);
      assert.equal(phaseOf(report, 'exercise').status, 'timeout');
    });

    it('leaves no container and no staging directory behind', async () => {
      await assertCleanEnd(r);
    });
  });

  describe('a package.json that is not JSON', () => {
    let truncatedDir: string;
    before(() => {
      // A cut-off package.json cannot live in fixtures/ (the formatter refuses to parse it).
      truncatedDir = mkdtempSync(join(tmpdir(), 'hostile-truncated-'));
      cpSync(fixture('hostile-bad-package-json'), truncatedDir, { recursive: true });
      writeFileSync(
        join(truncatedDir, 'package.json'),
        '{\n  "name": "hostile-bad-package-json",\n  "version": "1.0.0",\n  "main": "ind',
      );
    });
    after(() => rmSync(truncatedDir, { recursive: true, force: true }));

    for (const [what, dir] of [
      ['a bare undefined (fixture)', () => fixture('hostile-bad-package-json')],
      ['cut off mid-file', () => truncatedDir],
    ] as const) {
      it(`${what}: exit 2 with a spec error, before any container`, async () => {
        const r = await cli(['check', dir(), '--json']);
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr, /error ESPEC(_CORRUPT)?:/);
        assert.match(r.stderr, /package\.json/);
        assert.match(r.stderr, /JSON/, 'the error says the JSON is broken');
        assert.match(r.stderr, /fix: /);
        assert.equal(r.stdout, '', 'no report');
        await assertCleanEnd(r);
        assert.equal(await containersCreated(r), 0, 'no container was created');
      });
    }
  });

  describe('a tarball whose entries point outside the package', () => {
    const id = randomBytes(6).toString('hex');
    const escaped = `/tmp/phonehome-escape-${id}`;
    const absolute = `/tmp/phonehome-abs-${id}`;
    let dir: string;
    let tgz: string;

    before(() => {
      dir = mkdtempSync(join(tmpdir(), 'hostile-tar-'));
      tgz = join(dir, 'hostile-tar-paths-1.0.0.tgz');
      writeFileSync(tgz, pathTricksTarball(id));
    });
    after(() => {
      rmSync(dir, { recursive: true, force: true });
      // Only if the test failed: do not leave the evidence in /tmp for the next run.
      rmSync(escaped, { force: true });
      rmSync(absolute, { force: true });
    });

    it('the generated archive really holds the unsafe entries', () => {
      const entries: [string, string, string | undefined][] = [];
      tar.t({
        file: tgz,
        sync: true,
        onReadEntry: (e) => entries.push([e.type, e.path, e.linkpath]),
      });
      assert.deepEqual(entries, [
        ['File', 'package/package.json', undefined],
        ['File', 'package/index.js', undefined],
        ['File', `package/../../../../../../tmp/phonehome-escape-${id}`, undefined],
        ['File', `/tmp/phonehome-abs-${id}`, undefined],
        ['SymbolicLink', 'package/link', '/etc/passwd'],
      ]);
    });

    it('is checked, and nothing lands outside the package', async () => {
      const r = await cli(['check', tgz, '--json', '--settle', '1']);
      assert.ok(!existsSync(escaped), `${escaped} was written on the host`);
      assert.ok(!existsSync(absolute), `${absolute} was written on the host`);
      await assertCleanEnd(r);
      // Not refused: node-tar, which unpacks it on the host, skips the `..` entry and writes the
      // absolute one (and the link's target) relative to the package folder; the rest is checked.
      const report = parseReport(r);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(report.verdict, 'pass');
      assert.equal(report.subject.name, 'hostile-tar-paths');
      assert.equal(report.subject.version, '1.0.0');
      assert.equal(phaseOf(report, 'install').status, 'skipped');
      assert.equal(phaseOf(report, 'import').status, 'completed');
    });
  });
});

/**
 * A package tarball with path tricks, written header by header so the unsafe entries are really
 * in it (tar.c would refuse or rewrite them): a `..` path out of the package, an absolute path,
 * and a symlink to a file outside.
 */
function pathTricksTarball(id: string): Buffer {
  const entry = (h: Partial<tar.HeaderData>, data = Buffer.alloc(0)): Buffer[] => {
    const block = Buffer.alloc(512);
    new tar.Header({
      mode: 0o644,
      uid: 0,
      gid: 0,
      mtime: new Date(0),
      size: data.length,
      type: 'File',
      ...h,
    }).encode(block, 0);
    return [block, data, Buffer.alloc((512 - (data.length % 512)) % 512)];
  };
  const packageJson = JSON.stringify(
    { name: 'hostile-tar-paths', version: '1.0.0', main: 'index.js', license: 'MIT' },
    null,
    2,
  );
  return gzipSync(
    Buffer.concat([
      ...entry({ path: 'package/package.json' }, Buffer.from(packageJson + '\n')),
      ...entry({ path: 'package/index.js' }, Buffer.from('module.exports = {};\n')),
      ...entry(
        { path: `package/../../../../../../tmp/phonehome-escape-${id}` },
        Buffer.from('escaped\n'),
      ),
      ...entry({ path: `/tmp/phonehome-abs-${id}` }, Buffer.from('absolute\n')),
      ...entry({
        path: 'package/link',
        type: 'SymbolicLink',
        linkpath: '/etc/passwd',
        mode: 0o777,
      }),
      Buffer.alloc(1024),
    ]),
  );
}
