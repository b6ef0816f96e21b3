import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatId, parseId } from '../../../src/core/package-id.js';

describe('package ids', () => {
  it('formats name@version, scoped names included', () => {
    assert.equal(formatId('left-pad', '1.3.0'), 'left-pad@1.3.0');
    assert.equal(formatId('@scope/name', '1.2.3'), '@scope/name@1.2.3');
  });

  it('splits at the last @, never at a scope’s own', () => {
    assert.deepEqual(parseId('left-pad@1.3.0'), { name: 'left-pad', version: '1.3.0' });
    assert.deepEqual(parseId('@scope/name@1.2.3'), { name: '@scope/name', version: '1.2.3' });
    assert.deepEqual(parseId('a@1.0.0-beta.1+build.5'), {
      name: 'a',
      version: '1.0.0-beta.1+build.5',
    });
  });

  it('has no version without a separator past the first character', () => {
    assert.deepEqual(parseId('left-pad'), { name: 'left-pad', version: undefined });
    assert.deepEqual(parseId('@scope/name'), { name: '@scope/name', version: undefined });
    assert.deepEqual(parseId(''), { name: '', version: undefined });
  });

  it('keeps what follows the separator as it is (a range in a policy scope, an empty version)', () => {
    assert.deepEqual(parseId('@scope/name@^1 || >=2.1'), {
      name: '@scope/name',
      version: '^1 || >=2.1',
    });
    assert.deepEqual(parseId('name@'), { name: 'name', version: '' });
  });

  it('round-trips', () => {
    for (const [name, version] of [
      ['x', '0.0.1'],
      ['@a/b', '10.20.30'],
      ['@a/b.c-d_e', '1.0.0-rc.1'],
    ] as const)
      assert.deepEqual(parseId(formatId(name, version)), { name, version });
  });
});
