/**
 * A second Docker engine on this machine, standing in for a remote one: its own socket, data
 * root, exec root and pid file, a bridge of its own with no iptables rules (phonehome makes no
 * Docker networks: a sandbox shares its gateway's network namespace). Not `--bridge=none`: a
 * daemon started so deletes the machine's `docker0`, which the first engine's builds need. It needs root and Debian's
 * dockerd, as the first engine does (scripts/ensure-docker.sh). `kill()` is SIGKILL to the
 * daemon, a crash; `start()` brings it back on the same folders; `stop()` ends it and removes
 * everything it held.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Docker from 'dockerode';

export interface SecondEngine {
  /** The `--engine` value. */
  address: string;
  docker: Docker;
  start(): Promise<void>;
  kill(): void;
  /** SIGSTOP, SIGCONT: a daemon whose connections hang instead of failing. */
  freeze(): void;
  thaw(): void;
  stop(): Promise<void>;
}

function dockerd(): string {
  for (const p of ['/usr/sbin/dockerd', '/usr/bin/dockerd', '/sbin/dockerd'])
    if (existsSync(p)) return p;
  throw new Error('dockerd not found: run scripts/setup.sh (it installs Debian’s docker.io)');
}

export async function startSecondEngine(): Promise<SecondEngine> {
  // Short paths: a unix socket path is limited to 108 bytes.
  const dir = mkdtempSync('/tmp/ph-engine-');
  // A bridge of its own, with an address of the documentation range, nothing routed to it.
  const bridge = `ph2br${process.pid % 100000}`;
  spawnSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
  for (const args of [
    ['link', 'add', 'name', bridge, 'type', 'bridge'],
    ['addr', 'add', '192.0.2.1/24', 'dev', bridge],
    ['link', 'set', bridge, 'up'],
  ]) {
    const r = spawnSync('ip', args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
  }
  const socket = join(dir, 'docker.sock');
  const docker = new Docker({ socketPath: socket });
  let child: ChildProcess | undefined;
  const start = async () => {
    const log = openSync(join(dir, 'dockerd.log'), 'a');
    child = spawn(
      dockerd(),
      [
        '--host',
        `unix://${socket}`,
        '--data-root',
        join(dir, 'data'),
        '--exec-root',
        join(dir, 'exec'),
        '--pidfile',
        join(dir, 'docker.pid'),
        `--bridge=${bridge}`,
        '--iptables=false',
        '--ip6tables=false',
      ],
      {
        stdio: ['ignore', log, log],
        env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` },
      },
    );
    for (let i = 0; i < 120; i++) {
      if (child.exitCode !== null) break;
      try {
        await docker.ping();
        return;
      } catch {
        await sleep(500);
      }
    }
    throw new Error(
      `the second engine did not start: ${readFileSync(join(dir, 'dockerd.log'), 'utf8').slice(-2000)}`,
    );
  };
  await start();
  return {
    address: `unix://${socket}`,
    docker,
    start,
    kill: () => child?.kill('SIGKILL'),
    freeze: () => child?.kill('SIGSTOP'),
    thaw: () => child?.kill('SIGCONT'),
    stop: async () => {
      if (child && child.exitCode === null) {
        child.kill('SIGCONT');
        try {
          for (const c of await docker.listContainers({ all: true }))
            await docker.getContainer(c.Id).remove({ force: true });
        } catch {
          /* the daemon may be down */
        }
        child.kill('SIGTERM');
        for (let i = 0; i < 60 && child.exitCode === null; i++) await sleep(500);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
      // Its managed containerd and any shim hold the folder too: ended, then the daemon's own
      // mounts of its data root undone, before the folder goes.
      spawnSync('pkill', ['-KILL', '-f', dir]);
      await sleep(1000);
      for (const m of ['data', 'exec']) spawnSync('umount', ['-R', '-l', join(dir, m)]);
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch {
        /* a mount still busy: left in /tmp */
      }
      spawnSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
    },
  };
}
