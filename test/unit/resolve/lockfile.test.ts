/**
 * Finding and reading a lockfile before anything is fetched: which file a path means (npm's,
 * pnpm's, Yarn's, Bun's), Bun's binary one refused with a fix, and damaged or old npm lockfiles
 * explained.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PhonehomeError } from '../../../src/core/errors.js';
import { findLockfile, loadLockTree, readLockfile } from '../../../src/resolve/lockfile.js';

let root: string;
before(() => {
  root = mkdtempSync(join(tmpdir(), 'phonehome-lockfile-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

/** A folder under the temp root holding these files. */
function folder(name: string, files: Record<string, string>): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text);
  return dir;
}

/** Asserts an ELOCKFILE error whose message matches, and returns it for more checks. */
function lockfileError(fn: () => unknown, message: RegExp): PhonehomeError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof PhonehomeError, `expected a PhonehomeError, got ${String(caught)}`);
  assert.equal(caught.code, 'ELOCKFILE');
  assert.equal(caught.exitCode, 2);
  assert.match(caught.message, message);
  return caught;
}

const V3 = JSON.stringify({
  name: 'app',
  version: '1.0.0',
  lockfileVersion: 3,
  packages: { '': { name: 'app', version: '1.0.0' } },
});

describe('findLockfile', () => {
  it('in a project folder: npm-shrinkwrap.json before package-lock.json, before any other', () => {
    const both = folder('both', {
      'npm-shrinkwrap.json': V3,
      'package-lock.json': V3,
      'yarn.lock': '',
    });
    assert.equal(findLockfile(both), join(both, 'npm-shrinkwrap.json'));
    const npm = folder('npm-and-yarn', { 'package-lock.json': V3, 'yarn.lock': '' });
    assert.equal(findLockfile(npm), join(npm, 'package-lock.json'));
  });

  it('a file is taken as it is, whatever its name', () => {
    const dir = folder('named', { 'locked.json': V3 });
    assert.equal(findLockfile(join(dir, 'locked.json')), join(dir, 'locked.json'));
  });

  it('pnpm, Yarn and Bun lockfiles are found in a folder, after npm’s', () => {
    for (const file of ['pnpm-lock.yaml', 'yarn.lock', 'bun.lock']) {
      const dir = folder(`only-${file}`, { [file]: '' });
      assert.equal(findLockfile(dir), join(dir, file));
    }
    const both = folder('npm-and-pnpm', { 'package-lock.json': V3, 'pnpm-lock.yaml': '' });
    assert.equal(findLockfile(both), join(both, 'package-lock.json'));
  });

  it('Bun’s binary lockfile is refused, with how to write the text one', () => {
    const dir = folder('only-bun.lockb', { 'bun.lockb': '' });
    for (const path of [dir, join(dir, 'bun.lockb')]) {
      const e = lockfileError(() => findLockfile(path), /binary lockfile/);
      assert.match(e.fix, /bun install --save-text-lockfile/);
    }
  });

  it('nothing there, or a folder with no lockfile', () => {
    lockfileError(() => findLockfile(join(root, 'absent')), /^Nothing at .*absent\.$/);
    lockfileError(
      () => findLockfile(folder('empty', { 'package.json': '{}' })),
      /has no lockfile \(npm-shrinkwrap\.json, package-lock\.json, pnpm-lock\.yaml, yarn\.lock, bun\.lock\)/,
    );
  });
});

describe('readLockfile', () => {
  const file = (name: string, text: string) =>
    join(folder(name, { 'package-lock.json': text }), 'package-lock.json');

  it('reads a lockfileVersion 2 or 3 file', () => {
    assert.equal(readLockfile(file('v3', V3)).lockfileVersion, 3);
    const v2 = JSON.stringify({ lockfileVersion: 2, packages: { '': {} }, dependencies: {} });
    assert.equal(readLockfile(file('v2', v2)).lockfileVersion, 2);
  });

  it('malformed JSON: the line it breaks on, and how to regenerate it', () => {
    const broken = file('broken', '{\n  "lockfileVersion": 3,\n  "packages": {,\n  }\n}\n');
    const e = lockfileError(() => readLockfile(broken), /is not valid JSON \(line 3\)/);
    assert.match(e.fix, /npm install --package-lock-only/);
    // Cut short ("Unexpected end of JSON input", no position): the last line, where it ends.
    lockfileError(
      () => readLockfile(file('cut', '{\n  "lockfileVersion": 3,\n  "packages": ')),
      /is not valid JSON \(line 3\)/,
    );
  });

  it('JSON that is not a lockfile object', () => {
    for (const [name, text] of [
      ['array', '[]'],
      ['null', 'null'],
      ['string', '"package-lock"'],
    ] as const)
      lockfileError(() => readLockfile(file(`not-${name}`, text)), /is not a lockfile\.$/);
  });

  it('an npm 6 lockfile (version 1, or no version and no packages) says to regenerate it', () => {
    for (const [name, lock] of [
      ['v1', { lockfileVersion: 1, dependencies: {} }],
      ['unversioned', { dependencies: {} }],
    ] as const) {
      const e = lockfileError(
        () => readLockfile(file(name, JSON.stringify(lock))),
        /lockfileVersion 1 file \(npm 6\)/,
      );
      assert.match(e.fix, /npm 7 or later/);
    }
  });

  it('a packages section without the root entry', () => {
    for (const [name, lock] of [
      ['no-root', { lockfileVersion: 3, packages: { 'node_modules/a': { version: '1.0.0' } } }],
      ['packages-not-object', { lockfileVersion: 3, packages: 'yes' }],
    ] as const)
      lockfileError(
        () => readLockfile(file(name, JSON.stringify(lock))),
        /has no "packages" section with a root entry/,
      );
  });
});

