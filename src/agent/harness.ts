/**
 * The import and exercise harness: loaded first in a fresh Node process in the sandbox, before the
 * package. It loads the package the way a consumer would, in the exercise phase calls every
 * exported function and constructs every exported class with a few argument shapes, and then
 * keeps the process for the first minutes of its life on the sandbox's virtual clock (see
 * clock.ts), so what the package scheduled (unref'd timers and workers included) acts in the
 * phase.
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
import { createHook } from 'node:async_hooks';
import { createRequire } from 'node:module';
import { virtualMs } from './clock.js';

export const HARNESS_INPUT_VAR = 'AGENT_INPUT';

export interface HarnessInput {
  mode: 'require' | 'import' | 'exercise';
  name: string;
  /** Prefix of the result line, so the package's own output cannot pass for it. */
  marker: string;
  /** Longest wait on one returned promise (wall-clock ms). */
  callTimeoutMs?: number;
  maxCalls?: number;
  /** No call is started after this much wall-clock time of calling (ms). */
  callBudgetMs?: number;
  /** Longest wait, after loading or calling, for sockets and callbacks left pending (wall-clock ms). */
  graceMs?: number;
  /**
   * The host name passed wherever an argument could name a host (see argumentShapes): made per
   * run, so an attempt to it can only be the package doing what its caller asked.
   */
  callerHost?: string;
}

export interface HarnessResult {
  loadedWith?: 'require' | 'import';
  loadError?: string;
  functions: number;
  classes: number;
  calls: number;
  /** Methods of what the calls returned (instances, clients, promised objects) that were called. */
  methods: number;
  threw: number;
  /** Returned promises that did not settle within the bound. */
  pending: number;
  /** Events emitted on emitters the package exported or gave back (`ready`, `connect`, …). */
  emitted: number;
  /** Steps taken through iterators (async ones included) that calls gave back. */
  iterated: number;
}

const NOT_LOADABLE = new Set([
  'ERR_REQUIRE_ESM',
  'ERR_REQUIRE_ASYNC_MODULE',
  'ERR_PACKAGE_PATH_NOT_EXPORTED',
  'ERR_UNSUPPORTED_DIR_IMPORT',
]);

const realSetTimeout = globalThis.setTimeout;
const realClearTimeout = globalThis.clearTimeout;

/**
 * How much of the process's life on the virtual clock the harness waits for the package's timers
 * and workers: 3 virtual minutes (3.6 s of wall time).
 */
export const LIFE_MS = 3 * 60_000;

/** A timer or worker the package started, and when (virtual ms since the process started) it is due. */
interface Scheduled {
  due: number;
  interval?: boolean;
  worker?: boolean;
}

/**
 * Every timer and worker the package creates, unref'd ones included (the event loop does not
 * count those, so `getActiveResourcesInfo` does not show them), until it fires or is cleared.
 */
class Schedule {
  private readonly live = new Map<number, Scheduled>();
  private own = false;
  private readonly hook = createHook({
    init: (id, type, _trigger, resource) => {
      if (this.own) return;
      if (type === 'Timeout') {
        const t = resource as { _idleTimeout?: unknown; _repeat?: unknown };
        const after = typeof t._idleTimeout === 'number' ? Math.max(1, t._idleTimeout) : 1;
        const interval = typeof t._repeat === 'number' && t._repeat > 0;
        this.live.set(id, { due: performance.now() + after, ...(interval ? { interval } : {}) });
      } else if (type === 'WORKER') {
        this.live.set(id, { due: performance.now(), worker: true });
      }
    },
    destroy: (id) => void this.live.delete(id),
  });

  start(): void {
    this.hook.enable();
  }

  /** A timer of the harness itself, not counted. */
  timer(fn: () => void, virtualDelay: number): ReturnType<typeof setTimeout> {
    this.own = true;
    try {
      return realSetTimeout(fn, virtualDelay);
    } finally {
      this.own = false;
    }
  }

