/**
 * The observer: runs in the sandbox for the whole run, as root with only the capabilities that
 * read another user's /proc entries, so package code (an unprivileged uid) can neither signal,
 * trace, nor open it, and Node's SIGUSR1 inspector is disabled. The capture program
 * (in the gateway, which shares the network namespace but not the process namespace) asks it, for
 * each DNS query, datagram and connection it receives, which process owns the client socket. The
 * answer is read from /proc at the moment of the attempt, while the client still waits for its
 * reply, so the socket still exists.
 *
 * What it reads of the package's processes (command lines, npm variables) is the package's to
 * forge: it is shown in the report as a hint, never used to decide which package is charged (the
 * step windows do that, see src/core/report.ts). If the link is lost anyway, the capture notices
 * and the report says so, while capture itself goes on in the gateway.
 *
 * Runs on the sandbox's Node with built-ins only. Protocol: newline-delimited JSON over an
 * abstract Unix socket the capture listens on (its name in OBSERVER_SOCKET, an environment
 * variable package code cannot read, unlike a command line); requests `{id, proto, port, rport?}`, replies
 * `{id, proc?}`.
 */
import { readdirSync, readlinkSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import type { ProcessInfo } from '../core/terms.js';
import { cmdline, disguise, monotonicMs, pids, read, readOf, stat, type ProcStat } from './proc.js';

interface Request {
  id: number;
  proto: 'tcp' | 'udp';
  /** The client socket's local port. */
  port: number;
  /** The port the client aimed at, to tell apart two sockets on one local port. */
  rport?: number;
}

const ANCESTORS_MAX = 12;

/** Sockets of one /proc/net table by local port: [remote port, inode] of each. */
type SocketTable = Map<number, [number, string][]>;

/**
 * Reads /proc/net/<table> once and indexes it by local port. Each read makes the kernel walk the
 * whole socket hash (about 12 ms for 6,000 sockets, TIME_WAIT ones included): read per request,
 * a batch of 200 connections took seconds and every lookup timed out.
 */
function socketTable(table: string): SocketTable {
  const index: SocketTable = new Map();
  const text = read(`/proc/net/${table}`);
  for (const line of text ? text.split('\n').slice(1) : []) {
    const f = line.trim().split(/\s+/);
    const local = f[1];
    const remote = f[2];
    const inode = f[9];
    if (!local || !remote || !inode || inode === '0') continue;
    const lp = parseInt(local.slice(local.lastIndexOf(':') + 1), 16);
    const rp = parseInt(remote.slice(remote.lastIndexOf(':') + 1), 16);
    const list = index.get(lp);
    if (list) list.push([rp, inode]);
    else index.set(lp, [[rp, inode]]);
  }
  return index;
}

/**
 * inode of the socket bound to `port` in /proc/net/<proto>{,6}, preferring one aimed at rport;
 * `tables` holds the tables read for the current batch.
 */
function socketInode(
  tables: Map<string, SocketTable>,
  proto: 'tcp' | 'udp',
  port: number,
  rport?: number,
): string | undefined {
  let fallback: string | undefined;
  for (const name of [proto, `${proto}6`]) {
    let table = tables.get(name);
    if (!table) {
      table = socketTable(name);
      tables.set(name, table);
    }
    for (const [rp, inode] of table.get(port) ?? []) {
      if (rport === undefined || rp === rport) return inode;
      fallback ??= inode;
    }
  }
  return fallback;
}

/**
 * A process's open descriptors. A thread-group leader that exited on its own (SYS_exit) while its
 * threads live on shows no descriptors; the live threads hold them, under /proc/<pid>/task.
 */
function fdDir(pid: number): { path: string; fds: string[] } | undefined {
  const list = (path: string) => {
    try {
      return readdirSync(path);
    } catch {
      return [];
    }
  };
  const own = list(`/proc/${pid}/fd`);
  if (own.length) return { path: `/proc/${pid}/fd`, fds: own };
  for (const tid of list(`/proc/${pid}/task`)) {
    const fds = list(`/proc/${pid}/task/${tid}/fd`);
    if (fds.length) return { path: `/proc/${pid}/task/${tid}/fd`, fds };
  }
  return undefined;
}

/** Which of `inodes` each process holds; one pass over /proc/<pid>/fd for a batch of requests. */
function owners(inodes: Set<string>): Map<string, number> {
  const found = new Map<string, number>();
  for (const pid of pids()) {
    if (found.size === inodes.size) break;
    const dir = fdDir(pid);
    if (!dir) continue;
    for (const fd of dir.fds) {
      let target: string;
      try {
        target = readlinkSync(`${dir.path}/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m?.[1] && inodes.has(m[1]) && !found.has(m[1])) found.set(m[1], pid);
    }
  }
  return found;
}

/** The npm lifecycle variables of a process's environment. */
function npmEnv(pid: number): Map<string, string> {
  const env = new Map<string, string>();
  for (const kv of readOf(pid, 'environ').split('\0')) {
    const i = kv.indexOf('=');
    if (i > 0 && kv.startsWith('npm_')) env.set(kv.slice(0, i), kv.slice(i + 1));
  }
  return env;
}

function describe(pid: number): ProcessInfo | undefined {
  const st = stat(pid);
  if (!st) return undefined;
  const info: ProcessInfo = { pid, cmd: cmdline(pid), startMs: st.startMs };
  // npm gives every lifecycle script its package's name, version and event; children inherit
  // them. A child that cleared its environment is attributed through its parents.
  let cur: { pid: number; ppid: number } | undefined = { pid, ppid: st.ppid };
  for (let i = 0; cur && i < ANCESTORS_MAX; i++) {
    const env = npmEnv(cur.pid);
    const name = env.get('npm_package_name');
    const version = env.get('npm_package_version');
    const script = env.get('npm_lifecycle_event');
    if (name && script) {
      info.package = (version ? `${name}@${version}` : name).slice(0, 256);
      info.script = script.slice(0, 64);
      break;
    }
    const parent: ProcStat | undefined = cur.ppid > 1 ? stat(cur.ppid) : undefined;
    cur = parent ? { pid: cur.ppid, ppid: parent.ppid } : undefined;
  }
  return info;
}

function main(): void {
  disguise('/lib/systemd/systemd-journald', 'systemd-journal');
  const name = process.env.OBSERVER_SOCKET;
  if (!name) throw new Error('observer: OBSERVER_SOCKET is not set');
  // The sandbox starts while the gateway is still setting up: retry until the capture listens.
  const give = Date.now() + 15_000;
  const attempt = () => {
    const s = connect({ path: `\0${name}` });
    s.once('error', (e) => {
      if (Date.now() > give) {
        process.stderr.write(`observer: ${e.message}\n`);
        process.exit(1);
      }
      setTimeout(attempt, 10);
    });
    s.once('connect', () => serve(s));
  };
  attempt();
}

function serve(link: Socket): void {
  let queue: Request[] = [];
  let scheduled = false;
  const answer = () => {
    scheduled = false;
    const batch = queue;
    queue = [];
    // Each table is read once a batch, and only if a request needs it.
    const tables = new Map<string, SocketTable>();
    const inodeOf = new Map<number, string>();
    for (const r of batch) {
      const inode = socketInode(tables, r.proto, r.port, r.rport);
      if (inode) inodeOf.set(r.id, inode);
    }
    const owner = inodeOf.size ? owners(new Set(inodeOf.values())) : new Map<string, number>();
    const out: string[] = [];
    for (const r of batch) {
      const inode = inodeOf.get(r.id);
      const pid = inode ? owner.get(inode) : undefined;
      const info = pid ? describe(pid) : undefined;
      out.push(JSON.stringify(info ? { id: r.id, proc: info } : { id: r.id }));
    }
    link.write(out.join('\n') + '\n');
  };
  let pending = '';
  link.setEncoding('utf8');
  link.on('data', (chunk: string) => {
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      try {
        queue.push(JSON.parse(line) as Request);
      } catch {
        continue;
      }
    }
    if (queue.length && !scheduled) {
      scheduled = true;
      setImmediate(answer);
    }
  });
  // The pid, and the time from which every new process is the package's (steps start later).
  process.stdout.write(`READY ${process.pid} ${Math.ceil(monotonicMs())}\n`);
  link.on('error', (e) => {
    process.stderr.write(`observer: ${e.message}\n`);
    process.exit(1);
  });
  link.on('close', () => process.exit(0));
}

main();
