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
import { spawn } from 'node:child_process';
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
 * Stop, then kill, until no process of the package's user is left: stopping first keeps a fork
 * bomb from outrunning us. A signal to a thread group reaches every thread, also when its leader
 * is a zombie.
 */
export async function killPackageProcesses(): Promise<{ killed: number; survivors: number }> {
  let killed = 0;
  for (let round = 0; round < 100; round++) {
    const alive = packageProcesses();
    if (alive.length === 0) return { killed, survivors: 0 };
    if (round === 0) killed = alive.length;
    signalAll(alive, 'SIGSTOP');
    signalAll(packageProcesses(), 'SIGKILL');
    await sleep(round < 10 ? 10 : 50);
  }
  return { killed, survivors: packageProcesses().length };
}

/** Run one step and say how it went. */
export async function runStep(input: StepInput): Promise<StepOutput> {
  // Nothing of an earlier step may act in this one.
  const before = await killPackageProcesses();
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
  let ended = { killed: 0, survivors: 0 };
  if (left.length > 0) {
    const until = timedOut ? end : end + input.settleMs;
    while (now() < until && packageProcesses().length > 0) await sleep(POLL_MS);
    ended = await killPackageProcesses();
  }
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
  };
  return out;
}
