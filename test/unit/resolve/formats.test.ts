/**
 * pnpm's, Yarn's and Bun's lockfiles read into one graph and laid out as an npm lockfile, on real
 * lockfiles written by the real package managers (fixtures/lockfiles, made by
 * scripts/make-lockfiles.sh: a small project with a native-binary package and an optional
 * platform package, a medium one of express and mocha, a two-workspace monorepo): each gives the
 * same packages as npm's lockfile of the same project, with the same dev and optional flags, and
 * Node's resolution from each laid-out location reaches the package the lockfile resolved.
 * Damaged, conflicted, unknown and out-of-step lockfiles are errors with the file, a line where
 * there is one, and a fix.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { PhonehomeError } from '../../../src/core/errors.js';
import { packageRoot } from '../../../src/paths.js';
import { readGraph, type LockGraph } from '../../../src/resolve/formats.js';
import { npmLockFrom, tarballFor, type NpmLock } from '../../../src/resolve/npm-lock.js';

const FIXTURES = join(packageRoot(), 'fixtures', 'lockfiles');
const FILES = {
  pnpm6: 'pnpm-lock.yaml',
  pnpm9: 'pnpm-lock.yaml',
  'yarn-classic': 'yarn.lock',
  'yarn-berry': 'yarn.lock',
  bun: 'bun.lock',
} as const;
const work = mkdtempSync(join(tmpdir(), 'phonehome-formats-'));
after(() => rmSync(work, { recursive: true, force: true }));

const manifest = (dir: string) =>
  JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Record<string, unknown>;

/** name@version with flags over every location: dev or optional only when every copy is. */
function packagesOf(lock: { packages: Record<string, Record<string, unknown>> }): string[] {
  const flags = new Map<string, { dev: boolean; optional: boolean }>();
  for (const [location, e] of Object.entries(lock.packages)) {
    if (!location.includes('node_modules/') || e.link) continue;
    const name =
      typeof e.name === 'string'
        ? e.name
        : location.slice(location.lastIndexOf('node_modules/') + 13);
    const id = `${name}@${String(e.version)}`;
    const prev = flags.get(id) ?? { dev: true, optional: true };
    flags.set(id, {
      dev: prev.dev && e.dev === true,
      optional: prev.optional && e.optional === true,
    });
  }
  return [...flags]
    .map(([id, f]) => `${id}${f.dev ? ' dev' : ''}${f.optional ? ' optional' : ''}`)
    .sort();
}

/** Node's resolution over lock locations: from `from`, the nearest `node_modules/<name>` up. */
function resolveIn(lock: NpmLock, from: string, name: string): string | undefined {
  let level = from;
  for (;;) {
    const loc = level ? `${level}/node_modules/${name}` : `node_modules/${name}`;
    if (lock.packages[loc]) return loc;
    if (!level) return undefined;
    const i = level.lastIndexOf('/node_modules/');
    level = i < 0 ? '' : level.slice(0, i);
  }
}

function convert(
  project: string,
  manager: keyof typeof FILES,
): { graph: LockGraph; lock: NpmLock } {
  const dir = join(FIXTURES, project, manager);
  const pkg = manifest(dir);
  const graph = readGraph(join(dir, FILES[manager]), pkg);
  return { graph, lock: npmLockFrom(graph, pkg, {}).lock };
}

function lockError(fn: () => unknown, message: RegExp): PhonehomeError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof PhonehomeError, String(caught));
  assert.equal(caught.code, 'ELOCKFILE');
  assert.match(caught.message, message);
  assert.ok(caught.fix, 'with a fix');
  return caught;
}

