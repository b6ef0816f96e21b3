/**
 * The harness's channel to the step driver, and the driver's side of it.
 *
 * A harness step (a load or the exercise of a package, see harness.ts) is started by the step
 * driver with a pipe on PROGRESS_FD and a nonce on its standard input. The harness reads the
 * nonce before the package loads and starts every line it writes on the pipe with it: the work
 * item it starts (exercise), CALLS_DONE once the calls are over, and its result. The package runs
 * in the same process and can write to the pipe, but not under the nonce; its stdout carries
 * nothing the driver reads. The result reaches the host in the driver's own step result, on the
 * engine's exec stream.
 *
 * The exercise is started again (RESUMES_MAX times at most) past the work item in which the
 * package ended it (exit, a signal, a crash the guards did not catch) or kept it from going on (a
 * call that never returns), so one export that kills or hangs its process does not keep the rest
 * of the package from being called. The driver is the supervisor: no second node process per
 * exercise, and the exercise's process is a child of the driver like every other step's.
 *
 * Node built-ins only; the times here are the kernel's (the driver keeps the wall clock, the
 * harness runs on the virtual one).
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { CLOCK_SPEED } from './clock.js';
import type { HarnessResult } from './harness.js';
import { monotonicMs as now } from './proc.js';

/** The harness's input (HarnessInput as JSON), in the step's environment; it removes it. */
export const HARNESS_INPUT_VAR = 'AGENT_INPUT';
/** The descriptor the harness writes its lines on. */
export const PROGRESS_FD = 3;
/** Said on PROGRESS_FD once the calls are over (what follows is the wait for what they started). */
export const CALLS_DONE = '-';
/** Starts the harness's result line on PROGRESS_FD. */
export const RESULT = 'R';
/** Times the exercise starts again after the package ended or stalled it. */
export const RESUMES_MAX = 3;
/**
 * How much of the process's life on the virtual clock the harness waits for the package's timers
 * and workers: 3 virtual minutes (3.6 s of wall time).
 */
export const LIFE_MS = 3 * 60_000;
/** The longest line the harness writes: a work item's key, or its result. */
const LINE_MAX = 65_536;
/** How long what an attempt wrote before it exited may take to arrive (a grandchild may hold the pipes). */
const DRAIN_MS = 100;

/** What the harness's input says that the supervision needs (see HarnessInput). */
interface Input {
  mode?: unknown;
  callBudgetMs?: unknown;
  callTimeoutMs?: unknown;
  graceMs?: unknown;
  stallMs?: unknown;
  skip?: unknown;
}

export interface Supervised {
  code: number | null;
  signal: string | null;
  error: string | null;
  /**
   * The harness's result as the attempt that got through said it under the nonce (its counts,
   * not those of earlier attempts), known fields only, bounded (display only: the package runs in
   * that process).
   */
  result?: HarnessResult | undefined;
  /** Times the exercise was started again past a work item that ended or stalled it. */
  resumed?: number;
}

/**
 * A result's known fields, bounded and typed: what the driver passes on from the harness's
 * channel and what the host reads of it (src/run/steps.ts parseHarness), the same both sides.
 */
