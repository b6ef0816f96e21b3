/**
 * The step driver: runs one step (a command) in the sandbox. It stamps the step's start and end on
 * the monotonic clock the capture stamps events with, keeps a bounded head of the output, kills the
 * step's process group at its timeout, then deals with processes the step left behind (detached
 * children): they are watched for the settle window and killed when it ends, so the next step
 * starts clean. The batch driver writes each result as one line of JSON.
 *
 * Runs on the sandbox's Node with built-ins only, inside the batch driver (batch.ts), which
 * runs a list of steps one after another in one process.
 */
import { spawn } from 'node:child_process';
import { cmdline, monotonicMs as now, pids, stat } from './proc.js';

export interface StepInput {
  cmd: string;
  args: string[];
  timeoutMs: number;
  maxOutputBytes: number;
  /** How long leftover processes may run after the step before they are killed. */
  settleMs: number;
  /** Processes that are not the step's: the observer. */
  keepPids: number[];
  /**
   * Processes that started before this moment (CLOCK_MONOTONIC ms) are the sandbox's own (its
   * init and what holds the container open), never a step's.
   */
  sandboxReadyMs: number;
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
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const POLL_MS = 100;

/**
 * Live processes started by steps: not the sandbox's own (started by `readyMs`), not ourselves or
 * `keep`, not zombies.
 */
function leftovers(keep: Set<number>, readyMs: number): Leftover[] {
  const out: Leftover[] = [];
  for (const pid of pids()) {
    if (pid === 1 || keep.has(pid)) continue;
    const st = stat(pid);
    if (!st || st.state === 'Z' || st.state === 'X' || st.startMs <= readyMs) continue;
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

/** Stop, then kill, until nothing is left: stopping first keeps a fork bomb from outrunning us. */
async function killAll(list: () => Leftover[]): Promise<number> {
  let killed = 0;
  for (let round = 0; round < 50; round++) {
    const alive = list();
    if (alive.length === 0) break;
    if (round === 0) killed = alive.length;
    signalAll(alive, 'SIGSTOP');
    signalAll(list(), 'SIGKILL');
    await sleep(20);
  }
  return killed;
}

/** Run one step and say how it went. */
export async function runStep(input: StepInput): Promise<StepOutput> {
  const keep = new Set([process.pid, ...input.keepPids]);
  const mine = () => leftovers(keep, input.sandboxReadyMs);
  const head = { out: [] as Buffer[], err: [] as Buffer[] };
  const size = { out: 0, err: 0 };
  const keepHead = (k: 'out' | 'err') => (d: Buffer) => {
    if (size[k] < input.maxOutputBytes) head[k].push(d.subarray(0, input.maxOutputBytes - size[k]));
    size[k] += d.length;
  };
  const start = now();
  const child = spawn(input.cmd, input.args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
    env: { ...process.env, ...input.env },
  });
  const closed = new Promise((r) => child.on('close', r));
  child.stdout.on('data', keepHead('out'));
  child.stderr.on('data', keepHead('err'));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // the group is gone already
    }
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

  const left = mine();
  let killed = 0;
  if (left.length > 0) {
    const until = timedOut ? end : end + input.settleMs;
    while (now() < until && mine().length > 0) await sleep(POLL_MS);
    killed = await killAll(mine);
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
    killed,
  };
  return out;
}
