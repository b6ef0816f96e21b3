/**
 * The import and exercise harness: loaded first in a fresh Node process in the sandbox, before the
 * package. It speeds up timers (delayed payloads fire within the phase), loads the package the way
 * a consumer would, and in the exercise phase calls every exported function and constructs every
 * exported class with a few argument shapes.
 *
 * The step's command is `node --input-type=module -e <source>` with the project folder as working
 * directory, so the package is resolved exactly as the project's own code would resolve it:
 *   import { run } from '/opt/agent/harness.js';
 *   await run((n) => import(n));
 * Its input (HarnessInput as JSON) comes in the environment variable HARNESS_INPUT_VAR, removed
 * before the package loads.
 *
 * Runs on the sandbox's Node with built-ins only. It prints one result line, prefixed with the
 * marker the step passes in, on stdout.
 */
import { createRequire } from 'node:module';
import { accelerateTimers } from './clock.js';

export const HARNESS_INPUT_VAR = 'AGENT_INPUT';

export interface HarnessInput {
  mode: 'require' | 'import' | 'exercise';
  name: string;
  /** Prefix of the result line, so the package's own output cannot pass for it. */
  marker: string;
  /** Longest wait on one returned promise. */
  callTimeoutMs?: number;
  maxCalls?: number;
  /** Longest wait, after loading or calling, for what the package left pending. */
  graceMs?: number;
}

export interface HarnessResult {
  loadedWith?: 'require' | 'import';
  loadError?: string;
  functions: number;
  classes: number;
  calls: number;
  threw: number;
  /** Returned promises that did not settle within the bound. */
  pending: number;
}

const NOT_LOADABLE = new Set([
  'ERR_REQUIRE_ESM',
  'ERR_REQUIRE_ASYNC_MODULE',
  'ERR_PACKAGE_PATH_NOT_EXPORTED',
  'ERR_UNSUPPORTED_DIR_IMPORT',
]);

const realSetTimeout = globalThis.setTimeout;
const realClearTimeout = globalThis.clearTimeout;

/** Strings, numbers, objects, a callback: what a caller of an unknown API would pass. */
const ARGUMENT_SHAPES: (() => unknown[])[] = [
  () => [],
  () => ['test'],
  () => [42],
  () => [{}],
  () => [() => undefined],
  () => ['test', {}, () => undefined],
];

function bounded(p: PromiseLike<unknown>, ms: number): Promise<'settled' | 'pending'> {
  return new Promise((resolve) => {
    const timer = realSetTimeout(() => resolve('pending'), ms);
    Promise.resolve(p).then(
      () => {
        realClearTimeout(timer);
        resolve('settled');
      },
      () => {
        realClearTimeout(timer);
        resolve('settled');
      },
    );
  });
}

