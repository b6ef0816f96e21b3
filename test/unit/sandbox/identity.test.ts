/**
 * The archive the sandbox's home and project files are unpacked from: what goes in (paths, file
 * modes, folders, bytes) is what a tar reader, and GNU tar as the sandbox runs it, gets out.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { lstatSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import * as tar from 'tar';
import { filesTar, makeIdentity, type IdentityFile } from '../../../src/sandbox/identity.js';

async function bytes(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks);
}

interface Entry {
  path: string;
  type: string;
  mode: string;
  uid: number | undefined;
  gid: number | undefined;
  body: string;
}

/** Every entry of an archive, as node-tar's reader sees it (pax headers applied). */
async function entries(archive: Buffer): Promise<Entry[]> {
  const out: Entry[] = [];
  const parser = new tar.Parser({
    strict: true,
    onReadEntry: (e) => {
      const body: Buffer[] = [];
      e.on('data', (d: Buffer) => body.push(d));
      e.on('end', () =>
        out.push({
          path: e.path,
          type: e.type,
          mode: (e.mode ?? 0).toString(8),
          uid: e.uid,
          gid: e.gid,
          body: Buffer.concat(body).toString(),
        }),
      );
    },
  });
  const done = new Promise<void>((resolve, reject) => {
    parser.on('end', resolve);
    parser.on('error', reject);
  });
  parser.end(archive);
  await done;
  return out;
}

const deep = `home/alex/${'nested-folder/'.repeat(12)}notes.txt`;
const files: IdentityFile[] = [
  { path: '/home/alex/.npmrc', content: '//registry.npmjs.org/:_authToken=npm_x\n', mode: 0o600 },
  { path: '/home/alex/.bashrc', content: "alias ll='ls -alF'\n", mode: 0o644 },
  { path: '/home/alex/.local/bin/tool', content: '#!/bin/sh\n', mode: 0o755 },
  { path: '.env', content: '', mode: 0o600 },
  { path: '/home/alex/.gitconfig', content: 'name = Zoë Müller\n', mode: 0o644 },
  { path: `/${deep}`, content: 'x'.repeat(1500), mode: 0o640 },
];
const dirs = ['home/alex/Desktop', 'home/alex/code/web-app'];

describe('filesTar', () => {
  it('holds the folders, then the files, with their modes, owned by root', async () => {
    const archive = await bytes(filesTar(files, dirs));
    assert.equal(archive.length % 512, 0, 'whole blocks');
    assert.deepEqual(archive.subarray(-1024), Buffer.alloc(1024), 'ends with two empty blocks');
    assert.deepEqual(
      (await entries(archive)).map((e) => ({ ...e, body: e.body.length })),
      [
        { path: 'home/alex/Desktop', type: 'Directory', mode: '755', uid: 0, gid: 0, body: 0 },
        { path: 'home/alex/code/web-app', type: 'Directory', mode: '755', uid: 0, gid: 0, body: 0 },
        { path: 'home/alex/.npmrc', type: 'File', mode: '600', uid: 0, gid: 0, body: 39 },
        { path: 'home/alex/.bashrc', type: 'File', mode: '644', uid: 0, gid: 0, body: 19 },
        { path: 'home/alex/.local/bin/tool', type: 'File', mode: '755', uid: 0, gid: 0, body: 10 },
        { path: '.env', type: 'File', mode: '600', uid: 0, gid: 0, body: 0 },
        { path: 'home/alex/.gitconfig', type: 'File', mode: '644', uid: 0, gid: 0, body: 18 },
        { path: deep, type: 'File', mode: '640', uid: 0, gid: 0, body: 1500 },
      ],
    );
  });

  it('keeps every byte of the content, text beyond ASCII and paths beyond ustar’s 100 characters', async () => {
    const got = await entries(await bytes(filesTar(files, dirs)));
    for (const f of files) {
      const e = got.find((x) => x.path === f.path.replace(/^\//, ''));
      assert.ok(e, f.path);
      assert.equal(e.body, f.content, f.path);
    }
  });

  it('aged: every entry was last written between 2 and 400 days ago, not at the run', async () => {
    const times: number[] = [];
    const parser = new tar.Parser({
      onReadEntry: (e) => {
        times.push(e.mtime?.getTime() ?? NaN);
        e.resume();
      },
    });
    const archive = await bytes(filesTar(files, dirs, { aged: true }));
    await new Promise<void>((resolve) => parser.end(archive, () => resolve()));
    const now = Date.now();
    assert.equal(times.length, files.length + dirs.length);
    for (const t of times) {
      const days = (now - t) / 86_400_000;
      assert.ok(days >= 2 && days <= 401, `${days} days`);
    }
    assert.ok(new Set(times).size > 1, 'not all written at one moment');
  });

  it('an empty archive is two empty blocks', async () => {
    assert.deepEqual(await bytes(filesTar([])), Buffer.alloc(1024));
  });

  describe('unpacked by GNU tar, as the sandbox does', () => {
    const dir = mkdtempSync(join(tmpdir(), 'phonehome-filestar-'));
    after(() => rmSync(dir, { recursive: true, force: true }));

    it('gives the folders and files their modes and contents', async () => {
      // An identity whose home is not the fixture's (/home/alex), or one file would overwrite the
      // other.
      let id = makeIdentity('laptop');
      while (id.user === 'alex') id = makeIdentity('laptop');
      const home = id.home.slice(1);
      const archive = await bytes(
        filesTar([...id.homeFiles, ...files], [...id.homeDirs.map((d) => `${home}/${d}`), ...dirs]),
      );
      // -p: the modes as archived, whatever this process's umask (the sandbox unpacks as root,
      // which does the same).
      const r = spawnSync('tar', ['-x', '-p', '--no-same-owner', '-C', dir, '-f', '-'], {
        input: archive,
      });
      assert.equal(r.status, 0, r.stderr.toString());
      const mode = (p: string) => (lstatSync(join(dir, p)).mode & 0o7777).toString(8);
      for (const d of [...id.homeDirs.map((d) => `${home}/${d}`), ...dirs]) {
        assert.ok(lstatSync(join(dir, d)).isDirectory(), d);
        assert.equal(mode(d), '755', d);
      }
      for (const f of [...id.homeFiles, ...files]) {
        const p = f.path.replace(/^\//, '');
        assert.ok(lstatSync(join(dir, p)).isFile(), p);
        assert.equal(mode(p), f.mode.toString(8), p);
        assert.equal(readFileSync(join(dir, p), 'utf8'), f.content, p);
      }
      assert.equal(mode(`${home}/.ssh/id_ed25519`), '600', 'the private key is private');
    });
  });
});
