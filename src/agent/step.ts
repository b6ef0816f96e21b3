/**
 * The step driver: runs one step (a command) in the sandbox. It runs as root with a few
 * capabilities, out of the package's reach, and starts the step as the package's user. It stamps
 * the step's start and end on the kernel's monotonic clock (the clock the capture stamps events
 * with), keeps a bounded head of the output, and at the step's end deals with every process of
 * the package's user still alive (detached children, double forks, a zombie leader whose threads
 * live on): they are watched for the settle window, then stopped and killed, so nothing started
 * in one step acts in the next. Every such process is the package's: phonehome's own programs
 * run as root.
 *
 * Runs on the sandbox's Node with built-ins only, inside the batch driver (batch.ts), which
 * runs a list of steps one after another in one process.
 */
import { spawn, spawnSync } from 'node:child_process';
import { lstatSync, readdirSync } from 'node:fs';
import { cmdline, liveThreads, monotonicMs as now, pids, uids } from './proc.js';

/** The package's user in the sandbox (the runner image's uid and gid 1000). */
export const PACKAGE_UID = 1000;
export const PACKAGE_GID = 1000;
/** Variables of the agents' own environment that package code must not inherit. */
export const AGENT_ONLY_ENV = ['OBSERVER_SOCKET'];

export interface StepInput {
  cmd: string;
  args: string[];
  timeoutMs: number;
  maxOutputBytes: number;
  /** How long leftover processes may run after the step before they are killed. */
  settleMs: number;
  env?: Record<string, string>;
  /**
   * Files the step must not change: everything under `watch` except the folders in `own` (the
   * step's package and what it bundles; their `node_modules` of other packages stay watched).
   * A change there (another package's code, npm's configuration) would run in a later step
   * under another package's name.
   */
  guard?: { watch: string[]; own: string[] };
}

export interface Leftover {
  pid: number;
  cmd: string;
}

export interface StepOutput {
  start: number;
  end: number;
  /** When the leftovers were gone (or killed); equals `end` when there were none. */
  settledAt: number;
  code: number | null;
  signal: string | null;
  timedOut: boolean;
  error: string | null;
  stdout: string;
  stderr: string;
  stdoutBytes: number;
  stderrBytes: number;
  /** Processes still running when the step ended (at most 50 listed). */
  leftovers: Leftover[];
  leftoverCount: number;
  /** Leftovers still running at the end of the settle window, killed. */
  killed: number;
  /** Processes of the package's user that could not be killed (the step's end is not clean). */
  survivors: number;
  /** Processes of the package's user found alive before the step started, killed then. */
  strays?: number;
  /** Files under the guard that the step changed, created or removed (at most 20 listed). */
  modified?: { count: number; paths: string[] };
}

/** At most this many entries are compared; past it the guard says it stopped looking. */
const GUARD_MAX_ENTRIES = 400_000;

/**
 * What identifies a file's content without reading it: inode, size, mode, mtime, and ctime unless
 * only the link count moved (a hard link to it, as installers make, changes ctime; a write whose
 * mtime was set back does not change nlink).
 */
function snapshot(guard: NonNullable<StepInput['guard']>): Map<string, string> {
  const own = new Set(guard.own.map((p) => p.replace(/\/+$/, '')));
  const out = new Map<string, string>();
  const visit = (path: string, inOwn: boolean) => {
    if (out.size >= GUARD_MAX_ENTRIES) return;
    let st: ReturnType<typeof lstatSync>;
    try {
      st = lstatSync(path, { bigint: true });
    } catch {
      return;
    }
    const mine = inOwn || own.has(path);
    if (!mine)
      out.set(path, `${st.ino}:${st.size}:${st.mode}:${st.mtimeNs}:${st.nlink}:${st.ctimeNs}`);
    if (!st.isDirectory()) return;
    let names: string[];
    try {
      names = readdirSync(path);
    } catch {
      return;
    }
    for (const n of names) {
      // Inside the step's own folder only its node_modules (other packages) is watched, and
      // within that, a folder of its own again is not.
      if (mine && n !== 'node_modules' && !own.has(`${path}/${n}`)) continue;
      visit(`${path}/${n}`, mine && n !== 'node_modules');
    }
  };
  for (const w of guard.watch) visit(w.replace(/\/+$/, ''), false);
  if (out.size >= GUARD_MAX_ENTRIES) out.set('\0truncated', '');
  return out;
}

