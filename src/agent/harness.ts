/**
 * The import and exercise harness: loaded first in a fresh Node process in the sandbox, before the
 * package. It loads the package the way a consumer would, in the exercise phase calls every
 * exported function and constructs every exported class with a few argument shapes, and what
 * they give back in turn (methods, events, iterators; see exercise()), and then
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
 * It is started by the step driver, which reads its progress and result on a channel of their
 * own and starts an exercise again past a call that ended or stalled it (see supervise.ts).
 *
 * Runs on the sandbox's Node with built-ins only. Its stdout is the package's: it says nothing
 * there.
 */
import { createHook } from 'node:async_hooks';
import { readFileSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { inspect, types } from 'node:util';
import { virtualMs } from './clock.js';
import { CALLS_DONE, HARNESS_INPUT_VAR, LIFE_MS, PROGRESS_FD, RESULT } from './supervise.js';

export { HARNESS_INPUT_VAR, LIFE_MS };

export interface HarnessInput {
  mode: 'require' | 'import' | 'exercise';
  name: string;
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
  /**
   * Set by the step driver when it starts an exercise again: the work items (see Work) not to
   * start, because a process of this exercise died or stalled in them.
   */
  skip?: string[];
  /** A work item without a word for this long (wall-clock ms) stalled (default: three times the call bound and 2 s, 5 s at least). */
  stallMs?: number;
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
  /** Built-ins the harness relies on that the package replaced (see keepIntrinsics). */
  interfered?: string[];
  /** Exports never called because the exports' share of the calls ran out. */
  uncalled?: number;
}

const NOT_LOADABLE = new Set([
  'ERR_REQUIRE_ESM',
  'ERR_REQUIRE_ASYNC_MODULE',
  'ERR_PACKAGE_PATH_NOT_EXPORTED',
  'ERR_UNSUPPORTED_DIR_IMPORT',
]);

// The platform's functions the harness relies on, taken before the package loads: code that
// replaces them at import (to make the harness call nothing, or see no time pass) changes only
// its own copies.
const realSetTimeout = globalThis.setTimeout;
const realClearTimeout = globalThis.clearTimeout;
const apply = Reflect.apply;
const ownKeys = Reflect.ownKeys;
const getPrototypeOf = Object.getPrototypeOf;
const descriptorOf = Object.getOwnPropertyDescriptor;
const clock = performance;
const clockNow = performance.now;
const now = (): number => apply(clockNow, clock, []) as number;
const processOn = process.on;
const listenerCount = process.listenerCount;
const swallow = (): undefined => undefined;
const defineProperty = Object.defineProperty;
const create = Object.create;
const construct = Reflect.construct;
const { max, min, floor } = Math;
const stringify = JSON.stringify;
const mapForEach = Map.prototype.forEach;
const mapSetFn = Map.prototype.set;
const mapDeleteFn = Map.prototype.delete;
// Imported bindings of node's modules follow `syncBuiltinESMExports()`: the package could swap
// them under the harness. These copies, taken as the harness loads, cannot be.
const write = writeSync;
const show = inspect;
const newHook = createHook;
const requireFrom = createRequire;
const isNamespace = types.isModuleNamespaceObject;
const deleteProperty = Reflect.deleteProperty;

/**
 * A record with no prototype: what the harness returns from async code or resolves a promise
 * with is read for `then` by the engine, and a getter the package put on Object.prototype.then
 * would see (and could rewrite) it.
 */
function record<T extends object>(fields: T): T {
  const r = create(null) as T;
  const keys = ownKeys(fields);
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i] as keyof T & (string | symbol);
    defineProperty(r, k, {
      value: fields[k],
      writable: true,
      enumerable: true,
      configurable: true,
    });
  }
  return r;
}

/** Append to one of the harness's own lists without running a setter the package put on Array.prototype. */
function append<T>(list: T[], v: T): void {
  defineProperty(list, list.length, {
    value: v,
    writable: true,
    enumerable: true,
    configurable: true,
  });
}

/** Whether `v` has `proto` on its prototype chain (`instanceof` runs `Symbol.hasInstance`, which the package can define). */
function inheritsFrom(v: unknown, proto: object): boolean {
  if (!v || (typeof v !== 'object' && typeof v !== 'function')) return false;
  try {
    let p = getPrototypeOf(v) as object | null;
    for (let depth = 0; p && depth < 64; depth++) {
      if (p === proto) return true;
      p = getPrototypeOf(p) as object | null;
    }
  } catch {
    // A hostile object: not one of them.
  }
  return false;
}
const PROMISE_PROTO = Promise.prototype;
const TYPE_ERROR_PROTO = TypeError.prototype;
const MAP_PROTO = Map.prototype;
const SET_PROTO = Set.prototype;
const RealPromise = Promise;
const promiseThen = Promise.prototype.then;
const promiseResolve = Promise.resolve;

