/**
 * Which specs name a registry package whose tarball the registry pins (and so can be found in the
 * result store before anything is fetched), and what they resolve to. The registry is a packument
 * served on loopback; npm's cache is pointed at a temp folder for the duration.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PhonehomeError, type ErrorCode } from '../../../src/core/errors.js';
import type { NpmConfig } from '../../../src/resolve/npmrc.js';
import { resolveSubject } from '../../../src/resolve/subject.js';

const integrity = (v: string) => `sha512-${Buffer.from(`tarball of ${v}`).toString('base64')}`;
const version = (name: string, v: string, withIntegrity = true) => ({
  name,
  version: v,
  dist: {
    tarball: `http://127.0.0.1/${name}/-/${name.split('/').pop()}-${v}.tgz`,
    ...(withIntegrity ? { integrity: integrity(v) } : {}),
  },
});
const packument = (name: string, tags: Record<string, string>, versions: string[]) => ({
  name,
  'dist-tags': tags,
  versions: Object.fromEntries(versions.map((v) => [v, version(name, v)])),
});
const PACKUMENTS: Record<string, object> = {
  '/quiet-lib': packument('quiet-lib', { latest: '1.1.0', beta: '2.0.0-beta.1' }, [
    '1.0.0',
    '1.1.0',
    '2.0.0-beta.1',
  ]),
  '/@corp/scoped': packument('@corp/scoped', { latest: '3.0.0' }, ['3.0.0']),
  '/no-integrity': {
    name: 'no-integrity',
    'dist-tags': { latest: '1.0.0' },
    versions: { '1.0.0': version('no-integrity', '1.0.0', false) },
  },
};
const TOKEN = 'phonehome-test-token';

let server: Server;
let registry: string;
const requests: string[] = [];
const home = mkdtempSync(join(tmpdir(), 'phonehome-subject-home-'));
const realHome = process.env.HOME;
const realCwd = process.cwd();

before(async () => {
  // resolveSubject caches packuments in ~/.npm/_cacache: keep that out of the real home.
  process.env.HOME = home;
  server = createServer((req, res) => {
    const path = decodeURIComponent(req.url ?? '/');
    requests.push(path);
    const answer = (status: number, body: object) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (path.startsWith('/private/'))
      return req.headers.authorization === `Bearer ${TOKEN}`
        ? answer(200, packument(path.slice('/private/'.length), { latest: '1.0.0' }, ['1.0.0']))
        : answer(401, { error: 'authentication required' });
    const found = PACKUMENTS[path];
    return found ? answer(200, found) : answer(404, { error: 'not found' });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  registry = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
});
after(async () => {
  process.env.HOME = realHome;
  process.chdir(realCwd);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  rmSync(home, { recursive: true, force: true });
});

async function rejectsWith(spec: string, code: ErrorCode, config?: NpmConfig): Promise<void> {
  await assert.rejects(
    resolveSubject(spec, { npmConfig: config ?? { registry } }),
    (e: unknown) => e instanceof PhonehomeError && e.code === code,
    `${spec}: ${code}`,
  );
}

describe('resolveSubject', () => {
  it('local folders, tarballs and file: specs are not registry subjects (no request made)', async () => {
    const before = requests.length;
    for (const spec of ['./pkg', '../pkg', '/abs/pkg.tgz', 'file:pkg', 'file:../x.tgz'])
      assert.equal(await resolveSubject(spec, { npmConfig: { registry } }), undefined, spec);
    // A bare name that is a folder here is the folder, not the registry package.
    const cwd = mkdtempSync(join(tmpdir(), 'phonehome-subject-cwd-'));
    try {
      mkdirSync(join(cwd, 'quiet-lib'));
      process.chdir(cwd);
      assert.equal(await resolveSubject('quiet-lib', { npmConfig: { registry } }), undefined);
    } finally {
      process.chdir(realCwd);
      rmSync(cwd, { recursive: true, force: true });
    }
    assert.equal(requests.length, before);
  });

  it('git, URL and alias specs are not either: the registry does not pin their content', async () => {
    const before = requests.length;
    for (const spec of [
      'github:user/repo',
      'user/repo',
      'git+https://git.example/a.git',
      'https://example.com/pkg.tgz',
      'alias@npm:quiet-lib@1.0.0',
    ])
      assert.equal(await resolveSubject(spec, { npmConfig: { registry } }), undefined, spec);
    assert.equal(requests.length, before);
  });

  it('a name, a range, a tag and an exact version resolve to that version and its integrity', async () => {
    for (const [spec, v] of [
      ['quiet-lib', '1.1.0'],
      ['quiet-lib@^1.0.0', '1.1.0'],
      ['quiet-lib@~1.0.0', '1.0.0'],
      ['quiet-lib@beta', '2.0.0-beta.1'],
      ['quiet-lib@1.0.0', '1.0.0'],
    ] as const)
      assert.deepEqual(
        await resolveSubject(spec, { npmConfig: { registry } }),
        { name: 'quiet-lib', version: v, integrity: integrity(v) },
        spec,
      );
    assert.deepEqual(await resolveSubject('@corp/scoped@3', { npmConfig: { registry } }), {
      name: '@corp/scoped',
      version: '3.0.0',
      integrity: integrity('3.0.0'),
    });
  });

  it('a version the registry gives no integrity for cannot be looked up', async () => {
    assert.equal(await resolveSubject('no-integrity', { npmConfig: { registry } }), undefined);
  });

  it('errors: unknown package or version, an invalid spec, a refused request', async () => {
    await rejectsWith('not-there', 'ESPEC_NOT_FOUND');
    await rejectsWith('quiet-lib@^3', 'ESPEC_NOT_FOUND');
    await rejectsWith('Not A Valid Name!', 'ESPEC');
    await rejectsWith('@corp/scoped@not a tag!', 'ESPEC');
  });

  it('sends the npmrc credentials for the registry host', async () => {
    const scoped = { '@priv:registry': `${registry}private/` };
    await rejectsWith('@priv/lib', 'EREGISTRY_AUTH', { registry, ...scoped });
    const host = registry.replace(/^http:/, '');
    assert.deepEqual(
      await resolveSubject('@priv/lib', {
        npmConfig: { registry, ...scoped, [`${host}:_authToken`]: TOKEN },
      }),
      { name: '@priv/lib', version: '1.0.0', integrity: integrity('1.0.0') },
    );
  });
});