  /**
   * The next moment something the package scheduled acts (now, for a live worker). An interval
   * counts until its first tick: a cache's cleanup every 30 s would otherwise hold every process
   * for the whole window.
   */
  next(now: number): number | undefined {
    let first: number | undefined;
    for (const s of this.live.values()) {
      const at = s.worker ? now : s.due;
      if (s.interval && at < now) continue;
      if (first === undefined || at < first) first = at;
    }
    return first;
  }
}

/**
 * Strings, numbers, objects, a callback: what a caller of an unknown API would pass. Where a
 * value could name a host (a string, a URL, an options object's host or url), it names the run's
 * caller host; a client told to connect there is doing as asked.
 */
export function argumentShapes(host: string): (() => unknown[])[] {
  return [
    () => [],
    () => [host],
    () => [42],
    () => [{}],
    () => [() => undefined],
    () => [`https://${host}/v1/items`],
    () => [host, { host, url: `https://${host}/` }, () => undefined],
  ];
}

function bounded(
  schedule: Schedule,
  p: PromiseLike<unknown>,
  wallMs: number,
): Promise<{ state: 'settled' | 'pending'; value?: unknown }> {
  return new Promise((resolve) => {
    const timer = schedule.timer(() => resolve({ state: 'pending' }), virtualMs(wallMs));
    Promise.resolve(p).then(
      (value) => {
        realClearTimeout(timer);
        resolve({ state: 'settled', value });
      },
      () => {
        realClearTimeout(timer);
        resolve({ state: 'settled' });
      },
    );
  });
}

/** Prototypes of the platform: their methods are Node's, not the package's. */
const PLATFORM_PROTOTYPES = new Set<unknown>(
  [Object, Function, Array, Promise, Map, Set, WeakMap, Error, Date, RegExp, Uint8Array].map(
    (c) => c.prototype,
  ),
);
/** A property's own value, without running a getter or failing on a hostile object. */
function ownValue(o: object, k: string | symbol): unknown {
  try {
    const d = Object.getOwnPropertyDescriptor(o, k);
    return d && 'value' in d ? d.value : undefined;
  } catch {
    return undefined;
  }
}

/** A data property found on `o` or its prototypes (16 at most), without running getters. */
function inherited(o: object, k: string | symbol): unknown {
  try {
    let p: object | null = o;
    for (let depth = 0; p && depth < 16; depth++) {
      const v = ownValue(p, k);
      if (v !== undefined) return v;
      p = Object.getPrototypeOf(p) as object | null;
    }
  } catch {
    // A hostile object: nothing found.
  }
  return undefined;
}

/**
 * Events a client, server or stream acts on when its work begins or data arrives: emitted on the
 * emitters the package exports or gives back (with whatever else they listen for), as the network
 * would emit them. Never `error` (an emitter with no listener for it throws).
 */
export const LIFECYCLE_EVENTS = [
  'ready',
  'connect',
  'connected',
  'open',
  'listening',
  'start',
  'online',
  'data',
  'message',
  'response',
  'end',
  'close',
];
const NOT_EMITTED = new Set(['error', 'newListener', 'removeListener']);
/** At most this many events are emitted on one emitter. */
const EVENTS_PER_EMITTER = 16;

/** What an emitter listens for, for emitting: its registered events first, then the lifecycle ones. */
function eventsOf(emitter: object): string[] {
  const names = new Set<string>();
  const list = inherited(emitter, 'eventNames');
  if (typeof list === 'function') {
    try {
      const got = Reflect.apply(list, emitter, []) as unknown;
      if (Array.isArray(got))
        for (const n of got.slice(0, EVENTS_PER_EMITTER))
          if (typeof n === 'string' && !NOT_EMITTED.has(n)) names.add(n);
    } catch {
      // Its own events stay unknown; the lifecycle ones are still emitted.
    }
  }
  for (const n of LIFECYCLE_EVENTS) names.add(n);
  return [...names].slice(0, EVENTS_PER_EMITTER);
}

/** An EventEmitter or anything shaped like one: `on` and `emit` as functions. */
const isEmitter = (v: object): boolean =>
  typeof inherited(v, 'emit') === 'function' && typeof inherited(v, 'on') === 'function';

