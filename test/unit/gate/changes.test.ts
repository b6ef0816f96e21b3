import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { entryLine, lockChanges } from '../../../src/gate/gate.js';
import { packageRoot } from '../../../src/paths.js';
import type { LockEntry } from '../../../src/resolve/lockfile.js';

const e = (name: string, version: string, path = ['app', name]): LockEntry => ({
  name,
  version,
  integrity: `sha512-${name}${version}`,
  resolved: null,
  location: `node_modules/${name}`,
  path,
  dev: false,
  optional: false,
  installable: true,
});

describe('lockfile changes', () => {
  it('added, upgraded, downgraded and removed, by name; unchanged packages are not listed', () => {
    const base = [e('a', '1.0.0'), e('b', '2.0.0'), e('c', '3.1.0'), e('gone', '1.0.0')];
    const head = [
      e('a', '1.0.0'),
      e('b', '2.1.0'),
      e('c', '3.0.0'),
      e('new', '0.1.0', ['app', 'a', 'new']),
    ];
    const d = lockChanges(base, head);
    assert.deepEqual(
      d.changed.map((c) => [c.name, c.kind, c.from, c.to]),
      [
        ['b', 'upgraded', '2.0.0', '2.1.0'],
        ['c', 'downgraded', '3.1.0', '3.0.0'],
        ['new', 'added', undefined, '0.1.0'],
      ],
    );
    assert.deepEqual(d.changed.find((c) => c.name === 'new')?.path, ['app', 'a', 'new']);
    // b@2.0.0 and c@3.1.0 were replaced by the upgrade and the downgrade, not removed.
    assert.deepEqual(d.removed, [{ name: 'gone', version: '1.0.0' }]);
  });

  it('a second copy of a name at a new version is compared with the closest lower version', () => {
    const d = lockChanges(
      [e('x', '1.0.0'), e('x', '2.0.0')],
      [e('x', '1.0.0'), e('x', '2.0.0'), e('x', '2.3.0')],
    );
    assert.deepEqual(
      d.changed.map((c) => [c.kind, c.from, c.to]),
      [['upgraded', '2.0.0', '2.3.0']],
    );
    assert.deepEqual(lockChanges([e('x', '1.0.0')], [e('x', '1.0.0')]), {
      changed: [],
      removed: [],
      retargeted: [],
    });
  });

  it('the same name@version locked to another tarball is retargeted', () => {
    const swapped = { ...e('wrappy', '1.0.2'), integrity: 'sha512-leftpadcontent' };
    const d = lockChanges([e('wrappy', '1.0.2')], [swapped]);
    assert.deepEqual(d.changed, []);
    assert.deepEqual(
      d.retargeted.map((t) => [t.name, t.version, t.before, t.after]),
      [['wrappy', '1.0.2', 'sha512-wrappy1.0.2', 'sha512-leftpadcontent']],
    );
  });

  it('the same name@version with its integrity dropped and another source, or twice in the head with two contents, is retargeted', () => {
    const pinned = e('is-number', '7.0.0');
    const dropped: LockEntry = {
      ...pinned,
      integrity: null,
      resolved: 'https://evil.example/is-number-7.0.0.tgz',
    };
    const d = lockChanges([pinned], [dropped]);
    assert.deepEqual(d.changed, []);
    assert.deepEqual(
      d.retargeted.map((t) => [t.name, t.version, t.before, t.after]),
      [
        [
          'is-number',
          '7.0.0',
          pinned.integrity,
          '(no integrity) https://evil.example/is-number-7.0.0.tgz',
        ],
      ],
    );
    // A new package twice: a genuine copy and another tarball under another package.
    const other: LockEntry = {
      ...e('left-pad', '1.3.0'),
      integrity: 'sha512-other',
      location: 'node_modules/wrapper/node_modules/left-pad',
    };
    const twice = lockChanges([], [e('left-pad', '1.3.0'), other]);
    assert.deepEqual(
      twice.retargeted.map((t) => [t.name, t.after]),
      [['left-pad', 'sha512-other']],
    );
    // A bundled copy (no integrity, no source of its own) is its bundler's content.
    const bundled: LockEntry = { ...e('left-pad', '1.3.0'), integrity: null, resolved: null };
    assert.deepEqual(lockChanges([], [e('left-pad', '1.3.0'), bundled]).retargeted, []);
  });

  it('finds the line of a package entry in a lockfile', () => {
    const text = [
      '{',
      '  "packages": {',
      '    "node_modules/a/node_modules/x": {',
      '      "version": "1.0.0"',
      '    },',
      '    "node_modules/x": {',
      '      "version": "2.0.0",',
      '    }',
      '  }',
      '}',
    ].join('\n');
    assert.equal(entryLine(text, 'x', '2.0.0'), 6);
    assert.equal(entryLine(text, 'x', '1.0.0'), 3);
    assert.equal(entryLine(text, 'x', '9.0.0'), undefined);
  });

  it('finds the line of a package entry in pnpm, Yarn and Bun lockfiles', () => {
    for (const [manager, file] of [
      ['pnpm6', 'pnpm-lock.yaml'],
      ['pnpm9', 'pnpm-lock.yaml'],
      ['yarn-classic', 'yarn.lock'],
      ['yarn-berry', 'yarn.lock'],
      ['bun', 'bun.lock'],
    ]) {
      const text = readFileSync(
        join(packageRoot(), 'fixtures', 'lockfiles', 'demo', manager as string, file as string),
        'utf8',
      );
      for (const [name, version] of [
        ['debug', '4.4.3'],
        ['ms', '2.1.3'],
        ['@esbuild/linux-x64', '0.24.2'],
      ] as const) {
        const line = entryLine(text, name, version);
        assert.ok(line, `${manager}: ${name}@${version}`);
        assert.ok(text.split('\n')[line - 1]?.includes(name), `${manager}: line ${line}`);
      }
      assert.equal(entryLine(text, 'debug', '9.9.9'), undefined, manager);
    }
  });
});
