/**
 * A throwaway PostgreSQL server on loopback for the store tests: Debian's server binaries,
 * `initdb` into a temporary folder and `pg_ctl` as an unprivileged user (the `postgres` user when
 * the tests run as root), password authentication. Stopped and removed by `stop()`. Missing
 * binaries fail the tests (scripts/setup.sh --tests installs them); nothing is skipped.
 */
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';

export interface TestPostgres {
  url: string;
  port: number;
  password: string;
  /** Stop the server (fast), leaving its files: `start()` brings it back. */
  halt(): void;
  start(): void;
  stop(): void;
}

function binDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (!versions.length)
    throw new Error(
      'PostgreSQL server binaries not found under /usr/lib/postgresql: run scripts/setup.sh --tests',
    );
  return join(root, versions[0] as string, 'bin');
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

export async function startPostgres(): Promise<TestPostgres> {
  const bin = binDir();
  const root = userInfo().uid === 0;
  const dir = mkdtempSync(join(tmpdir(), 'phonehome-pg-'));
  const data = join(dir, 'data');
  const password = `pw-${Math.random().toString(36).slice(2)}-secret`;
  writeFileSync(join(dir, 'pw'), password);
  let uid = -1;
  if (root) {
    uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(dir, uid, gid);
    chownSync(join(dir, 'pw'), uid, gid);
  }
  const as = (cmd: string, args: string[]) =>
    root
      ? execFileSync('runuser', ['-u', 'postgres', '--', join(bin, cmd), ...args], {
          stdio: 'pipe',
          cwd: dir,
        })
      : execFileSync(join(bin, cmd), args, { stdio: 'pipe', cwd: dir });
  as('initdb', [
    '-D',
    data,
    '-U',
    'phonehome',
    '--auth=scram-sha-256',
    `--pwfile=${join(dir, 'pw')}`,
    '-E',
    'UTF8',
    '--no-sync',
  ]);
  const port = await freePort();
  const start = () =>
    as('pg_ctl', [
      '-D',
      data,
      '-l',
      join(dir, 'log'),
      '-w',
      '-o',
      `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100`,
      'start',
    ]);
  start();
  const halt = () => {
    try {
      as('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
    } catch {
      /* already stopped */
    }
  };
  return {
    url: `postgres://phonehome:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    port,
    password,
    halt,
    start,
    stop: () => {
      halt();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