export function harnessResult(v: unknown): HarnessResult | undefined {
  if (!v || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  const n = (k: string) =>
    typeof o[k] === 'number' && Number.isFinite(o[k]) ? Math.max(0, Math.floor(o[k] as number)) : 0;
  const names = Array.isArray(o.interfered)
    ? // Names of built-ins only: the harness's own names, which the package could rewrite.
      o.interfered
        .filter((x): x is string => typeof x === 'string' && /^[\w.[\] ]{1,48}$/.test(x))
        .slice(0, 8)
    : [];
  return {
    functions: n('functions'),
    classes: n('classes'),
    calls: n('calls'),
    methods: n('methods'),
    threw: n('threw'),
    pending: n('pending'),
    emitted: n('emitted'),
    iterated: n('iterated'),
    ...(o.loadedWith === 'require' || o.loadedWith === 'import'
      ? { loadedWith: o.loadedWith }
      : {}),
    ...(typeof o.loadError === 'string' ? { loadError: o.loadError.slice(0, 64) } : {}),
    ...(names.length ? { interfered: names } : {}),
    ...(n('uncalled') > 0 ? { uncalled: n('uncalled') } : {}),
  };
}

/** One attempt's process: started with the environment given, stdio as `['pipe', 'pipe', 'pipe', 'pipe']`. */
export type Starter = (env: Record<string, string | undefined>) => ChildProcess;

interface Attempt {
  code: number | null;
  signal: string | null;
  error: string | null;
  result?: Record<string, unknown>;
  /** The last work item named, unless the attempt was stopped while it waited after its calls. */
  last?: string;
}

const num = (v: unknown, d: number) => (typeof v === 'number' && Number.isFinite(v) ? v : d);

/**
 * Run a harness step: once (a load), or as an exercise started again past what ended or stalled
 * it. `stopped` says the step's own bound ended it (no attempt is started after that); `out` and
 * `err` get what each attempt printed.
 */
export async function superviseHarness(
  start: Starter,
  env: Record<string, string | undefined>,
  o: {
    stopped: () => boolean;
    out: (d: Buffer) => void;
    err: (d: Buffer) => void;
    /** Ends what an attempt left running before the next one starts (the package's processes). */
    between?: () => Promise<unknown>;
  },
): Promise<Supervised> {
  let input: Input;
  try {
    input = JSON.parse(env[HARNESS_INPUT_VAR] ?? '') as Input;
  } catch {
    return { code: null, signal: null, error: 'the harness step has no input' };
  }
  if (!input || typeof input !== 'object')
    return { code: null, signal: null, error: 'the harness step has no input' };
  if (input.mode !== 'exercise') {
    const a = await attempt(start, env, o, undefined);
    return {
      code: a.code,
      signal: a.signal,
      error: a.error,
      ...(a.result ? { result: harnessResult(a.result) } : {}),
    };
  }
  const started = now();
  const budget = num(input.callBudgetMs, 20_000);
  // A call gets its promise's bound; a piece without a word for three times that and 2 s (5 s at
  // least: a busy machine, a synchronous call that works a while) stalled.
  const stallMs = num(input.stallMs, Math.max(5000, 3 * num(input.callTimeoutMs, 1000) + 2000));
  // After the calls the harness waits for what they started (LIFE_MS and the grace, a few rounds
  // of beforeExit): past that it is stopped.
  const afterCallsMs = LIFE_MS / CLOCK_SPEED + 4 * num(input.graceMs, 1500) + 2000;
  // However often it starts again, the whole exercise ends by then: the calls' budget and one
  // wait after them (the commands the package installs get the rest of the phase).
  const deadline = started + budget + afterCallsMs;
  const skip: string[] = Array.isArray(input.skip)
    ? input.skip.filter((k): k is string => typeof k === 'string')
    : [];
  let resumed = 0;
  let last: Attempt = { code: null, signal: null, error: null };
  for (let round = 0; round <= RESUMES_MAX && !o.stopped(); round++) {
    if (round > 0) {
      // Nothing of the attempt before (a watcher that kills each new process) outlives it.
      await o.between?.();
      if (o.stopped() || now() >= started + budget) break;
    }
    const remaining = Math.max(0, budget - (now() - started));
    const a = await attempt(
      start,
      {
        ...env,
        [HARNESS_INPUT_VAR]: JSON.stringify({
          ...input,
          skip,
          callBudgetMs: Math.floor(remaining),
        }),
      },
      o,
      { stallMs, afterCallsMs, deadline },
    );
    last = a;
    if (a.result) {
      return {
        code: a.code,
        signal: a.signal,
        error: a.error,
        result: harnessResult(a.result),
        ...(resumed ? { resumed } : {}),
      };
    }
    // Ended before any piece: nothing to start again past. Ended after its calls were done:
    // nothing left to call.
    if (a.last === undefined || round === RESUMES_MAX || skip.includes(a.last)) break;
    skip.push(a.last);
    resumed++;
  }
  // No attempt got through: no result (the step says the package ended the exercise), and how
  // often it was started again.
  return {
    code: last.code,
    signal: last.signal,
    error: last.error,
    ...(resumed ? { resumed } : {}),
  };
}

/**
 * One process of a harness step: its result and the last work item it started, as it says them
 * on PROGRESS_FD under the nonce it read on its stdin before the package loaded; the result counts
 * only when the process then exits 0 of itself. With `watch` (the exercise), a process that says
 * nothing for `stallMs`, or waits more than `afterCallsMs` after its calls, is killed.
 */
function attempt(
  start: Starter,
  env: Record<string, string | undefined>,
  o: { out: (d: Buffer) => void; err: (d: Buffer) => void },
  watch: { stallMs: number; afterCallsMs: number; deadline: number } | undefined,
): Promise<Attempt> {
  return new Promise((resolve) => {
    const nonce = randomBytes(12).toString('hex');
    let c: ChildProcess;
    try {
      c = start(env);
    } catch (e) {
      resolve({ code: null, signal: null, error: (e as Error).message });
      return;
    }
    c.stdin?.on('error', () => undefined);
    c.stdin?.end(`${nonce}\n`);
    let last: string | undefined;
    let doneAt: number | undefined;
    let said = now();
    let pending = '';
    let result: Record<string, unknown> | undefined;
    c.stdout?.on('data', o.out);
    c.stderr?.on('data', o.err);
    const channel = c.stdio[PROGRESS_FD];
    channel?.on('error', () => undefined);
    channel?.on('data', (d: Buffer) => {
      pending += d.toString('latin1');
      // A line longer than any key or result is not the harness's: dropped.
      if (pending.length > LINE_MAX && !pending.includes('\n')) pending = '';
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const raw of lines) {
        // Only the harness's lines: the package can write to the descriptor, not the nonce.
        // What it wrote without a newline before a line of the harness's does not spoil it.
        const at = raw.lastIndexOf(`${nonce} `);
        if (at < 0) continue;
        const line = raw.slice(at + nonce.length + 1);
        said = now();
        if (line === CALLS_DONE) doneAt ??= now();
        else if (line.startsWith(`${RESULT} `)) {
          try {
            const v: unknown = JSON.parse(line.slice(RESULT.length + 1));
            result =
              v && typeof v === 'object' && !Array.isArray(v) ? (v as typeof result) : undefined;
          } catch {
            result = undefined;
          }
        } else if (line.length <= 512 && doneAt === undefined) {
          last = line;
        }
      }
    });
    const timer = watch
      ? setInterval(() => {
          const late =
            doneAt === undefined
              ? now() - said > watch.stallMs
              : now() - doneAt > watch.afterCallsMs;
          if (late || now() > watch.deadline) c.kill('SIGKILL');
        }, 100)
      : undefined;
    const closed = Promise.all(
      [c.stdout, c.stderr, channel].map(
        (s) => new Promise<void>((r) => (s ? s.once('close', () => r()) : r())),
      ),
    );
    let ended = false;
    const end = (a: Omit<Attempt, 'result' | 'last'>) => {
      if (ended) return;
      ended = true;
      clearInterval(timer);
      resolve({
        ...a,
        ...(a.code === 0 && a.signal === null && result ? { result } : {}),
        // Ended (or stopped) once its calls were done: nothing left to call, not started again.
        ...(last !== undefined && doneAt === undefined ? { last } : {}),
      });
    };
    c.on('error', (e) => end({ code: null, signal: null, error: e.message }));
    // 'exit', not 'close': a detached grandchild holding the pipes would keep them open; what the
    // process wrote before it exited is read within a short drain.
    c.on('exit', (code, signal) => {
      void Promise.race([closed, new Promise((r) => setTimeout(r, DRAIN_MS))]).then(() =>
        end({ code, signal, error: null }),
      );
    });
  });
}
