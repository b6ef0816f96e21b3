/**
 * The step driver: runs one step (a command) in the sandbox. It stamps the step's start and end on
 * the monotonic clock the capture stamps events with, keeps a bounded head of the output, kills the
 * step's process group at its timeout, then deals with processes the step left behind (detached
 * children): they are watched for the settle window and killed when it ends, so the next step
 * starts clean. Its one line of JSON on stdout is the step's result.
 *
 * Runs on the sandbox's Node with built-ins only; its input is one JSON argument (StepInput).
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

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

const now = (): number => Number(process.hrtime.bigint() / 1000n) / 1000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const POLL_MS = 100;

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** USER_HZ: the unit of /proc/<pid>/stat start times. */
const TICKS_PER_SECOND = 100;
let bootOffsetMs = 0;
let readyTicks = 0;

/**
 * Live processes started by steps: not the sandbox's own, not ourselves or `keep`, not zombies.
 */
function leftovers(keep: Set<number>): Leftover[] {
  const out: Leftover[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === 1 || keep.has(pid)) continue;
    const stat = read(`/proc/${pid}/stat`);
    if (!stat) continue;
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (state === 'Z' || state === 'X') continue;
    const startTicks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    if (startTicks <= readyTicks) continue;
    const cmd = (read(`/proc/${pid}/cmdline`) ?? '').split('\0').filter(Boolean).join(' ');
    out.push({ pid, cmd: cmd.slice(0, 300) });
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
async function killAll(keep: Set<number>): Promise<number> {
  let killed = 0;
  for (let round = 0; round < 50; round++) {
    const list = leftovers(keep);
    if (list.length === 0) break;
    if (round === 0) killed = list.length;
    signalAll(list, 'SIGSTOP');
    signalAll(leftovers(keep), 'SIGKILL');
    await sleep(20);
  }
  return killed;
}

async function main(): Promise<void> {
  const input = JSON.parse(process.argv[2] ?? '') as StepInput;
  const keep = new Set([process.pid, ...input.keepPids]);
  // Start times count from boot; the sandbox-ready time is on the monotonic clock.
  bootOffsetMs = now() - Number((read('/proc/uptime') ?? '0').split(' ')[0]) * 1000;
  readyTicks = Math.floor(((input.sandboxReadyMs - bootOffsetMs) * TICKS_PER_SECOND) / 1000);
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

  const left = leftovers(keep);
  let killed = 0;
  if (left.length > 0) {
    const until = timedOut ? end : end + input.settleMs;
    while (now() < until && leftovers(keep).length > 0) await sleep(POLL_MS);
    killed = await killAll(keep);
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
  // Exit only once the line is written: through a pipe, exiting at once would cut it at 64 KiB.
  process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(0));
}

void main();