describe('lockfiles of pnpm, Yarn and Bun', () => {
  for (const project of ['demo', 'medium', 'monorepo'])
    for (const manager of Object.keys(FILES) as (keyof typeof FILES)[])
      it(`${project}, locked by ${manager}: the packages npm's lockfile has, flags included, each dependency reaching what was locked`, () => {
        const npm = JSON.parse(
          readFileSync(join(FIXTURES, project, 'npm', 'package-lock.json'), 'utf8'),
        ) as NpmLock;
        const { graph, lock } = convert(project, manager);
        assert.deepEqual(packagesOf(lock), packagesOf(npm));
        // Every dependency of every placed package resolves, from where it was placed, to a
        // package of the version the lockfile resolved it to.
        const versionOf = (key: string) => graph.nodes.get(key)?.version;
        let checked = 0;
        for (const [location, e] of Object.entries(lock.packages)) {
          if (!location.includes('node_modules/') || e.link) continue;
          const n = [...graph.nodes.values()].find(
            (x) =>
              x.version === e.version &&
              x.name === (e.name ?? location.slice(location.lastIndexOf('node_modules/') + 13)),
          );
          for (const [dep, key] of n?.deps ?? []) {
            const at = resolveIn(lock, location, dep);
            assert.ok(at, `${location} needs ${dep}`);
            assert.equal(lock.packages[at]?.version, versionOf(key), `${location} -> ${dep}`);
            checked++;
          }
        }
        if (project !== 'monorepo') assert.ok(checked > 0);
        for (const w of graph.workspaces)
          for (const [dep, key] of w.prod) {
            const at = resolveIn(lock, w.path, dep);
            assert.equal(lock.packages[at ?? '']?.version, versionOf(key), `${w.path} -> ${dep}`);
          }
      });

  it('the monorepo’s workspaces, with their own names, from every format', () => {
    for (const manager of Object.keys(FILES) as (keyof typeof FILES)[]) {
      const { graph } = convert('monorepo', manager);
      assert.deepEqual(
        graph.workspaces.map((w) => [w.path, w.name]).sort(),
        [
          ['packages/a', '@mono/a'],
          ['packages/b', '@mono/b'],
        ],
        manager,
      );
    }
  });

  it('tarballs come from the configured registry, whatever registry host the lockfile names', () => {
    const config = {
      registry: 'https://mirror.example/npm/',
      '@acme:registry': 'https://acme.example/',
    };
    const n = (name: string, resolved?: string) => ({
      key: name,
      name,
      version: '1.0.0',
      deps: new Map(),
      optional: new Set<string>(),
      ...(resolved ? { resolved } : {}),
    });
    assert.equal(tarballFor(n('ms'), config), 'https://mirror.example/npm/ms/-/ms-1.0.0.tgz');
    assert.equal(
      tarballFor(
        n(
          'ms',
          'https://registry.yarnpkg.com/ms/-/ms-1.0.0.tgz#0123456789abcdef0123456789abcdef01234567',
        ),
        config,
      ),
      'https://mirror.example/npm/ms/-/ms-1.0.0.tgz',
    );
    assert.equal(tarballFor(n('@acme/x'), config), 'https://acme.example/@acme/x/-/x-1.0.0.tgz');
    assert.equal(
      tarballFor(n('x', 'https://cdn.example/x.tgz'), config),
      'https://cdn.example/x.tgz',
      'a tarball URL stays where it is (and is refused unless allowed, as for npm)',
    );
  });

  it('Yarn Berry keeps no tarball integrity: its packages are marked to take the registry’s', () => {
    const dir = join(FIXTURES, 'demo', 'yarn-berry');
    const pkg = manifest(dir);
    const { registryIntegrity, lock } = npmLockFrom(
      readGraph(join(dir, 'yarn.lock'), pkg),
      pkg,
      {},
    );
    assert.ok(registryIntegrity.includes('node_modules/debug'));
    assert.equal(lock.packages['node_modules/debug']?.integrity, undefined);
  });

  describe('damaged lockfiles', () => {
    const copy = (project: string, manager: keyof typeof FILES, edit: (text: string) => string) => {
      const dir = join(work, `${project}-${manager}-${Math.random().toString(36).slice(2)}`);
      cpSync(join(FIXTURES, project, manager), dir, { recursive: true });
      const file = join(dir, FILES[manager]);
      writeFileSync(file, edit(readFileSync(file, 'utf8')));
      return { file, pkg: manifest(dir) };
    };

    it('merge conflict markers: the line, and how to regenerate', () => {
      for (const manager of Object.keys(FILES) as (keyof typeof FILES)[]) {
        const { file, pkg } = copy('demo', manager, (t) => {
          const lines = t.split('\n');
          lines.splice(5, 0, '<<<<<<< HEAD', 'x', '=======', 'y', '>>>>>>> topic');
          return lines.join('\n');
        });
        const e = lockError(() => readGraph(file, pkg), /:6: has merge conflict markers/);
        assert.match(e.fix ?? '', /(pnpm|yarn|bun) install/);
      }
    });

    it('a lockfile version phonehome does not know', () => {
      const pnpm = copy('demo', 'pnpm9', (t) =>
        t.replace("lockfileVersion: '9.0'", "lockfileVersion: '11.0'"),
      );
      lockError(
        () => readGraph(pnpm.file, pnpm.pkg),
        /is lockfile version 11\.0; phonehome reads pnpm lockfile versions 6 and 9/,
      );
      const bun = copy('demo', 'bun', (t) =>
        t.replace('"lockfileVersion": 2', '"lockfileVersion": 7'),
      );
      lockError(() => readGraph(bun.file, bun.pkg), /bun lockfile version 7/);
      const berry = copy('demo', 'yarn-berry', (t) => t.replace('version: 10', 'version: 99'));
      lockError(() => readGraph(berry.file, berry.pkg), /format 99/);
    });

    it('cut short: what is missing', () => {
      // Cut at a line: valid YAML that lacks entries.
      const pnpm = copy('demo', 'pnpm9', (t) =>
        t.slice(0, t.lastIndexOf('\n', t.indexOf('snapshots:') + 200)),
      );
      lockError(() => readGraph(pnpm.file, pnpm.pkg), /names .* but has no entry for it/);
      // Cut in the middle of a line: not YAML any more.
      const torn = copy('demo', 'pnpm9', (t) => t.slice(0, t.indexOf('snapshots:') + 200));
      lockError(() => readGraph(torn.file, torn.pkg), /is not valid YAML/);
      const bun = copy('demo', 'bun', (t) => t.slice(0, Math.floor(t.length / 2)));
      lockError(() => readGraph(bun.file, bun.pkg), /is not valid JSON/);
    });

    it('names that would be paths outside the project are refused before anything is written', () => {
      // A package entry may name its package (pnpm writes `name:` for aliases and tarballs).
      const pnpm = copy('demo', 'pnpm9', (t) =>
        t.replace(
          /\n {2}is-number@7\.0\.0:\n/,
          "\n  is-number@7.0.0:\n    name: '../../../evil'\n",
        ),
      );
      const npmLock = (file: string, pkg: Record<string, unknown>) =>
        npmLockFrom(readGraph(file, pkg), pkg, {}, file);
      lockError(() => npmLock(pnpm.file, pnpm.pkg), /names a package "\.\.\/\.\.\/\.\.\/evil"/);
      const bun = copy('monorepo', 'bun', (t) => t.replace('"packages/a": {', '"../outside": {'));
      lockError(() => npmLock(bun.file, bun.pkg), /names a workspace folder "\.\.\/outside"/);
    });

    it('two entries of one version that differ in their dependencies are two packages, both laid out', () => {
      const yarn = copy('demo', 'yarn-classic', (t) =>
        t.replace(
          /\nis-number@\^7\.0\.0:\n([\s\S]*?)\n\n/,
          (m, body: string) => `${m}is-number@7.0.0:\n${body}\n  dependencies:\n    ms "2.1.2"\n\n`,
        ),
      );
      const pkg = {
        ...yarn.pkg,
        dependencies: { ...(yarn.pkg.dependencies as object), 'is-number': '7.0.0' },
      };
      // The root asks for is-number twice over (^7.0.0 via debug's tree is not needed): the copy
      // with an extra dependency must still bring that dependency in.
      const { lock } = npmLockFrom(readGraph(yarn.file, pkg), pkg, {});
      assert.ok(
        Object.entries(lock.packages).some(
          ([l, e]) =>
            l.endsWith('node_modules/is-number') &&
            (e.dependencies as Record<string, string> | undefined)?.ms === '2.1.2',
        ),
      );
    });

    it('a workspace named like a registry package stands for it only when its version is asked for', () => {
      const dir = join(work, `shadow-${Math.random().toString(36).slice(2)}`);
      cpSync(join(FIXTURES, 'demo', 'yarn-classic'), dir, { recursive: true });
      const pkg = { ...manifest(dir), workspaces: ['packages/*'] };
      writeFileSync(join(dir, 'package.json'), JSON.stringify(pkg));
      cpSync(
        join(FIXTURES, 'monorepo', 'project', 'packages', 'a'),
        join(dir, 'packages', 'is-number'),
        {
          recursive: true,
        },
      );
      writeFileSync(
        join(dir, 'packages', 'is-number', 'package.json'),
        JSON.stringify({ name: 'is-number', version: '0.0.1' }),
      );
      const graph = readGraph(join(dir, 'yarn.lock'), pkg);
      assert.equal(graph.nodes.get(graph.root.prod.get('is-number') ?? '')?.version, '7.0.0');
    });

    it('local folders and links are refused, not skipped (their dependencies would go unchecked)', () => {
      const yarn = copy('demo', 'yarn-classic', (t) =>
        t.concat(
          '\n"local@file:./vendor/local":\n  version "1.0.0"\n  dependencies:\n    ms "2.1.2"\n',
        ),
      );
      const pkg = {
        ...yarn.pkg,
        dependencies: { ...(yarn.pkg.dependencies as object), local: 'file:./vendor/local' },
      };
      lockError(() => readGraph(yarn.file, pkg), /locks local to a local folder/);
      const pnpm = copy('demo', 'pnpm9', (t) =>
        t.replace(
          /\n {6}is-number:\n {8}specifier: \^7\.0\.0\n {8}version: 7\.0\.0/,
          '\n      is-number:\n        specifier: ^7.0.0\n        version: link:../elsewhere',
        ),
      );
      lockError(
        () => readGraph(pnpm.file, pnpm.pkg),
        /links is-number to the folder \.\.\/elsewhere/,
      );
    });

    it('a dependency the lockfile lacks is an error, not a package Yarn or Bun would resolve unseen', () => {
      const yarn = copy('demo', 'yarn-classic', (t) =>
        t.replace(/\nms@\^2\.1\.3:\n(?: .*\n?)*/, '\n'),
      );
      lockError(
        () => readGraph(yarn.file, yarn.pkg),
        /has no entry for ms@\^2\.1\.3, which debug depends on/,
      );
      const bun = copy('demo', 'bun', (t) => t.replace(/\n\s*"debug\/ms": \[.*\],\n/, '\n'));
      lockError(
        () => readGraph(bun.file, bun.pkg),
        /has no entry for ms@\^2\.1\.3, which debug depends on/,
      );
    });

    it('a YAML alias bomb in a Berry lockfile is refused', () => {
      const bomb = [
        '__metadata:',
        '  version: 8',
        'a: &a ["x","x","x","x","x","x","x","x","x","x"]',
        'b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]',
        'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]',
        'd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]',
        'e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]',
        '"x@npm:1.0.0":',
        '  version: *e',
        '',
      ].join('\n');
      const berry = copy('demo', 'yarn-berry', () => bomb);
      lockError(() => readGraph(berry.file, berry.pkg), /cannot be read|not text/);
    });

    it('out of step with package.json: which dependency, and how to bring it up to date', () => {
      for (const manager of Object.keys(FILES) as (keyof typeof FILES)[]) {
        const { file, pkg } = copy('demo', manager, (t) => t);
        const deps = { ...(pkg.dependencies as Record<string, string>), 'left-pad': '^1.3.0' };
        lockError(
          () => readGraph(file, { ...pkg, dependencies: deps }),
          /and its package\.json disagree: left-pad@\^1\.3\.0 is not in the lockfile/,
        );
      }
    });
  });
});
