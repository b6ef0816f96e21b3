/**
 * An audit answered from the result store alone (`--report-only`): nothing runs, and each line
 * of the report says what the store holds for every copy the lockfile has of a package. Two
 * copies of one name@version with different integrity are two tarballs: a result for one is not
 * a result for the other, and a failing copy is never hidden behind a passing one.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { audit } from '../../../src/audit/audit.js';
import type { CheckReport } from '../../../src/core/report.js';
import { sandboxVersion } from '../../../src/check/stored.js';
import { loadPolicy } from '../../../src/policy/load.js';
import { SANDBOX_RESOLVERS } from '../../../src/sandbox/topology.js';
import { openStore } from '../../../src/store/store.js';

const root = mkdtempSync(join(tmpdir(), 'phonehome-report-only-'));
after(() => rmSync(root, { recursive: true, force: true }));

function project(name: string): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  const pkg = (v: string, integrity: string, extra = {}) => ({
    version: v,
    resolved: `https://registry.npmjs.org/a/-/a-${v}.tgz`,
    integrity,
    ...extra,
  });
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({ name: 'app', version: '1.0.0', dependencies: { a: '1.0.0', b: '1.0.0' } }),
  );
  writeFileSync(
    join(dir, 'package-lock.json'),
    JSON.stringify({
      name: 'app',
      version: '1.0.0',
      lockfileVersion: 3,
      packages: {
        '': { name: 'app', version: '1.0.0', dependencies: { a: '1.0.0', b: '1.0.0' } },
        'node_modules/a': pkg('1.0.0', 'sha512-first'),
        'node_modules/b': {
          version: '1.0.0',
          resolved: 'https://registry.npmjs.org/b/-/b-1.0.0.tgz',
          integrity: 'sha512-bbbb',
          dependencies: { a: '1.0.0' },
        },
        // The same name@version again, another tarball.
        'node_modules/b/node_modules/a': pkg('1.0.0', 'sha512-second'),
      },
    }),
  );
  return dir;
}

/** A stored report; a failing one holds what makes the current policy fail it (it is judged again). */
function report(name: string, integrity: string, verdict: 'pass' | 'fail'): CheckReport {
  const id = `${name}@1.0.0`;
  const host = 'dl.example.com';
  return {
    schemaVersion: 2,
    subject: { name, version: '1.0.0', integrity, spec: id },
    phases: [],
    events:
      verdict === 'fail'
        ? [
            {
              phase: 'install',
              package: id,
              kind: 'dns',
              host,
              qtype: 'A',
              resolver: SANDBOX_RESOLVERS[0] as string,
            },
            {
              phase: 'install',
              package: id,
              kind: 'tls',
              host,
              sni: host,
              ip: '198.18.0.7',
              port: 443,
              bytesOut: 517,
            },
          ]
        : [],
    findings: [],
    verdict,
    packages: [{ id, installScripts: [], capabilities: ['network'], fromRegistry: true }],
  };
}

describe('audit --report-only', () => {
  const policy = loadPolicy({ discover: false });
  const sandbox = sandboxVersion({}) + ' audit';
  const meta = { sandbox, phonehomeVersion: '0', durationMs: 1 };
  const noSandbox = () => {
    throw new Error('a report-only audit asked for a sandbox');
  };

  it('a copy without a result makes its line not-run, though another copy passed', async () => {
    const store = await openStore(join(root, 'one.sqlite'));
    await store.save(report('a', 'sha512-first', 'pass'), meta);
    await store.save(report('b', 'sha512-bbbb', 'pass'), meta);
    const r = await audit(noSandbox, project('one'), { policy, store, reportOnly: true });
    const a = r.packages.find((p) => p.id === 'a@1.0.0');
    assert.equal(a?.status, 'not-run');
    assert.equal(r.packages.find((p) => p.id === 'b@1.0.0')?.status, 'checked');
    assert.equal(r.summary.notRun, 1);
    assert.notEqual(r.verdict, 'pass');
    await store.close();
  });

  it('a failing copy speaks for the line, whichever copy the lockfile lists first', async () => {
    for (const [first, second] of [
      ['pass', 'fail'],
      ['fail', 'pass'],
    ] as const) {
      const store = await openStore(join(root, `two-${first}.sqlite`));
      await store.save(report('a', 'sha512-first', first), meta);
      await store.save(report('a', 'sha512-second', second), meta);
      await store.save(report('b', 'sha512-bbbb', 'pass'), meta);
      const r = await audit(noSandbox, project(`two-${first}`), {
        policy,
        store,
        reportOnly: true,
      });
      const a = r.packages.find((p) => p.id === 'a@1.0.0');
      assert.equal(a?.status, 'checked');
      assert.equal(a?.verdict, 'fail');
      assert.equal(r.verdict, 'fail');
      assert.equal(r.packages.filter((p) => p.id === 'a@1.0.0').length, 1, 'one line per id');
      await store.close();
    }
  });

  it('with a failing copy stored, the other copy missing does not soften the line', async () => {
    const store = await openStore(join(root, 'three.sqlite'));
    await store.save(report('a', 'sha512-second', 'fail'), meta);
    const r = await audit(noSandbox, project('three'), { policy, store, reportOnly: true });
    assert.equal(r.packages.find((p) => p.id === 'a@1.0.0')?.verdict, 'fail');
    assert.equal(r.packages.find((p) => p.id === 'b@1.0.0')?.status, 'not-run');
    await store.close();
  });
});