function changes(before: Map<string, string>, after: Map<string, string>): string[] {
  const changed: string[] = [];
  for (const [path, id] of after) {
    const was = before.get(path);
    if (was === id) continue;
    if (was !== undefined && path.length > 0) {
      // Same inode, size, mode, mtime: only a hard link added or removed changes ctime with nlink.
      const [a, b] = [was.split(':'), id.split(':')];
      if (a.slice(0, 4).join(':') === b.slice(0, 4).join(':') && a[4] !== b[4]) continue;
    }
    changed.push(path);
  }
  for (const path of before.keys()) if (!after.has(path)) changed.push(path);
  return changed.filter((p) => !p.startsWith('\0')).sort();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const POLL_MS = 100;

/** Every process of the package's user with a thread still alive (any uid not root is the package's). */
export function packageProcesses(): Leftover[] {
  const out: Leftover[] = [];
  for (const pid of pids()) {
    if (pid === process.pid) continue;
    const ids = uids(pid);
    if (!ids || ids.every((u) => u === 0) || !liveThreads(pid)) continue;
    out.push({ pid, cmd: cmdline(pid) });
  }
  return out;
}

function signalAll(list: Leftover[], signal: NodeJS.Signals): void {
  for (const p of list) {
    try {
      process.kill(p.pid, signal);
    } catch {
      // already gone
    }
  }
}

/**
 * kill(-1, SIGKILL) from the package's own uid: the kernel signals every process of that uid at
 * once, under the lock fork takes, so even a chain that forks faster than /proc can be read (each
 * link gone before its status file is opened) is caught, and a process with SIGKILL pending
 * cannot fork. (Its exit status says nothing: kill(-1) succeeds as soon as any other process
 * exists, even one it may not signal.)
 */
function killAllAsPackageUser(): void {
  spawnSync('/bin/kill', ['-KILL', '--', '-1'], {
    uid: PACKAGE_UID,
    gid: PACKAGE_GID,
    env: {},
    stdio: 'ignore',
    // A package process may stop the killer (it is of the package's uid); the root loop below
    // still kills what it can see, and tries again.
    timeout: 2000,
    killSignal: 'SIGKILL',
  });
}

/**
 * Stop what can be seen, kill every process of the package's user from inside its uid, then kill
 * again what is still seen, until none is left. A signal to a thread group reaches every thread,
 * also when its leader is a zombie.
 */
export async function killPackageProcesses(): Promise<{ killed: number; survivors: number }> {
  const seen = packageProcesses();
  signalAll(seen, 'SIGSTOP');
  killAllAsPackageUser();
  signalAll(seen, 'SIGKILL');
  for (let round = 0; round < 100; round++) {
    const alive = packageProcesses();
    if (alive.length === 0) return { killed: seen.length, survivors: 0 };
    signalAll(alive, 'SIGSTOP');
    killAllAsPackageUser();
    signalAll(packageProcesses(), 'SIGKILL');
    await sleep(round < 10 ? 10 : 50);
  }
  return { killed: seen.length, survivors: packageProcesses().length };
}

/** Run one step and say how it went. */
export async function runStep(input: StepInput): Promise<StepOutput> {
  // Nothing of an earlier step may act in this one.
  const before = await killPackageProcesses();
  const files = input.guard ? snapshot(input.guard) : undefined;
  const head = { out: [] as Buffer[], err: [] as Buffer[] };
  const size = { out: 0, err: 0 };
  const keepHead = (k: 'out' | 'err') => (d: Buffer) => {
    if (size[k] < input.maxOutputBytes) head[k].push(d.subarray(0, input.maxOutputBytes - size[k]));
    size[k] += d.length;
  };
  const start = now();
  const env: Record<string, string | undefined> = { ...process.env, ...input.env };
  for (const k of AGENT_ONLY_ENV) delete env[k];
  const child = spawn(input.cmd, input.args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
    // As the package's user: from here on the step can neither signal nor read phonehome's
    // processes (libuv also drops the supplementary groups).
    uid: PACKAGE_UID,
    gid: PACKAGE_GID,
    env,
  });
  const closed = new Promise((r) => child.on('close', r));
  child.stdout.on('data', keepHead('out'));
  child.stderr.on('data', keepHead('err'));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    void killPackageProcesses();
  }, input.timeoutMs);
  const { code, signal, error } = await new Promise<{
    code: number | null;
    signal: string | null;
    error: string | null;
  }>((resolve) => {
    child.on('error', (e) => resolve({ code: null, signal: null, error: e.message }));
    // 'exit', not 'close': a detached child that inherited the pipes would hold 'close' open.
    child.on('exit', (c, s) => resolve({ code: c, signal: s, error: null }));
  });
  clearTimeout(timer);
  const end = now();
  // Let the output already written drain, without waiting on a leftover that holds the pipes.
  await Promise.race([closed, sleep(200)]);

  const left = packageProcesses();
  if (left.length > 0) {
    const until = timedOut ? end : end + input.settleMs;
    while (now() < until && packageProcesses().length > 0) await sleep(POLL_MS);
  }
  // Always, also when nothing is listed: a chain that forks faster than /proc is read is not.
  const ended = await killPackageProcesses();
  const modified = files && input.guard ? changes(files, snapshot(input.guard)) : [];
  const out: StepOutput = {
    start,
    end,
    settledAt: now(),
    code,
    signal,
    timedOut,
    error,
    stdout: Buffer.concat(head.out).toString(),
    stderr: Buffer.concat(head.err).toString(),
    stdoutBytes: size.out,
    stderrBytes: size.err,
    leftovers: left.slice(0, 50),
    leftoverCount: left.length,
    killed: ended.killed,
    survivors: ended.survivors + before.survivors,
    ...(before.killed ? { strays: before.killed } : {}),
    ...(modified.length
      ? { modified: { count: modified.length, paths: modified.slice(0, 20) } }
      : {}),
  };
  return out;
}