const isClass = (fn: unknown): boolean =>
  typeof fn === 'function' && /^class[\s{]/.test(Function.prototype.toString.call(fn));

/** Exported functions: the export itself, its properties, and one level of namespaces below. */
function collect(exported: unknown): unknown[] {
  const found = new Set<unknown>();
  const visit = (v: unknown, depth: number) => {
    if (typeof v === 'function') found.add(v);
    if (depth > 1 || v === null || (typeof v !== 'object' && typeof v !== 'function')) return;
    let keys: string[];
    try {
      keys = Object.keys(v);
    } catch {
      return;
    }
    for (const k of keys) {
      let child: unknown;
      try {
        child = (v as Record<string, unknown>)[k];
      } catch {
        continue;
      }
      if (typeof child === 'function') found.add(child);
      else if (child && typeof child === 'object' && depth < 1) visit(child, depth + 1);
    }
  };
  visit(exported, 0);
  return [...found];
}

async function load(
  input: HarnessInput,
  importer: (name: string) => Promise<unknown>,
): Promise<{ exported?: unknown; with?: 'require' | 'import' }> {
  const require = createRequire(`${process.cwd()}/`);
  if (input.mode === 'import') return { exported: await importer(input.name), with: 'import' };
  try {
    return { exported: require(input.name) as unknown, with: 'require' };
  } catch (e) {
    if (input.mode === 'require') throw e;
    // An ESM-only package: exercise what import() gives.
    return { exported: await importer(input.name), with: 'import' };
  }
}

export async function run(importer: (name: string) => Promise<unknown>): Promise<void> {
  const input = JSON.parse(process.env[HARNESS_INPUT_VAR] ?? '') as HarnessInput;
  delete process.env[HARNESS_INPUT_VAR];
  // Before the package loads: timers it creates at import are already fast.
  accelerateTimers();
  const result: HarnessResult = {
    functions: 0,
    classes: 0,
    calls: 0,
    threw: 0,
    pending: 0,
  };
  // The package's stray errors are its own business, not the harness's end.
  process.on('uncaughtException', () => undefined);
  process.on('unhandledRejection', () => undefined);
  const baseline = pendingWork();
  let loaded: Awaited<ReturnType<typeof load>>;
  try {
    loaded = await load(input, importer);
  } catch (e) {
    // Not loadable this way (no entry point, no matching export condition, an ES module with
    // top-level await under require): how the package is built, not a failure of its code.
    const code = (e as { code?: string }).code ?? '';
    const message = (e as Error).message ?? '';
    const own = message.includes(`'${input.name}'`) || message.includes(`"${input.name}"`);
    const notLoadable =
      NOT_LOADABLE.has(code) ||
      ((code === 'MODULE_NOT_FOUND' || code === 'ERR_MODULE_NOT_FOUND') && own);
    if (!notLoadable) throw e;
    loaded = {};
    result.loadError = code;
  }
  if (loaded.with) result.loadedWith = loaded.with;
  if (input.mode === 'exercise') {
    const callTimeoutMs = input.callTimeoutMs ?? 1000;
    const maxCalls = input.maxCalls ?? 400;
    let exported = loaded.exported;
    // An ES module namespace: its default export is what CommonJS consumers would call the module.
    if (exported && typeof exported === 'object' && Symbol.toStringTag in exported) {
      exported = { ...(exported as Record<string, unknown>) };
    }
    const fns = collect(exported);
    for (const fn of fns) {
      if (isClass(fn)) result.classes++;
      else result.functions++;
    }
    outer: for (const fn of fns) {
      for (const shape of ARGUMENT_SHAPES) {
        if (result.calls >= maxCalls) break outer;
        result.calls++;
        const f = fn as (...a: unknown[]) => unknown;
        let value: unknown;
        try {
          value = isClass(fn)
            ? new (f as unknown as new (...a: unknown[]) => unknown)(...shape())
            : f(...shape());
        } catch (e) {
          if (e instanceof TypeError && /class constructor/i.test(e.message)) {
            try {
              value = new (f as unknown as new (...a: unknown[]) => unknown)(...shape());
            } catch {
              result.threw++;
              continue;
            }
          } else {
            result.threw++;
            continue;
          }
        }
        if (value && typeof (value as PromiseLike<unknown>).then === 'function') {
          if ((await bounded(value as PromiseLike<unknown>, callTimeoutMs)) === 'pending')
            result.pending++;
        }
      }
    }
  }
  await quiesce(baseline, input.graceMs ?? 1500);
  // Exit once the line is out (a pipe would cut it otherwise), whatever the package left running.
  process.stdout.write(`\n${input.marker}${JSON.stringify(result)}\n`, () => process.exit(0));
}

/**
 * Work the event loop still has, other than the process's own stdio (touching process.stdout,
 * as colour-detection libraries do, opens a handle that is no sign of pending work).
 */
function pendingWork(): number {
  return process.getActiveResourcesInfo().filter((t) => t !== 'PipeWrap' && t !== 'TTYWrap').length;
}

/**
 * Give timers, sockets and callbacks the package started a moment to run (timers are
 * accelerated, so a delayed payload fires within it), but do not wait when nothing is pending.
 */
async function quiesce(baseline: number, graceMs: number): Promise<void> {
  const until = Date.now() + graceMs;
  for (let polls = 0; ; polls++) {
    // From the second look on, our own poll timer is one of the active resources.
    const active = pendingWork() - (polls > 0 ? 1 : 0);
    if (active <= baseline || Date.now() >= until) return;
    await new Promise((r) => realSetTimeout(r, 20));
  }
}
