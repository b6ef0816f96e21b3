/**
 * A minimal npm registry on loopback for tests: serves packuments and tarballs of fixture
 * folders (packed with scripts ignored), and can require a bearer token, so tests exercise
 * `--registry`, npmrc registries and auth without leaving the machine.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Arborist from '@npmcli/arborist';
import pacote from 'pacote';
import { formatId } from '../../src/core/package-id.js';

export interface TestRegistry {
  url: string;
  /** Paths requested, in order, with the status answered. */
  requests: string[];
  /** The same, with what the request carried that tells a conditional request from another. */
  log: { status: number; path: string; conditional: boolean; accept: string; agent: string }[];
  /** Pack a fixture folder and serve it as a new version from now on (published now). */
  publish(folder: string): Promise<void>;
  /** Answer the next `times` requests for this packument with `status` (and Retry-After). */
  failNext(name: string, status: number, times: number, retryAfterSeconds?: number): void;
  close(): Promise<void>;
}

export async function startRegistry(
  folders: string[],
  opts: { token?: string } = {},
): Promise<TestRegistry> {
  const work = await mkdtemp(join(tmpdir(), 'phonehome-test-registry-'));
  const tarballs = new Map<string, Buffer>();
  const manifests: {
    name: string;
    version: string;
    manifest: Record<string, unknown>;
    time: string;
  }[] = [];
  const failures = new Map<string, { status: number; times: number; retryAfter?: number }>();
  const add = async (folder: string) => {
    const manifest = JSON.parse(readFileSync(join(folder, 'package.json'), 'utf8')) as Record<
      string,
      unknown
    > & { name: string; version: string };
    const file = join(work, `${manifest.name.replace('/', '-')}-${manifest.version}.tgz`);
    await pacote.tarball.file(`file:${folder}`, file, { ignoreScripts: true, Arborist });
    tarballs.set(formatId(manifest.name, manifest.version), await readFile(file));
    manifests.push({
      name: manifest.name,
      version: manifest.version,
      manifest,
      time: new Date().toISOString(),
    });
  };
  for (const folder of folders) await add(folder);
  const requests: string[] = [];
  const log: TestRegistry['log'] = [];
  const server = createServer((req, res) => {
    const path = decodeURIComponent((req.url ?? '/').split('?')[0] ?? '/');
    const answer = (
      status: number,
      body: Buffer | string,
      type = 'application/json',
      headers: Record<string, string> = {},
    ) => {
      requests.push(`${status} ${path}`);
      log.push({
        status,
        path,
        conditional: req.headers['if-none-match'] !== undefined,
        accept: String(req.headers.accept ?? ''),
        agent: String(req.headers['user-agent'] ?? ''),
      });
      res.writeHead(status, { 'content-type': type, ...headers });
      res.end(body);
    };
    if (opts.token && req.headers.authorization !== `Bearer ${opts.token}`)
      return answer(401, JSON.stringify({ error: 'authentication required' }));
    const tgz = /^\/(.+)\/-\/.+-(\d+\.\d+\.\d+[^/]*)\.tgz$/.exec(path);
    if (tgz) {
      const [, name = '', version = ''] = tgz;
      const data = tarballs.get(formatId(name, version));
      return data
        ? answer(200, data, 'application/octet-stream')
        : answer(404, JSON.stringify({ error: 'not found' }));
    }
    const name = path.slice(1);
    const failure = failures.get(name);
    if (failure && failure.times > 0) {
      failure.times--;
      return answer(
        failure.status,
        JSON.stringify({ error: 'try later' }),
        'application/json',
        failure.retryAfter ? { 'retry-after': String(failure.retryAfter) } : {},
      );
    }
    const versions = manifests.filter((m) => m.name === name);
    if (versions.length === 0) return answer(404, JSON.stringify({ error: 'not found' }));
    const base = `http://${req.headers.host}`;
    const packument = {
      name,
      'dist-tags': { latest: versions[versions.length - 1]?.version },
      versions: Object.fromEntries(
        versions.map((m) => {
          const data = tarballs.get(formatId(m.name, m.version)) as Buffer;
          const integrity = `sha512-${createHash('sha512').update(data).digest('base64')}`;
          const file = `${m.name.split('/').pop()}-${m.version}.tgz`;
          return [
            m.version,
            {
              ...m.manifest,
              _id: formatId(m.name, m.version),
              dist: { tarball: `${base}/${m.name}/-/${file}`, integrity },
            },
          ];
        }),
      ),
    };
    const body = JSON.stringify({
      ...packument,
      time: {
        created: versions[0]?.time,
        modified: versions[versions.length - 1]?.time,
        ...Object.fromEntries(versions.map((m) => [m.version, m.time])),
      },
    });
    // Validators as registries give them: an ETag of the body, answered 304 when it matches.
    const etag = `"${createHash('sha1').update(body).digest('hex')}"`;
    if (req.headers['if-none-match'] === etag) return answer(304, '', 'application/json', { etag });
    return answer(200, body, 'application/json', { etag });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    requests,
    log,
    publish: add,
    failNext: (name, status, times, retryAfter) =>
      failures.set(name, { status, times, ...(retryAfter ? { retryAfter } : {}) }),
    close: async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(work, { recursive: true, force: true });
    },
  };
}