/**
 * Built-ins the exercise uses once package code has run, as they were before it loaded. A package
 * that replaces one (`Set.prototype.has` always true, a `Promise.prototype.then` that throws) to
 * cut its exercise short has it put back before the harness goes on (where it can be), and the
 * result names it: the phase's note says the package interfered.
 */
const ARRAY_ITERATOR = getPrototypeOf([][Symbol.iterator]()) as object;
/** A watched built-in: where it is, its name in the result, what it was, and whether it is put back. */
interface Watched {
  on: object;
  key: string | symbol;
  name: string;
  was: PropertyDescriptor | undefined;
  restore: boolean;
}
const watch = (on: object, keys: readonly (string | symbol)[], prefix: string, restore = true) =>
  keys.map((key): Watched => ({
    on,
    key,
    name: typeof key === 'symbol' ? `${prefix}[${key.description ?? ''}]` : `${prefix}.${key}`,
    was: descriptorOf(on, key),
    restore,
  }));
const WATCHED: Watched[] = [
  ...watch(Set.prototype, ['has', 'add', 'delete'], 'Set.prototype'),
  ...watch(Map.prototype, ['get', 'set', 'has'], 'Map.prototype'),
  ...watch(WeakSet.prototype, ['has', 'add'], 'WeakSet.prototype'),
  ...watch(
    Array.prototype,
    [
      'map',
      'filter',
      'forEach',
      'slice',
      'includes',
      'push',
      'sort',
      'join',
      'indexOf',
      Symbol.iterator,
    ],
    'Array.prototype',
  ),
  ...watch(ARRAY_ITERATOR, ['next'], 'ArrayIterator'),
  ...watch(Array, ['isArray', Symbol.species], 'Array'),
  ...watch(Array.prototype, ['constructor'], 'Array.prototype'),
  // Not there before the package loaded: a getter put there is taken away.
  ...watch(Object.prototype, ['then'], 'Object.prototype'),
  ...watch(Array.prototype, ['then'], 'Array.prototype'),
  ...watch(Function.prototype, ['call', 'apply', 'toString'], 'Function.prototype'),
  ...watch(Object, ['keys', 'getPrototypeOf', 'getOwnPropertyDescriptor'], 'Object'),
  ...watch(Reflect, ['apply', 'ownKeys'], 'Reflect'),
  ...watch(JSON, ['stringify'], 'JSON'),
  ...watch(String.prototype, ['startsWith'], 'String.prototype'),
  ...watch(RegExp.prototype, ['test', 'exec'], 'RegExp.prototype'),
  // Named when replaced, not put back: the harness waits on promises through its own copies,
  // and a package that brings its own Promise (zone.js) needs it.
  ...watch(Promise.prototype, ['then'], 'Promise.prototype', false),
  ...watch(Promise, ['resolve'], 'Promise', false),
  {
    on: globalThis,
    key: 'Promise',
    name: 'Promise',
    was: descriptorOf(globalThis, 'Promise'),
    restore: false,
  },
];
/** Names of the built-ins the package replaced, in the order first seen (INTERFERED_MAX at most). */
const interfered: string[] = [];
const INTERFERED_MAX = 8;
/** Named in `interfered` when the harness's handling of a work item threw. */
const ITEM_THREW = 'work item threw';

/** Put back what the package replaced of WATCHED (where it is to be put back), and note it. */
function keepIntrinsics(): void {
  // Indexed, not iterated: iteration runs the array iterator, which the package can replace.
  for (let i = 0; i < WATCHED.length; i++) {
    const w = WATCHED[i] as Watched;
    let now: PropertyDescriptor | undefined;
    try {
      now = descriptorOf(w.on, w.key);
    } catch {
      now = undefined;
    }
    if (!now && !w.was) continue;
    if (now && w.was && now.value === w.was.value && now.get === w.was.get) continue;
    if (interfered.length < INTERFERED_MAX && interfered.indexOf(w.name) < 0)
      append(interfered, w.name);
    try {
      if (w.restore) {
        if (w.was) defineProperty(w.on, w.key, w.was);
        else deleteProperty(w.on, w.key);
      }
    } catch {
      // Frozen in place by the package: named in the result all the same.
    }
  }
}

/**
 * The package's stray errors and rejections are its own business, not the harness's end: the
 * handlers that say so are put back whenever a call of the package took them away.
 */
function keepGuards(): void {
  keepIntrinsics();
  const events = ['uncaughtException', 'unhandledRejection'];
  for (let i = 0; i < events.length; i++)
    if ((apply(listenerCount, process, [events[i]]) as number) === 0)
      apply(processOn, process, [events[i], swallow]);
}

/** A timer or worker the package started, and when (virtual ms since the process started) it is due. */
interface Scheduled {
  due: number;
  /** An interval's period. */
  every?: number;
  worker?: boolean;
}