/** Steps taken through one iterator a call gave back. */
const STEPS_PER_ITERATOR = 3;

/** `then` as an own or inherited data property: a promise-like, found without running getters. */
function isThenable(v: unknown): boolean {
  if (!v || (typeof v !== 'object' && typeof v !== 'function')) return false;
  try {
    if (v instanceof Promise) return true;
    let p: object | null = v as object;
    for (let depth = 0; p && depth < 16; depth++) {
      if (typeof ownValue(p, 'then') === 'function') return true;
      p = Object.getPrototypeOf(p) as object | null;
    }
  } catch {
    // A hostile object: not awaited, not looked into.
  }
  return false;
}

const platformPrototype = (proto: object): boolean => {
  if (PLATFORM_PROTOTYPES.has(proto)) return true;
  const ctor = ownValue(proto, 'constructor');
  // EventEmitter, streams and the other classes of Node's own library.
  return typeof ctor === 'function' && NODE_CLASSES.has(ctor);
};
const NODE_CLASSES = new Set<unknown>();
for (const m of ['events', 'stream', 'net', 'http', 'https', 'tls', 'dgram', 'worker_threads'])
  try {
    for (const v of Object.values(createRequire(import.meta.url)(m) as Record<string, unknown>))
      if (typeof v === 'function') NODE_CLASSES.add(v);
  } catch {
    // A module the sandbox's Node lacks adds nothing.
  }

/** At most this many methods of one returned object are called. */
const METHODS_PER_OBJECT = 40;

/**
 * The methods of an object a call returned (an instance, a client, a promised result): its own
 * function properties and its prototypes' up to the platform's, and those of the plain objects it
 * holds one level down (a client's `customers`, `messages`, …). Getters are not run.
 */
