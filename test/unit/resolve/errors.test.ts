import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { specError } from '../../../src/resolve/errors.js';

describe('registry and tarball failures as typed errors', () => {
  it("a version for another platform is the spec's problem (exit 2), not the environment's", () => {
    const e = specError(
      'mac-only@2.0.1',
      Object.assign(new Error('Unsupported platform for mac-only@2.0.1'), { code: 'EBADPLATFORM' }),
    );
    assert.equal(e.code, 'ESPEC');
    assert.equal(e.exitCode, 2);
    assert.match(e.message, /cannot be installed on the sandbox's platform/);
    // What the registry or network does stays an environment error.
    assert.equal(specError('x', new Error('socket hang up')).exitCode, 3);
  });
});
