/**
 * Faster timers for code in the sandbox, so payloads that wait (a random 15–45 s before acting,
 * a retry every 20 s) act while the run watches. Used by the import/exercise harness, and loaded
 * into every Node process of the sandbox by the runner image's `node` (see
 * sandbox-images/runner/Dockerfile), where it acts only inside npm lifecycle scripts and their
 * children: phonehome's own programs keep real time, and so does the harness, which speeds itself.
 */
import { syncBuiltinESMExports } from 'node:module';
import timers from 'node:timers';
import timersPromises from 'node:timers/promises';

/** The real node binary and this file, as the runner image's `node` starts them. */
export const REAL_NODE = '/usr/local/lib/nodejs/node';
export const CLOCK_PRELOAD = '/opt/agent/clock.js';

/**
 * Delays are compressed: 10 ms stays 10 ms, 30 s becomes 310 ms, anything beyond ~3 min is 2 s.
 */
export function compressDelay(ms: unknown): number {
  const n = typeof ms === 'number' && Number.isFinite(ms) ? Math.max(0, ms) : 0;
  return n <= 10 ? n : Math.min(2000, 10 + (n - 10) / 100);
}

let accelerated = false;

export function accelerateTimers(): void {
  if (accelerated) return;
  accelerated = true;
  type TimerFn = (fn: unknown, ms?: unknown, ...args: unknown[]) => unknown;
  const wrap = (orig: TimerFn): TimerFn =>
    function (this: unknown, fn: unknown, ms?: unknown, ...args: unknown[]) {
      return orig.call(this, fn, compressDelay(ms), ...args);
    };
  const g = globalThis as unknown as Record<string, TimerFn>;
  const t = timers as unknown as Record<string, TimerFn>;
  for (const key of ['setTimeout', 'setInterval'] as const) {
    const fast = wrap(g[key] as TimerFn);
    g[key] = fast;
    t[key] = fast;
  }
  const tp = timersPromises as unknown as Record<
    string,
    (ms?: unknown, ...a: unknown[]) => unknown
  >;
  const origSleep = tp.setTimeout as (ms?: unknown, ...a: unknown[]) => unknown;
  tp.setTimeout = (ms?: unknown, ...a: unknown[]) => origSleep(compressDelay(ms), ...a);
  syncBuiltinESMExports();
}

/** As a preload (`node --import /opt/agent/clock.js`): leave as few traces of itself as it can. */
function asPreload(): void {
  const i = process.execArgv.indexOf('--import');
  if (i < 0 || process.execArgv[i + 1] !== CLOCK_PRELOAD) return;
  process.execArgv.splice(i, 2);
  // Children started with process.execPath go through the image's `node` again.
  process.execPath = '/usr/local/bin/node';
  if (process.env.npm_lifecycle_event) accelerateTimers();
}

asPreload();