/** Ticks of an interval the harness waits for (a batch on the first, a send on the second). */
const INTERVAL_TICKS = 2;
const TICK_MARGIN = virtualMs(10);

/**
 * Every timer and worker the package creates, unref'd ones included (the event loop does not
 * count those, so `getActiveResourcesInfo` does not show them), until it fires or is cleared.
 */
class Schedule {
  private readonly live = new Map<number, Scheduled>();
  private own = false;
  private readonly hook = newHook({
    init: (id, type, _trigger, resource) => {
      if (this.own) return;
      if (type === 'Timeout') {
        const t = resource as { _idleTimeout?: unknown; _repeat?: unknown };
        const after = typeof t._idleTimeout === 'number' ? max(1, t._idleTimeout) : 1;
        const every = typeof t._repeat === 'number' && t._repeat > 0 ? t._repeat : undefined;
        apply(mapSetFn, this.live, [id, { due: now() + after, ...(every ? { every } : {}) }]);
      } else if (type === 'WORKER') {
        apply(mapSetFn, this.live, [id, { due: now(), worker: true }]);
      }
    },
    destroy: (id) => void apply(mapDeleteFn, this.live, [id]),
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
   * counts until its second tick: a cache's cleanup every 30 s would otherwise hold every process
   * for the whole window.
   */
  next(at: number): number | undefined {
    let first: number | undefined;
    // Through the Map's own forEach, taken before the package loaded: an emptied iterator would
    // make the harness see no timer and end before a delayed payload is due.
    apply(mapForEach, this.live, [
      (s: Scheduled) => {
        let due = s.worker ? at : s.due;
        if (s.every) {
          // A tick counts as done a moment after it was due (timers fire a little late).
          const late = at - TICK_MARGIN;
          const ticked = due <= late ? floor((late - due) / s.every) + 1 : 0;
          if (ticked >= INTERVAL_TICKS) return;
          due += ticked * s.every;
        }
        if (first === undefined || due < first) first = due;
      },
    ]);
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
    () => [clientOptions(host)],
    () => [host, () => undefined],
  ];
}

/** The shapes a method gets: none, a host, an object, the mix, a host and a callback, options. */
const METHOD_SHAPES = [0, 1, 3, 6, 8, 7];
/** The shapes an export gets first when there are too many exports for all of them. */
const SHAPE_PRIORITY = [1, 7, 0, 6, 5, 3, 8, 4, 2];
/** The share of the calls and of the time the exports themselves get. */
const EXPORT_SHARE = 0.6;

/**
 * An SDK's options as its README shows them: a key (SDKs that need one throw without it, and a
 * client that is never built is never exercised), and every usual name for where to connect,
 * naming the caller host.
 */
export function clientOptions(host: string): Record<string, unknown> {
  const key = 'sk_test_4f1c9a27e8b3d6a05c7e9b1d';
  return {
    apiKey: key,
    token: key,
    key,
    secret: key,
    auth: key,
    accessToken: key,
    username: 'app',
    password: key,
    host,
    hostname: host,
    port: 443,
    url: `https://${host}/`,
    baseURL: `https://${host}/v1`,
    baseUrl: `https://${host}/v1`,
    endpoint: `https://${host}/`,
    uri: `https://${host}/`,
    connectionString: `postgres://app:${key}@${host}:5432/app`,
  };
}

function bounded(
  schedule: Schedule,
  p: PromiseLike<unknown>,
  wallMs: number,
): Promise<{ state: 'settled' | 'pending'; value?: unknown }> {
  return new RealPromise((resolve) => {
    const timer = schedule.timer(
      () => resolve(record({ state: 'pending' as const })),
      virtualMs(wallMs),
    );
    let settled: Promise<unknown>;
    try {
      settled = apply(promiseResolve, RealPromise, [p]) as Promise<unknown>;
    } catch {
      resolve(record({ state: 'settled' as const }));
      return;
    }
    apply(promiseThen, settled, [
      (value: unknown) => {
        realClearTimeout(timer);
        resolve(record({ state: 'settled' as const, value }));
      },
      () => {
        realClearTimeout(timer);
        resolve(record({ state: 'settled' as const }));
      },
    ]);
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
    const d = descriptorOf(o, k);
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
      p = getPrototypeOf(p) as object | null;
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
/** At most this many of an emitter's own events (beyond the lifecycle ones) are emitted. */
const EVENTS_PER_EMITTER = 16;

/** What is emitted on an emitter: the lifecycle events, then up to EVENTS_PER_EMITTER of its own. */
function eventsOf(emitter: object): string[] {
  const names = new Set<string>();
  const list = inherited(emitter, 'eventNames');
  if (typeof list === 'function') {
    try {
      const got = apply(list, emitter, []) as unknown;
      if (Array.isArray(got))
        for (const n of got.slice(0, 256))
          if (typeof n === 'string' && !NOT_EMITTED.has(n) && !LIFECYCLE_EVENTS.includes(n))
            if (names.size < EVENTS_PER_EMITTER) names.add(n);
    } catch {
      // Its own events stay unknown; the lifecycle ones are still emitted.
    }
  }
  return [...LIFECYCLE_EVENTS, ...names];
}

/** An EventEmitter or anything shaped like one: `on` and `emit` as functions. */
const isEmitter = (v: object): boolean =>
  typeof inherited(v, 'emit') === 'function' && typeof inherited(v, 'on') === 'function';

/** `then` as an own or inherited data property: a promise-like, found without running getters. */
function isThenable(v: unknown): boolean {
  if (!v || (typeof v !== 'object' && typeof v !== 'function')) return false;
  try {
    if (inheritsFrom(v, PROMISE_PROTO)) return true;
  } catch {
    // A hostile object: not awaited, not looked into.
    return false;
  }
  return typeof inherited(v, 'then') === 'function';
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
    // Values only: a getter of these modules loads more of Node (http's WebSocket loads undici,
    // two fifths of the harness's start-up), and a package that never asks for it never has it.
    const exported = Object.getOwnPropertyDescriptors(createRequire(import.meta.url)(m) as object);
    for (const d of Object.values(exported))
      if (typeof d.value === 'function') NODE_CLASSES.add(d.value);
  } catch {
    // A module the sandbox's Node lacks adds nothing.
  }

/** At most this many methods of one object are called. */
const METHODS_PER_OBJECT = 60;
/** Keys read per level of an object's prototype chain, and in all, for one object. */
const KEYS_PER_LEVEL = 500;
const KEYS_PER_OBJECT = 5000;
/** How far into the objects an object holds methods are looked for (a client's `chat.completions`). */
const HELD_DEPTH = 2;
/** Names that are not the package's methods: the class, the promise protocol, a function's own. */
const NOT_METHODS = new Set([
  'constructor',
  'then',
  'catch',
  'finally',
  'length',
  'name',
  'prototype',
  'caller',
  'arguments',
]);

/**
 * The methods of an object (an instance, a client, a promised result, a module): its own function
 * properties and its prototypes' up to the platform's, and those of the objects it holds, two
 * levels down, prototypes included (a client's `customers`, `chat.completions`). Accessors of the
 * package's objects are read, as a caller reading `client.messages` would.
 */
function methodsOf(obj: object): { fn: unknown; self: object }[] {
  const out: { fn: unknown; self: object }[] = [];
  const seen = new Set<unknown>();
  const visited = new Set<object>();
  // Bounds against an object built to be endless (a Proxy with a new prototype at every step).
  let budget = KEYS_PER_OBJECT;
  const visit = (o: object, held: number) => {
    if (visited.has(o)) return;
    visited.add(o);
    let p: object | null = o;
    for (let depth = 0; p && depth < 16 && out.length < METHODS_PER_OBJECT; depth++) {
      if (platformPrototype(p)) return;
      let names: (string | symbol)[];
      try {
        names = ownKeys(p);
      } catch {
        return;
      }
      let read = 0;
      for (const k of names) {
        if (++read > KEYS_PER_LEVEL || --budget < 0 || out.length >= METHODS_PER_OBJECT) break;
        if (typeof k === 'symbol' || NOT_METHODS.has(k)) continue;
        let d: PropertyDescriptor | undefined;
        try {
          d = descriptorOf(p, k);
        } catch {
          continue;
        }
        if (!d) continue;
        let v: unknown = d.value;
        const accessor = !('value' in d) && typeof d.get === 'function';
        if (accessor) {
          try {
            v = apply(d.get as () => unknown, o, []);
          } catch {
            continue;
          }
        }
        if (typeof v === 'function') {
          if (!accessor && !seen.has(v)) {
            seen.add(v);
            append(out, { fn: v, self: o });
          }
        } else if (
          v &&
          typeof v === 'object' &&
          held < HELD_DEPTH &&
          (p === o || accessor) &&
          // Private state (an emitter's `_events`, a stream's `_readableState`), not an API.
          !k.startsWith('_') &&
          !Array.isArray(v) &&
          !isThenable(v)
        )
          visit(v as object, held + 1);
      }
      try {
        p = getPrototypeOf(p) as object | null;
      } catch {
        return;
      }
    }
  };
  visit(obj, 0);
  return out;
}

const isClass = (fn: unknown): boolean =>
  typeof fn === 'function' && /^class[\s{]/.test(Function.prototype.toString.call(fn));

/** At most this many exported functions are called. */
const EXPORTS_MAX = 2000;

/**
 * Exported functions: the export itself, its properties, one level of namespaces below (a
 * `default` export counts as the module itself), and the static methods of each
 * (`MongoClient.connect`).
 */
function collect(exported: unknown): unknown[] {
  const found: unknown[] = [];
  const known = new Set<unknown>();
  const add = (f: unknown) => {
    if (known.has(f) || found.length >= EXPORTS_MAX) return;
    known.add(f);
    append(found, f);
    let keys: (string | symbol)[];
    try {
      keys = ownKeys(f as object);
    } catch {
      return;
    }
    for (const k of keys.slice(0, KEYS_PER_LEVEL)) {
      if (typeof k === 'symbol' || NOT_METHODS.has(k)) continue;
      const v = ownValue(f as object, k);
      if (typeof v === 'function' && !known.has(v) && found.length < EXPORTS_MAX) {
        known.add(v);
        append(found, v);
      }
    }
  };
  const looked = new Set<unknown>();
  const visit = (v: unknown, depth: number) => {
    if (typeof v === 'function') add(v);
    if (depth > 1 || v === null || (typeof v !== 'object' && typeof v !== 'function')) return;
    // A module that is its own default export, or namespaces that hold each other.
    if (looked.has(v)) return;
    looked.add(v);
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
      if (typeof child === 'function') add(child);
      else if (child && typeof child === 'object' && (depth < 1 || (k === 'default' && depth < 2)))
        visit(child, k === 'default' ? depth : depth + 1);
    }
  };
  visit(exported, 0);
  return found;
}

async function load(
  input: HarnessInput,
  importer: (name: string) => Promise<unknown>,
): Promise<{ exported?: unknown; with?: 'require' | 'import' }> {
  const require = requireFrom(`${process.cwd()}/`);
  if (input.mode === 'import')
    return record({ exported: await importer(input.name), with: 'import' as const });
  try {
    return record({ exported: require(input.name) as unknown, with: 'require' as const });
  } catch (e) {
    if (input.mode === 'require') throw e;
    // An ESM-only package: exercise what import() gives.
    return record({ exported: await importer(input.name), with: 'import' as const });
  }
}

/** A result with no prototype: no setter or `toJSON` the package puts on Object.prototype reaches it. */
const noCalls = (): HarnessResult => {
  const r = create(null) as HarnessResult;
  r.functions = 0;
  r.classes = 0;
  r.calls = 0;
  r.methods = 0;
  r.threw = 0;
  r.pending = 0;
  r.emitted = 0;
  r.iterated = 0;
  return r;
};

export async function run(importer: (name: string) => Promise<unknown>): Promise<void> {
  const input = JSON.parse(process.env[HARNESS_INPUT_VAR] ?? '') as HarnessInput;
  delete process.env[HARNESS_INPUT_VAR];
  // The driver's nonce, read before the package loads (its stdin is then at its end).
  try {
    channelNonce = readFileSync(0, 'latin1').trim();
  } catch {
    channelNonce = '';
  }
  // Before the package loads: timers it creates at import are seen.
  const schedule = new Schedule();
  schedule.start();
  const result = noCalls();
  // The package's stray errors are its own business, not the harness's end.
  keepGuards();
  const baseline = pendingWork();
  // Code that ends the process (a CLI object's parse(), an import-time exit) would end the run
  // with it: until the result line, process.exit() runs its 'exit' listeners and returns. Node's
  // exit() ends in reallyExit, replaced before the package loads (a copy taken at import is the
  // no-op too); process.exit itself stays Node's own function.
  const proc = process as unknown as { reallyExit: (code?: number) => void };
  const reallyExit = proc.reallyExit;
  proc.reallyExit = function reallyExit() {
    process.exitCode = 0;
  };
  let loaded: Awaited<ReturnType<typeof load>>;
  try {
    loaded = await load(input, importer);
    // What the package replaced at import is put back before the harness reads its exports.
    keepIntrinsics();
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
  // A process that ends on its own emits 'beforeExit' each time its loop empties (again after a
  // listener scheduled more); the harness ends it with exit(), so what the package left for those
  // moments is given them here, three times at most.
  for (let round = 0; round < 3 && process.listenerCount('beforeExit') > 0; round++) {
    result.emitted++;
    try {
      process.emit('beforeExit', 0);
    } catch {
      // A listener that throws ends only itself.
    }
    await quiesce(schedule, baseline, input.graceMs ?? 1500);
  }
  proc.reallyExit = reallyExit;
  process.exitCode = 0;
  keepIntrinsics();
  if (interfered.length) result.interfered = interfered.slice();
  progress(`${RESULT} ${apply(stringify, JSON, [result]) as string}`);
  // Exit once the package's output is out, whatever it left running.
  process.stdout.write('', () => process.exit(0));
}

/** How deep the exercise goes into what calls give back: an export's result, its methods' results, theirs. */
const MAX_LEVEL = 3;

/**
 * One piece of the exercise. `key` names it by where it was found (`3` the fourth export,
 * `3>0.5` the sixth method of the first kind of object it gave back, `….e` its events, `….i`
 * its iteration), the same in every process of one exercise: a process that starts again after
 * one died in a piece skips it by its key.
 */
type Work = { key: string } &
  /** A function or class: an export (level 0) or a method of an object found at `level`. */
  (
    | { kind: 'call'; fn: unknown; self?: object; level: number }
    /** The lifecycle events of an emitter, emitted once its methods have been called. */
    | { kind: 'emit'; target: object }
    /** A few steps through the iterator an object gives. */
    | { kind: 'iterate'; target: object; iterator: unknown; async: boolean }
    /** Shown as a consumer shows a result: logged (`util.inspect`) and put in a string. */
    | { kind: 'show'; target: object }
  );

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
  // Only a real namespace: a CommonJS object that calls itself 'Module' keeps its own,
  // non-enumerable exports too.
  if (exported && typeof exported === 'object' && isNamespace(exported)) {
    exported = { ...(exported as Record<string, unknown>) };
  }
  const shapes = argumentShapes(input.callerHost ?? 'test');
  const started = now();
  const budget = virtualMs(input.callBudgetMs ?? 20_000);
  const methodShapes = METHOD_SHAPES.map((i) => shapes[i] as (typeof shapes)[number]);
  const fns = collect(exported);
  const exportedFns = new Set<unknown>(fns);
  for (const fn of fns) {
    if (isClass(fn)) result.classes++;
    else result.functions++;
  }
  // Classes first (a client is built from one), then functions; when there are more exports than
  // their share of the calls allows every shape for, each gets the first shapes of SHAPE_PRIORITY.
  const ordered = [...fns.filter((f) => isClass(f)), ...fns.filter((f) => !isClass(f))];
  const perExport = max(
    1,
    min(shapes.length, floor((maxCalls * EXPORT_SHARE) / max(1, fns.length))),
  );
  const exportShapes =
    perExport >= shapes.length
      ? shapes
      : SHAPE_PRIORITY.slice(0, perExport).map((i) => shapes[i] as (typeof shapes)[number]);
  const queue: Work[] = ordered.map((fn, i) => ({ kind: 'call', fn, level: 0, key: `${i}` }));
  const enqueue = (w: Work) => append(queue, w);
  const looked = new WeakSet<object>();
  const lookAt = (v: object, level: number, key: string) => {
    looked.add(v);
    // A returned function is called, and its own methods too (`express()` gives `app.listen`).
    if (typeof v === 'function' && !exportedFns.has(v))
      enqueue({ kind: 'call', fn: v, level, key: `${key}.f` });
    methodsOf(v).forEach((m, j) => {
      if (!exportedFns.has(m.fn)) enqueue({ kind: 'call', ...m, level, key: `${key}.${j}` });
    });
    if (typeof v === 'function') return;
    if (isEmitter(v)) enqueue({ kind: 'emit', target: v, key: `${key}.e` });
    // `console.log(result)` and `${result}` run its symbol-keyed hooks (util.inspect.custom,
    // Symbol.toPrimitive), which no method call reaches.
    if (
      typeof inherited(v, INSPECT) === 'function' ||
      typeof inherited(v, Symbol.toPrimitive) === 'function'
    )
      enqueue({ kind: 'show', target: v, key: `${key}.s` });
    // The platform's collections hold data, not the package's code.
    try {
      if (
        Array.isArray(v) ||
        ArrayBuffer.isView(v) ||
        inheritsFrom(v, MAP_PROTO) ||
        inheritsFrom(v, SET_PROTO)
      )
        return;
    } catch {
      return;
    }
    const asyncIt = inherited(v, Symbol.asyncIterator);
    const syncIt = inherited(v, Symbol.iterator);
    if (typeof asyncIt === 'function')
      enqueue({ kind: 'iterate', target: v, iterator: asyncIt, async: true, key: `${key}.i` });
    else if (typeof syncIt === 'function')
      enqueue({ kind: 'iterate', target: v, iterator: syncIt, async: false, key: `${key}.i` });
  };
  // The module itself, when it is an object: a singleton client (`module.exports = new Client()`)
  // has its methods on its prototype, and the objects it holds theirs. An exported emitter (a
  // module that is a client, a bus) gets its events.
  if (exported && typeof exported === 'object') lookAt(exported, 1, 'x');
  if (exported && typeof exported === 'object')
    valuesOf(exported).forEach((v, j) => {
      if (v && typeof v === 'object' && !looked.has(v) && isEmitter(v)) {
        looked.add(v);
        enqueue({ kind: 'emit', target: v, key: `x.v${j}` });
      }
    });
  // What one function gives back is looked into once per kind of object (its prototype), three
  // kinds at most: `create(url)` may give a client and `create()` an error object.
  const expandedFrom = new Map<unknown, unknown[]>();
  const expand = (from: unknown, v: unknown, level: number, key: string) => {
    if (level > MAX_LEVEL) return;
    if (!v || (typeof v !== 'object' && typeof v !== 'function') || looked.has(v)) return;
    if (exportedFns.has(v)) return;
    let kind: unknown;
    try {
      kind = getPrototypeOf(v);
      // Plain objects are told apart by their keys (`{ error }` is not `{ query }`).
      if (kind === Object.prototype || kind === null)
        kind = Object.keys(v).slice(0, 32).sort().join(',');
    } catch {
      return;
    }
    const kinds = expandedFrom.get(from) ?? [];
    if (kinds.length >= 3 || kinds.includes(kind)) return;
    append(kinds, kind);
    expandedFrom.set(from, kinds);
    lookAt(v, level, `${key}>${kinds.length - 1}`);
  };
  // The exports get at most 60% of the calls and of the time, so that what they give back is
  // reached even in a package of hundreds of functions.
  // Asked before every call, emit and step: the guards are put back there too.
  const out = (level = 1) => {
    keepGuards();
    const share = level === 0 ? EXPORT_SHARE : 1;
    return result.calls >= maxCalls * share || now() - started > budget * share;
  };
  /** A value that may be a promise, settled within the bound: undefined when it did not settle. */
  const settle = async (value: unknown, wallMs = callTimeoutMs) => {
    if (!isThenable(value)) return record({ value });
    const r = await bounded(schedule, value as PromiseLike<unknown>, wallMs);
    if (r.state === 'pending') {
      result.pending++;
      return undefined;
    }
    return record({ value: r.value });
  };
  try {
    // A null-prototype record, read with `in`: nothing the package replaces decides what is skipped.
    const skip: Record<string, true> = create(null) as Record<string, true>;
    // The exports (level 0) that got at least one call.
    const called: Record<string, true> = create(null) as Record<string, true>;
    for (let j = 0; j < (input.skip ?? []).length; j++)
      skip[(input.skip ?? [])[j] as string] = true;
    for (let i = 0; i < queue.length && !out(); i++) {
      const work = queue[i] as Work;
      if (work.key in skip) continue;
      progress(work.key);
      // A throw out of the harness's own handling of one item (a built-in the package turned
      // against it) ends that item, not the calls, and is named.
      try {
        if (work.kind === 'emit') await emitLifecycle(work.target, result, out);
        else if (work.kind === 'iterate') await iterate(work, result, out, settle);
        else if (work.kind === 'show') {
          result.calls++;
          try {
            show(work.target, { depth: 1, maxArrayLength: 10, maxStringLength: 200 });
            String(work.target);
          } catch {
            result.threw++;
          }
        } else {
          const { fn, self, level } = work;
          if (level > 0) result.methods++;
          // After one call of a function never settled, its other calls are waited on briefly.
          let wait = callTimeoutMs;
          const these = level > 0 ? methodShapes : exportShapes;
          for (let si = 0; si < these.length; si++) {
            const shape = these[si] as (typeof these)[number];
            if (out(level)) break;
            progress(work.key);
            result.calls++;
            if (level === 0) called[work.key] = true;
            const f = fn as (...a: unknown[]) => unknown;
            let value: unknown;
            try {
              value = isClass(fn)
                ? construct(f as unknown as new (...a: unknown[]) => unknown, shape())
                : apply(f, self, shape());
            } catch (e) {
              if (
                inheritsFrom(e, TYPE_ERROR_PROTO) &&
                /class constructor/i.test(String((e as Error).message))
              ) {
                try {
                  value = construct(f as unknown as new (...a: unknown[]) => unknown, shape());
                } catch {
                  result.threw++;
                  continue;
                }
              } else {
                result.threw++;
                continue;
              }
            }
            keepGuards();
            // A thenable that is not a promise (a query builder: `from(t).insert(row)`) has
            // methods of its own, called before it is awaited.
            if (isThenable(value) && !inheritsFrom(value, PROMISE_PROTO))
              expand(fn, value, level + 1, work.key);
            const r = await settle(value, wait);
            if (r) expand(fn, r.value, level + 1, work.key);
            else wait = max(1, floor(callTimeoutMs / 10));
          }
        }
      } catch {
        if (interfered.length < INTERFERED_MAX && interfered.indexOf(ITEM_THREW) < 0)
          append(interfered, ITEM_THREW);
      }
    }
    // Exports the calls' share ran out before (many exports, cheap ones first): said, since a
    // payload among them was never called.
    for (let i = 0; i < queue.length; i++) {
      const w = queue[i] as Work;
      if (w.kind === 'call' && w.level === 0 && !(w.key in called) && !(w.key in skip))
        result.uncalled = (result.uncalled ?? 0) + 1;
    }
  } catch {
    // A hostile value that got past the guards ends the calls, not the harness.
  }
  progress(CALLS_DONE);
}

/**
 * The step driver's nonce, read before the package loads: every line the harness writes on
 * PROGRESS_FD starts with it, so the package (which can write to the descriptor) cannot speak for
 * the harness (see supervise.ts).
 */
let channelNonce = '';

function progress(key: string): void {
  if (!channelNonce) return;
  try {
    write(PROGRESS_FD, `${channelNonce} ${key}\n`);
  } catch {
    // The driver is gone: the exercise goes on unwatched.
  }
}

/** Arguments a listener of an event gets from a network client or stream, roughly. */
function eventArgs(event: string): unknown[] {
  if (event === 'data') return [Buffer.from('{}')];
  if (event === 'message') return ['{}'];
  if (event === 'response') return [{ statusCode: 200, headers: {}, body: '{}' }];
  return [];
}

/**
 * The lifecycle events (and up to EVENTS_PER_EMITTER of the emitter's own) on one emitter: a
 * listener is added for each lifecycle event first (a client that connects when someone listens
 * does so then), and each listener is called on its own, so one that throws does not keep the
 * others from running; an emitter without `listeners` gets `emit`.
 */
async function emitLifecycle(
  target: object,
  result: HarnessResult,
  out: () => boolean,
): Promise<void> {
  const on = inherited(target, 'on');
  for (const event of LIFECYCLE_EVENTS)
    try {
      apply(on as (...a: unknown[]) => unknown, target, [event, () => undefined]);
    } catch {
      // An emitter that refuses a listener still gets its events.
    }
  const listeners = inherited(target, 'listeners');
  const emit = inherited(target, 'emit');
  for (const event of eventsOf(target)) {
    if (out()) return;
    result.calls++;
    result.emitted++;
    let each: unknown;
    try {
      each = typeof listeners === 'function' ? apply(listeners, target, [event]) : undefined;
    } catch {
      each = undefined;
    }
    if (!Array.isArray(each)) {
      try {
        apply(emit as (...a: unknown[]) => unknown, target, [event, ...eventArgs(event)]);
      } catch {
        result.threw++;
      }
      continue;
    }
    for (const listener of each.slice(0, 64)) {
      if (typeof listener !== 'function') continue;
      try {
        const r = apply(listener, target, eventArgs(event)) as unknown;
        // A listener's promise is its own; its rejection ends nothing.
        if (isThenable(r)) Promise.resolve(r).catch(() => undefined);
      } catch {
        result.threw++;
      }
    }
    keepGuards();
    // What the listeners started runs before the next event.
    await new Promise<void>((r) => setImmediate(r));
  }
}

const INSPECT = Symbol.for('nodejs.util.inspect.custom');

/** Steps an iterator may take before the harness calls its `return()`. */
const STEPS_PER_ITERATOR = 10;

/**
 * Steps through an iterator as `for await` / `for … of` would: until it is done, a step does
 * not settle, or STEPS_PER_ITERATOR steps; then `return()`, as a loop that breaks calls it (a
 * generator's `finally` runs then).
 */
async function iterate(
  work: Extract<Work, { kind: 'iterate' }>,
  result: HarnessResult,
  out: () => boolean,
  settle: (v: unknown) => Promise<{ value?: unknown } | undefined>,
): Promise<void> {
  let it: unknown;
  try {
    it = apply(work.iterator as () => unknown, work.target, []);
  } catch {
    result.threw++;
    return;
  }
  if (!it || (typeof it !== 'object' && typeof it !== 'function')) return;
  const next = inherited(it, 'next');
  if (typeof next !== 'function') return;
  let done = false;
  for (let step = 0; step < STEPS_PER_ITERATOR && !out(); step++) {
    result.calls++;
    result.iterated++;
    let r: { value?: unknown } | undefined;
    try {
      r = await settle(apply(next as () => unknown, it, []));
    } catch {
      result.threw++;
      return;
    }
    if (!r) return;
    // A result without `done: true` goes on, as a loop would.
    const v = r.value;
    done = !!v && typeof v === 'object' && ownValue(v, 'done') === true;
    if (done) return;
  }
  const ret = inherited(it, 'return');
  if (typeof ret === 'function')
    try {
      await settle(apply(ret as () => unknown, it, []));
    } catch {
      result.threw++;
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
  const graceEnd = now() + virtualMs(graceMs);
  for (let polls = 0; ; polls++) {
    const at = now();
    // From the second look on, our own poll timer is one of the active resources.
    const busy = pendingWork() - (polls > 0 ? 1 : 0) > baseline;
    const next = schedule.next(at);
    const waiting = next !== undefined && next <= LIFE_MS;
    if (!waiting && (!busy || at >= graceEnd)) return;
    if (at >= max(graceEnd, LIFE_MS)) return;
    // Wake when the next timer is due (or soon, to see sockets close); 20 ms of wall time at most.
    const wait = min(virtualMs(20), max(1, (next ?? Infinity) - at + 1));
    await new Promise<void>((r) => schedule.timer(r, wait));
  }
}
