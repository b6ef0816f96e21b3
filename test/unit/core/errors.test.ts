import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { errorCatalogue, ExitCode, formatError, PhonehomeError } from '../../../src/core/errors.js';
import { dockerError } from '../../../src/sandbox/docker/errors.js';

describe('errors', () => {
  it('every catalogued code has a summary, a fix and an exit code', () => {
    for (const [code, e] of Object.entries(errorCatalogue)) {
      assert.ok(e.summary.length > 10, code);
      assert.ok(e.fix.length > 10, code);
      assert.ok(Object.values(ExitCode).includes(e.exit), code);
    }
  });

  it('a missing or refused daemon is an environment error (exit 3) that says how to fix it', () => {
    for (const code of ['ENOENT', 'ECONNREFUSED']) {
      const e = dockerError(Object.assign(new Error('connect'), { code }), 'pinging');
      assert.equal(e.code, 'EDOCKER_UNREACHABLE');
      assert.equal(e.exitCode, 3);
      assert.match(formatError(e), /fix: .*dockerd/);
    }
    assert.equal(
      dockerError(Object.assign(new Error('x'), { code: 'EACCES' }), 'x').code,
      'EDOCKER_PERMISSION',
    );
    assert.equal(
      dockerError(
        { statusCode: 500, json: { message: 'write /var/lib/docker/x: no space left on device' } },
        'x',
      ).code,
      'EDISK_FULL',
    );
  });

  it('keeps its own errors as they are', () => {
    const e = new PhonehomeError('EIMAGE_MISSING');
    assert.equal(dockerError(e, 'x'), e);
  });
});