function methodsOf(obj: object): { fn: unknown; self: object }[] {
  const out: { fn: unknown; self: object }[] = [];
  const seen = new Set<unknown>();
  // Bounds against an object built to be endless (a Proxy with a new prototype at every step).
  let keys = 0;
  const visit = (o: object, nested: boolean) => {
    let p: object | null = o;
    for (let depth = 0; p && depth < 16 && out.length < METHODS_PER_OBJECT; depth++) {
      if (platformPrototype(p)) return;
      let names: (string | symbol)[];
      try {
        names = Reflect.ownKeys(p);
      } catch {
        return;
      }
      for (const k of names) {
        if (++keys > 1000 || out.length >= METHODS_PER_OBJECT) return;
        if (k === 'constructor' || typeof k === 'symbol') continue;
        const v = ownValue(p, k);
        if (typeof v === 'function' && !seen.has(v)) {
          seen.add(v);
          out.push({ fn: v, self: o });
        } else if (!nested && v && typeof v === 'object' && p === o && !Array.isArray(v))
          visit(v as object, true);
      }
      if (nested) return;
      try {
        p = Object.getPrototypeOf(p) as object | null;
      } catch {
        return;
      }
    }
  };
  visit(obj, false);
  return out;
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
  // Before the package loads: timers it creates at import are seen.
  const schedule = new Schedule();
  schedule.start();
  const result: HarnessResult = {
    functions: 0,
    classes: 0,
    calls: 0,
    methods: 0,
    threw: 0,
    pending: 0,
    emitted: 0,
    iterated: 0,
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
  if (input.mode === 'exercise') await exercise(input, loaded.exported, schedule, result);
  await quiesce(schedule, baseline, input.graceMs ?? 1500);
  // A process that ends on its own emits 'beforeExit' once its loop is empty; the harness ends it
  // with exit(), so what the package left for that moment is given its moment here.
  if (process.listenerCount('beforeExit') > 0) {
    result.emitted++;
    try {
      process.emit('beforeExit', 0);
    } catch {
      // A listener that throws ends only itself.
    }
    await quiesce(schedule, baseline, input.graceMs ?? 1500);
  }
  // Exit once the line is out (a pipe would cut it otherwise), whatever the package left running.
  process.stdout.write(`\n${input.marker}${JSON.stringify(result)}\n`, () => process.exit(0));
}

/** How deep the exercise goes into what calls give back: an export's result, and its methods' results. */
const MAX_LEVEL = 2;

type Work =
  /** A function or class: an export (level 0) or a method of an object found at `level`. */
  | { kind: 'call'; fn: unknown; self?: object; level: number }
  /** The lifecycle events of an emitter, emitted once its methods have been called. */
  | { kind: 'emit'; target: object }
  /** A few steps through the iterator an object gives. */
  | { kind: 'iterate'; target: object; iterator: unknown; async: boolean };

/**
 * Calls every export with every argument shape, then, breadth first, what they give back: the
 * methods of the first object each export returns, the methods of the first object each of those
 * methods returns (MAX_LEVEL), lifecycle events on every emitter among them (and on an exported
 * emitter), and a few steps of every iterator they give (a generator's body runs only then).
 */
async function exercise(
  input: HarnessInput,
  loadedExport: unknown,
  schedule: Schedule,
  result: HarnessResult,
): Promise<void> {
  const callTimeoutMs = input.callTimeoutMs ?? 1000;
  const maxCalls = input.maxCalls ?? 400;
  let exported = loadedExport;
  // An ES module namespace: its default export is what CommonJS consumers would call the module.
  if (exported && typeof exported === 'object' && Symbol.toStringTag in exported) {
    exported = { ...(exported as Record<string, unknown>) };
  }
  const shapes = argumentShapes(input.callerHost ?? 'test');
  const deadline = performance.now() + virtualMs(input.callBudgetMs ?? 20_000);
  // Methods get fewer shapes: none, a host, an object, and the mix.
  const methodShapes = [0, 1, 3, 6].map((i) => shapes[i] as (typeof shapes)[number]);
  const fns = collect(exported);
  for (const fn of fns) {
    if (isClass(fn)) result.classes++;
    else result.functions++;
  }
  const queue: Work[] = fns.map((fn) => ({ kind: 'call', fn, level: 0 }));
  const looked = new WeakSet<object>();
  const lookAt = (v: object, level: number) => {
    looked.add(v);
    if (typeof v === 'function') {
      queue.push({ kind: 'call', fn: v, level });
      return;
    }
    for (const m of methodsOf(v)) queue.push({ kind: 'call', ...m, level });
    if (isEmitter(v)) queue.push({ kind: 'emit', target: v });
    // The platform's collections hold data, not the package's code.
    try {
      if (Array.isArray(v) || ArrayBuffer.isView(v) || v instanceof Map || v instanceof Set) return;
    } catch {
      return;
    }
    const asyncIt = inherited(v, Symbol.asyncIterator);
    const syncIt = inherited(v, Symbol.iterator);
    if (typeof asyncIt === 'function')
      queue.push({ kind: 'iterate', target: v, iterator: asyncIt, async: true });
    else if (typeof syncIt === 'function')
      queue.push({ kind: 'iterate', target: v, iterator: syncIt, async: false });
  };
  // An exported emitter (a module that is a client, a bus) gets its events too.
  for (const v of [
    exported,
    ...(exported && typeof exported === 'object' ? valuesOf(exported) : []),
  ])
    if (v && typeof v === 'object' && !looked.has(v) && isEmitter(v)) {
      looked.add(v);
      queue.push({ kind: 'emit', target: v });
    }
  // One object per function is looked into: the first one a call of it gives back.
  const expandedFrom = new Set<unknown>();
  const expand = (from: unknown, v: unknown, level: number) => {
    if (level > MAX_LEVEL || expandedFrom.has(from)) return;
    if (!v || (typeof v !== 'object' && typeof v !== 'function') || looked.has(v)) return;
    if (isThenable(v) || fns.includes(v)) return;
    expandedFrom.add(from);
    lookAt(v, level);
  };
  const out = () => result.calls >= maxCalls || performance.now() > deadline;
  /** A value that may be a promise, settled within the bound: undefined when it did not settle. */
  const settle = async (value: unknown): Promise<{ value?: unknown } | undefined> => {
    if (!isThenable(value)) return { value };
    const r = await bounded(schedule, value as PromiseLike<unknown>, callTimeoutMs);
    if (r.state === 'pending') {
      result.pending++;
      return undefined;
    }
    return { value: r.value };
  };
  // A method that ends the process (a CLI object's parse(), say) would end the exercise with it:
  // while calling, process.exit() runs its 'exit' listeners and returns. Node's exit() ends in
  // reallyExit; process.exit itself stays Node's own function.
  const proc = process as unknown as { reallyExit: (code?: number) => void };
  const reallyExit = proc.reallyExit;
  proc.reallyExit = () => undefined;
  try {
    for (let i = 0; i < queue.length && !out(); i++) {
      const work = queue[i] as Work;
      if (work.kind === 'emit') {
        for (const event of eventsOf(work.target)) {
          if (out()) break;
          result.calls++;
          result.emitted++;
          try {
            Reflect.apply(
              inherited(work.target, 'emit') as (...a: unknown[]) => unknown,
              work.target,
              [event],
            );
          } catch {
            result.threw++;
          }
        }
        continue;
      }
      if (work.kind === 'iterate') {
        let it: unknown;
        try {
          it = Reflect.apply(work.iterator as () => unknown, work.target, []);
        } catch {
          result.threw++;
          continue;
        }
        const next = it && typeof it === 'object' ? inherited(it, 'next') : undefined;
        if (typeof next !== 'function') continue;
        for (let step = 0; step < STEPS_PER_ITERATOR && !out(); step++) {
          result.calls++;
          result.iterated++;
          let r: { value?: unknown } | undefined;
          try {
            r = await settle(Reflect.apply(next as () => unknown, it, []));
          } catch {
            result.threw++;
            break;
          }
          const done = r?.value && typeof r.value === 'object' ? ownValue(r.value, 'done') : true;
          if (!r || done !== false) break;
        }
        continue;
      }
      const { fn, self, level } = work;
      if (level > 0) result.methods++;
      for (const shape of level > 0 ? methodShapes : shapes) {
        if (out()) break;
        result.calls++;
        const f = fn as (...a: unknown[]) => unknown;
        let value: unknown;
        try {
          value = isClass(fn)
            ? new (f as unknown as new (...a: unknown[]) => unknown)(...shape())
            : Reflect.apply(f, self, shape());
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
        const r = await settle(value);
        if (r) expand(fn, r.value, level + 1);
      }
    }
  } finally {
    proc.reallyExit = reallyExit;
    process.exitCode = 0;
  }
}

/** The own enumerable data values of an object, without running getters. */
function valuesOf(o: object): unknown[] {
  let keys: string[];
  try {
    keys = Object.keys(o);
  } catch {
    return [];
  }
  return keys.slice(0, 1000).map((k) => ownValue(o, k));
}

/**
 * Work the event loop still has, other than the process's own stdio (touching process.stdout,
 * as colour-detection libraries do, opens a handle that is no sign of pending work).
 */
function pendingWork(): number {
  return process.getActiveResourcesInfo().filter((t) => t !== 'PipeWrap' && t !== 'TTYWrap').length;
}

/**
 * Let what the package started act: its timers and workers for the first LIFE_MS of the process
 * on the virtual clock, its sockets and callbacks for `graceMs` of wall time; no wait when nothing
 * is pending.
 */
async function quiesce(schedule: Schedule, baseline: number, graceMs: number): Promise<void> {
  const graceEnd = performance.now() + virtualMs(graceMs);
  for (let polls = 0; ; polls++) {
    const now = performance.now();
    // From the second look on, our own poll timer is one of the active resources.
    const busy = pendingWork() - (polls > 0 ? 1 : 0) > baseline;
    const next = schedule.next(now);
    const waiting = next !== undefined && next <= LIFE_MS;
    if (!waiting && (!busy || now >= graceEnd)) return;
    if (now >= Math.max(graceEnd, LIFE_MS)) return;
    // Wake when the next timer is due (or soon, to see sockets close); 20 ms of wall time at most.
    const wait = Math.min(virtualMs(20), Math.max(1, (next ?? Infinity) - now + 1));
    await new Promise<void>((r) => schedule.timer(r, wait));
  }
}
