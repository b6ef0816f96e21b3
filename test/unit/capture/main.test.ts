import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CAPTURE_PORTS } from '../../../src/capture/capture.js';

/** dist/src/capture/main.js, next to this compiled test's dist/test/unit/capture/. */
const mainJs = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  '..',
  'src',
  'capture',
  'main.js',
);

describe('capture program entry point', () => {
  it('does nothing when imported: no sockets, no READY, the importer exits by itself', () => {
    // Run in a child: if main() ran, it would bind the capture ports and never exit (or exit 1).
    const r = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const m = await import(${JSON.stringify(pathToFileURL(mainJs).href)});
         if (typeof m.main !== 'function') throw new Error('no main export');
         process.stdout.write(JSON.stringify(m.CAPTURE_PORTS));`,
      ],
      { encoding: 'utf8', timeout: 10_000 },
    );
    assert.equal(r.error, undefined);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.deepEqual(JSON.parse(r.stdout), CAPTURE_PORTS);
  });
});
