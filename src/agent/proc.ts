/**
 * Reading the sandbox's processes from /proc, for the observer and the step driver. Both run as
 * root with only the capabilities they need (SYS_PTRACE and DAC_READ_SEARCH to read another
 * user's /proc entries, KILL, SETUID/SETGID to start steps as the package's user); the package
 * runs as an unprivileged uid and can neither signal, trace nor open them. Node built-ins only.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';

/** USER_HZ: the unit of /proc/<pid>/stat start times on Linux. */
const TICKS_PER_SECOND = 100;
const CMD_MAX = 300;

/**
 * Show this agent in the process list as a program a machine runs (`ps`, `/proc/<pid>/cmdline`
 * and `comm`, which every process can read), not as node running phonehome's files: its command
 * line (in the space node's own took) and its name.
 */
export function disguise(title: string, name: string): void {
  try {
    process.title = title;
  } catch {
    // Kept as it was.
  }
  try {
    writeFileSync('/proc/self/comm', name);
  } catch {
    // Kept as it was.
  }
}

/** The batch driver's title and name: on a machine, the shell the user typed the command in. */
export const DRIVER_TITLE = ['-bash', 'bash'] as const;

/** CLOCK_MONOTONIC in ms: the clock the capture stamps events with. */
export const monotonicMs = (): number => Number(process.hrtime.bigint() / 1000n) / 1000;

export function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

export function pids(): number[] {
  return readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .map(Number);
}

export interface ProcStat {
  /** R, S, D, Z, … */
  state: string;
  ppid: number;
  /** Process start on CLOCK_MONOTONIC, ms (10 ms resolution). */
  startMs: number;
}

/**
 * Start times in /proc count from boot (CLOCK_BOOTTIME); events use CLOCK_MONOTONIC. The offset
 * between the two, read once per process.
 */
let bootOffsetMs: number | undefined;
function bootOffset(): number {
  bootOffsetMs ??= monotonicMs() - Number((read('/proc/uptime') ?? '0').split(' ')[0]) * 1000;
  return bootOffsetMs;
}

/** The real, effective, saved and filesystem uids of a process. */
export function uids(pid: number): number[] | undefined {
  const m = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(read(`/proc/${pid}/status`) ?? '');
  return m ? m.slice(1, 5).map(Number) : undefined;
}

/**
 * Whether any thread of the process still runs. A thread-group leader that exited with SYS_exit
 * shows as a zombie while its other threads live on; only when every thread is a zombie is the
 * process gone.
 */
export function liveThreads(pid: number): boolean {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return false;
  }
  return tids.some((tid) => {
    const text = read(`/proc/${pid}/task/${tid}/stat`);
    const state = text ? text.slice(text.lastIndexOf(')') + 2, text.lastIndexOf(')') + 3) : 'X';
    return state !== 'Z' && state !== 'X';
  });
}

export function stat(pid: number): ProcStat | undefined {
  const text = read(`/proc/${pid}/stat`);
  if (!text) return undefined;
  // Fields after the command name, which may itself hold spaces and parentheses.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return {
    state: rest[0] ?? '',
    ppid: Number(rest[1]),
    startMs: Math.round((Number(rest[19]) * 1000) / TICKS_PER_SECOND + bootOffset()),
  };
}

/**
 * A per-process file (cmdline, environ) of `pid`, or of one of its live threads when the leader
 * is a zombie (its own copy is empty then).
 */
export function readOf(pid: number, file: string): string {
  const own = read(`/proc/${pid}/${file}`);
  if (own) return own;
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return '';
  }
  for (const tid of tids) {
    const text = read(`/proc/${pid}/task/${tid}/${file}`);
    if (text) return text;
  }
  return '';
}

/** Command line, arguments joined by spaces, at most 300 characters. */
export function cmdline(pid: number): string {
  const argv = readOf(pid, 'cmdline').split('\0').filter(Boolean);
  return argv.join(' ').slice(0, CMD_MAX);
}
