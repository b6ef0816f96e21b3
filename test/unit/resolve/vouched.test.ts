/**
 * Which packages a registry vouches for: only a tarball fetched from a configured registry at the
 * path of that very name and version, with an integrity.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { registryOrigins } from '../../../src/resolve/npmrc.js';
import { vouchedFor } from '../../../src/resolve/stage.js';

const registries = registryOrigins({
  registry: 'https://registry.npmjs.org/',
  '@corp:registry': 'https://npm.corp.example/api/npm/',
});
const node = (
  packageName: string,
  version: string,
  resolved: string | null,
  integrity: string | null = 'sha512-x',
) => ({
  packageName,
  version,
  resolved,
  integrity,
  inBundle: false,
});

describe('vouchedFor', () => {
  it('a registry tarball of that name and version', () => {
    assert.ok(
      vouchedFor(
        node('bcrypt', '5.1.1', 'https://registry.npmjs.org/bcrypt/-/bcrypt-5.1.1.tgz'),
        registries,
      ),
    );
    assert.ok(
      vouchedFor(
        node('@corp/x', '1.0.0', 'https://npm.corp.example/api/npm/@corp/x/-/x-1.0.0.tgz'),
        registries,
      ),
    );
    assert.ok(
      vouchedFor(
        node('@corp/x', '1.0.0', 'https://npm.corp.example/api/npm/@corp%2fx/-/x-1.0.0.tgz'),
        registries,
      ),
    );
  });

  it('not a path that only ends like it, another host, a query, another version, no integrity, a file', () => {
    for (const [resolved, integrity] of [
      ['https://registry.npmjs.org/@evil/bcrypt/-/bcrypt-5.1.1.tgz', 'sha512-x'],
      ['https://evil.example/bcrypt/-/bcrypt-5.1.1.tgz', 'sha512-x'],
      ['https://registry.npmjs.org/bcrypt/-/bcrypt-5.1.1.tgz?x=1', 'sha512-x'],
      ['https://registry.npmjs.org/bcrypt/-/bcrypt-5.1.2.tgz', 'sha512-x'],
      ['https://registry.npmjs.org/bcrypt/-/bcrypt-5.1.1.tgz', null],
      ['file:/tmp/bcrypt-5.1.1.tgz', 'sha512-x'],
      ['https://registry.npmjs.org/bcrypt/-/bcrypt-5.1.1%.tgz', 'sha512-x'],
    ] as const)
      assert.equal(
        vouchedFor(node('bcrypt', '5.1.1', resolved, integrity), registries),
        false,
        resolved,
      );
  });
});
