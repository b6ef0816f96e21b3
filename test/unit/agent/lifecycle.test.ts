/**
 * The package's own variables of an install script (packageEnv): npm's package-envs flattening,
 * with bounds a hostile package.json cannot get past.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { packageEnv } from '../../../src/agent/lifecycle.js';

const TREE = {
  resolved: 'https://registry.npmjs.org/a/-/a-1.0.0.tgz',
  integrity: null,
  optional: true,
  dev: false,
  peer: false,
  devOptional: true,
};

describe('packageEnv', () => {
  it("flattens as npm's package-envs does, after arborist's rebuild variables", () => {
    const env = packageEnv(
      {
        name: 'a',
        version: '1.0.0',
        config: { port: 8080, off: false, none: null, list: ['x', { y: 1 }] },
        engines: { node: '>=18' },
        bin: { a: 'cli.js' },
      },
      TREE,
      '/work/node_modules/a',
    );
    assert.deepEqual(env, {
      npm_package_resolved: 'https://registry.npmjs.org/a/-/a-1.0.0.tgz',
      npm_package_integrity: 'null',
      npm_package_json: '/work/node_modules/a/package.json',
      npm_package_optional: '1',
      npm_package_dev: '',
      npm_package_peer: '',
      // devOptional only when neither dev nor optional alone.
      npm_package_dev_optional: '',
      npm_package_name: 'a',
      npm_package_version: '1.0.0',
      npm_package_config_port: '8080',
      npm_package_config_off: '',
      npm_package_config_none: '',
      npm_package_config_list_0: 'x',
      npm_package_config_list_1_y: '1',
      npm_package_engines_node: '>=18',
      npm_package_bin_a: 'cli.js',
    });
  });

  it('stops at a depth and a size: a config nested thousands deep or megabytes wide', () => {
    let deep: unknown = 'x';
    for (let i = 0; i < 6000; i++) deep = { k: deep };
    let arrays: unknown = 'x';
    for (let i = 0; i < 6000; i++) arrays = [arrays];
    const env = packageEnv(
      { name: 'a', version: '1.0.0', config: { deep, arrays } },
      TREE,
      '/work/node_modules/a',
    );
    assert.equal(env.npm_package_name, 'a');
    assert.ok(
      Object.keys(env).every((k) => k.length < 200),
      'no key past the depth bound',
    );
    const wide = Object.fromEntries(
      Array.from({ length: 50_000 }, (_, i) => [`k${i}`, 'v'.repeat(40)]),
    );
    const big = packageEnv({ name: 'a', version: '1.0.0', config: wide }, TREE, '/w');
    const bytes = Object.entries(big).reduce((n, [k, v]) => n + k.length + v.length + 2, 0);
    assert.ok(bytes <= 64 * 1024 + 1024, `${bytes} bytes`);
    assert.equal(big.npm_package_version, '1.0.0', 'name and version come first');
  });
});