describe('loadLockTree: where the lockfile sends phonehome, before anything is fetched', () => {
  it('the whole tree is checked, whatever --workspace keeps to', async () => {
    const dir = folder('mono-sources', {
      'package.json': JSON.stringify({ name: 'm', version: '1.0.0', workspaces: ['packages/*'] }),
      'package-lock.json': JSON.stringify({
        name: 'm',
        version: '1.0.0',
        lockfileVersion: 3,
        packages: {
          '': { name: 'm', version: '1.0.0', workspaces: ['packages/*'] },
          'node_modules/@m/a': { resolved: 'packages/a', link: true },
          'node_modules/@m/b': { resolved: 'packages/b', link: true },
          'packages/a': { name: '@m/a', version: '1.0.0', dependencies: { x: '1.0.0' } },
          'packages/b': { name: '@m/b', version: '1.0.0', dependencies: { evil: '1.0.0' } },
          'node_modules/x': {
            version: '1.0.0',
            resolved: 'https://registry.npmjs.org/x/-/x-1.0.0.tgz',
            integrity: 'sha512-aaaa',
          },
          'node_modules/evil': {
            version: '1.0.0',
            resolved: 'http://169.254.169.254/latest/evil-1.0.0.tgz',
            integrity: 'sha512-bbbb',
          },
        },
      }),
    });
    for (const w of ['a', 'b']) {
      mkdirSync(join(dir, 'packages', w), { recursive: true });
      writeFileSync(
        join(dir, 'packages', w, 'package.json'),
        JSON.stringify({ name: `@m/${w}`, version: '1.0.0' }),
      );
    }
    await assert.rejects(
      loadLockTree(dir, { workspace: '@m/a', allowRemoteSources: true }),
      (e: unknown) =>
        e instanceof PhonehomeError &&
        e.code === 'ELOCKFILE_SOURCE' &&
        /node_modules\/evil .*an internal address/.test(e.message),
    );
  });

  it('a dependency on a dist-tag takes the locked version, as npm ci does; edges say what asks for each package', async () => {
    const dir = folder('tagged', {
      'package.json': JSON.stringify({
        name: 'app',
        version: '1.0.0',
        dependencies: { x: 'latest', y: '^2.0.0' },
      }),
      'package-lock.json': JSON.stringify({
        name: 'app',
        version: '1.0.0',
        lockfileVersion: 3,
        packages: {
          '': { name: 'app', version: '1.0.0', dependencies: { x: 'latest', y: '^2.0.0' } },
          'node_modules/x': {
            version: '1.4.0',
            resolved: 'https://registry.npmjs.org/x/-/x-1.4.0.tgz',
            integrity: 'sha512-aaaa',
            dependencies: { y: '~2.1.0' },
          },
          'node_modules/y': {
            version: '2.1.3',
            resolved: 'https://registry.npmjs.org/y/-/y-2.1.3.tgz',
            integrity: 'sha512-bbbb',
          },
        },
      }),
    });
    await using tree = await loadLockTree(dir);
    const wanted = Object.fromEntries(
      tree.entries.map((e) => [
        e.name,
        (e.wantedBy ?? []).map((w) => `${w.spec}${w.direct ? ' (direct)' : ''}`).sort(),
      ]),
    );
    assert.deepEqual(wanted, { x: ['latest (direct)'], y: ['^2.0.0 (direct)', '~2.1.0'] });
  });

  it('a dist-tag locked to a file tarball is not taken on faith: npm ci refuses it too', async () => {
    const dir = folder('tagged-file', {
      'package.json': JSON.stringify({
        name: 'app',
        version: '1.0.0',
        dependencies: { 'shared-lib': 'latest' },
      }),
      'package-lock.json': JSON.stringify({
        name: 'app',
        version: '1.0.0',
        lockfileVersion: 3,
        packages: {
          '': { name: 'app', version: '1.0.0', dependencies: { 'shared-lib': 'latest' } },
          'node_modules/shared-lib': {
            version: '1.0.0',
            resolved: 'file:vendor/shared-lib-1.0.0.tgz',
            integrity: 'sha512-cccc',
          },
        },
      }),
    });
    await assert.rejects(
      loadLockTree(dir),
      (e: unknown) =>
        e instanceof PhonehomeError && e.code === 'ELOCKFILE' && /disagree/.test(e.message),
    );
  });
});
