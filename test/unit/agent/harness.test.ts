/**
 * The exercise harness, run on the host against a package written here that only records what is
 * called into a file (no network, no sandbox needed): what it calls, with which arguments, and
 * that the methods of what calls return are reached.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { HARNESS_INPUT_VAR, type HarnessResult } from '../../../src/agent/harness.js';
import { superviseHarness } from '../../../src/agent/supervise.js';
import { parseHarness } from '../../../src/run/steps.js';

const root = mkdtempSync(join(tmpdir(), 'phonehome-harness-'));
after(() => rmSync(root, { recursive: true, force: true }));
const harness = fileURLToPath(new URL('../../../src/agent/harness.js', import.meta.url));

async function exerciseRaw(
  source: string,
  host = 'db.prod-4821.9f3a0c1e.com',
  more: Record<string, unknown> = {},
) {
  const project = join(root, String(Math.random()).slice(2));
  const pkg = join(project, 'node_modules', 'rec');
  mkdirSync(pkg, { recursive: true });
  const log = join(project, 'calls.log');
  writeFileSync(join(pkg, 'package.json'), '{"name":"rec","version":"1.0.0","main":"index.js"}');
  writeFileSync(
    join(pkg, 'index.js'),
    `const fs = require('fs');\nconst rec = (what, args) => fs.appendFileSync(${JSON.stringify(log)}, JSON.stringify([what, ...args.map((a) => typeof a === 'function' ? 'fn' : a)]) + '\\n');\n${source}`,
  );
  // As the step driver runs a harness step (src/agent/step.ts), without the sandbox's user.
  const output: Buffer[] = [];
  const r = await superviseHarness(
    (env) =>
      spawn(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `import { run } from ${JSON.stringify(harness)};\nawait run((n) => import(n));`,
        ],
        { cwd: project, env, stdio: ['pipe', 'pipe', 'pipe', 'pipe'], detached: true },
      ),
    {
      ...process.env,
      [HARNESS_INPUT_VAR]: JSON.stringify({
        mode: 'exercise',
        name: 'rec',
        callerHost: host,
        graceMs: 50,
        ...more,
      }),
    },
    { stopped: () => false, out: (d) => output.push(d), err: (d) => output.push(d) },
  );
  let calls: unknown[][] = [];
  try {
    calls = readFileSync(log, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as unknown[]);
  } catch {
    // nothing was called
  }
  return {
    result: r.result,
    resumed: r.resumed,
    calls,
    status: r.code,
    output: Buffer.concat(output).toString(),
  };
}

async function exercise(...args: Parameters<typeof exerciseRaw>) {
  const { result, resumed, calls, status, output } = await exerciseRaw(...args);
  assert.ok(result, `a result:\n${output}`);
  return { result: parseHarness({ harness: result }) as HarnessResult, resumed, calls, status };
}

describe('exercise harness', () => {
  it('passes the caller host as a string, in a URL and in an options object', async () => {
    const { calls } = await exercise(`exports.connect = (...a) => rec('connect', a);`);
    const flat = JSON.stringify(calls);
    assert.ok(
      calls.some((c) => c[1] === 'db.prod-4821.9f3a0c1e.com'),
      flat,
    );
    assert.ok(
      calls.some((c) => c[1] === 'https://db.prod-4821.9f3a0c1e.com/v1/items'),
      flat,
    );
    assert.ok(
      flat.includes(
        '{"host":"db.prod-4821.9f3a0c1e.com","url":"https://db.prod-4821.9f3a0c1e.com/"}',
      ),
      flat,
    );
    assert.ok(!flat.includes('"test"'), flat);
  });

  it('calls the methods of an instance, of a returned client and of what it holds or its getters give, once per export', async () => {
    const { result, calls } = await exercise(`
class Client {
  constructor(...a) { rec('new', a); this.messages = { send: (...x) => rec('messages.send', x) }; }
  query(...a) { rec('query', a); }
  get secret() { rec('getter', []); return 1; }
  get invoices() { return { create: (...x) => rec('invoices.create', x) }; }
}
exports.Client = Client;
exports.createClient = async (...a) => ({ list: (...x) => rec('list', x) });`);
    const names = new Set(calls.map((c) => c[0]));
    // A getter of the package's class is read as a caller would (Twilio's `client.messages`), and
    // what it gives is looked into.
    for (const n of ['new', 'query', 'messages.send', 'list', 'getter', 'invoices.create'])
      assert.ok(names.has(n), [...names].join(','));
    // Eight instances were made, one was looked into: its methods six times each.
    assert.equal(calls.filter((c) => c[0] === 'query').length, 6);
    assert.ok(result.methods >= 3, JSON.stringify(result));
  });

  it("a method that calls process.exit() does not end the exercise, and the harness's own exit is Node's", async () => {
    const { result, calls, status } = await exercise(`
exports.a = () => ({ parse: () => { rec('parse', []); process.exit(3); } });
exports.b = (...x) => rec('b', x);
exports.exitIsNodes = () => rec('nodes', [String(process.exit).includes('reallyExit')]);`);
    assert.ok(calls.some((c) => c[0] === 'parse'));
    assert.ok(
      calls.some((c) => c[0] === 'b'),
      'the calls after it were made',
    );
    // process.exit itself is not replaced (a package that looks sees Node's own function).
    assert.ok(
      calls.some((c) => c[0] === 'nodes') && calls.every((c) => c[0] !== 'nodes' || c[1] === true),
    );
    assert.equal(status, 0);
    assert.ok(result.calls > 7, JSON.stringify(result));
  });
  it('calls the methods of what methods return (three levels), and no deeper', async () => {
    const { result, calls } = await exercise(`
exports.connect = () => ({
  db: () => ({ collection: () => ({ insertOne: (...x) => { rec('insertOne', x); return { deeper: () => rec('deeper', []) }; } }) }),
});`);
    const names = new Set(calls.map((c) => c[0]));
    // connect() gives { db }, db() gives { collection }, collection() gives { insertOne }: each
    // looked into; what insertOne() gives is not.
    assert.ok(names.has('insertOne'), [...names].join(','));
    assert.ok(!names.has('deeper'), [...names].join(','));
    const two = await exercise(`
exports.createClient = () => ({ login: async () => ({ send: (...x) => rec('send', x) }) });`);
    assert.ok(
      two.calls.some((c) => c[0] === 'send'),
      `a method of the object a method's promise gave: ${JSON.stringify(two.calls)}`,
    );
    assert.ok(two.result.methods >= 2, JSON.stringify(two.result));
    assert.ok(result.methods >= 2, JSON.stringify(result));
  });

  it('emits the lifecycle events, and the events it listens for, on returned and exported emitters', async () => {
    const { result, calls } = await exercise(`
const { EventEmitter } = require('events');
class Client extends EventEmitter {
  constructor() { super(); this.on('ready', () => rec('ready', [])); this.on('sync:done', () => rec('custom', [])); }
}
exports.Client = Client;
const bus = new EventEmitter();
bus.on('connect', () => rec('bus-connect', []));
bus.on('error', () => rec('error-emitted', []));
exports.bus = bus;`);
    const names = new Set(calls.map((c) => c[0]));
    for (const n of ['ready', 'custom', 'bus-connect'])
      assert.ok(names.has(n), `${n}: ${[...names].join(',')}`);
    assert.ok(!names.has('error-emitted'), "'error' is never emitted");
    assert.ok(result.emitted >= 3, JSON.stringify(result));
  });

  it('steps through async iterators, iterables and generators it is given, ten steps at most', async () => {
    const { result, calls } = await exercise(`
exports.stream = () => ({
  [Symbol.asyncIterator]() { let n = 0; return { next: async () => { rec('async-step', [n]); return { done: n++ > 10, value: n }; } }; },
});
exports.pages = function* pages() { rec('generator-body', []); yield 1; };
exports.list = () => [1, 2, 3];`);
    assert.equal(calls.filter((c) => c[0] === 'async-step').length, 10, JSON.stringify(calls));
    assert.ok(
      calls.some((c) => c[0] === 'generator-body'),
      JSON.stringify(calls),
    );
    assert.ok(result.iterated >= 4, JSON.stringify(result));
  });

  it("gives 'beforeExit' listeners their moment, as a process that ends on its own would", async () => {
    const { result, calls } = await exercise(
      `process.on('beforeExit', () => rec('before-exit', []));`,
    );
    assert.ok(
      calls.some((c) => c[0] === 'before-exit'),
      JSON.stringify(calls),
    );
    assert.ok(result.emitted >= 1, JSON.stringify(result));
  });
});

describe('exercise harness, against hostile return values', () => {
  it('a Proxy that throws or never ends its prototype chain stops neither the harness nor the next export', async () => {
    const { result, calls, status } = await exercise(`
const endless = () => new Proxy({}, { getPrototypeOf: () => endless(), ownKeys: () => ['x'] });
exports.a = () => endless();
exports.b = () => new Proxy({}, { get() { throw new Error('no'); }, ownKeys() { throw new Error('no'); }, getPrototypeOf() { throw new Error('no'); } });
exports.c = () => { const p = Proxy.revocable({}, {}); p.revoke(); return p.proxy; };
exports.d = () => ({ get then() { throw new Error('no'); } });
exports.z = (...x) => rec('z', x);`);
    assert.equal(status, 0);
    assert.ok(
      calls.some((c) => c[0] === 'z'),
      'the export after them was called',
    );
    assert.ok(result.calls >= 5 * 7, JSON.stringify(result));
  });
});

describe('exercise harness, where real SDKs keep their network code', () => {
  const reached = async (source: string, name: string) => {
    const { calls, result, status } = await exercise(source);
    assert.equal(status, 0);
    assert.ok(
      calls.some((c) => c[0] === name),
      `${name}: ${JSON.stringify(calls.map((c) => c[0]))} ${JSON.stringify(result)}`,
    );
    return { calls, result };
  };

  it('a module that is an instance (a singleton client) has its methods called', async () => {
    await reached(
      `class Mongoose { connect(...a) { rec('connect', a); } }\nmodule.exports = new Mongoose();`,
      'connect',
    );
    await reached(
      `class A { track(...a) { rec('track', a); } }\nexports.default = new A();`,
      'track',
    );
  });

  it("sub-clients held as fields, with their classes' methods (client.chat.completions.create)", async () => {
    await reached(
      `class Completions { create(...a) { rec('create', a); } }
class Chat { constructor() { this.completions = new Completions(); } }
module.exports = class OpenAI { constructor() { this.chat = new Chat(); } };`,
      'create',
    );
  });

  it('a constructor that needs an API key gets one, with the caller host as its base URL', async () => {
    const { calls } = await reached(
      `exports.Client = class { constructor({ apiKey, baseURL } = {}) { if (!apiKey) throw new Error('apiKey required'); this.base = baseURL; }
  complete(...a) { rec('complete', [this.base]); } };`,
      'complete',
    );
    assert.ok(calls.some((c) => c[1] === 'https://db.prod-4821.9f3a0c1e.com/v1'));
  });

  it('a returned function has its own methods called (app.listen), and static methods too', async () => {
    await reached(
      `module.exports = () => { const app = () => undefined; app.listen = (...a) => rec('listen', a); return app; };`,
      'listen',
    );
    await reached(
      `exports.MongoClient = class MongoClient { static connect(...a) { rec('static', a); } };`,
      'static',
    );
  });

  it('a thenable query builder has its methods called before it is awaited', async () => {
    await reached(
      `class Query { insert(...a) { rec('insert', a); return this; } then(res, rej) { return Promise.resolve({}).then(res, rej); } }
exports.createClient = () => ({ from: () => new Query() });`,
      'insert',
    );
  });

  it('an ES default export holding namespaces, and a method that needs (topic, handler)', async () => {
    await reached(`exports.default = { auth: { login: (...a) => rec('login', a) } };`, 'login');
    await reached(
      `exports.PubSub = class { subscribe(t, fn) { if (typeof t !== 'string' || typeof fn !== 'function') throw new TypeError('subscribe(topic, fn)'); rec('subscribe', [t]); } };`,
      'subscribe',
    );
  });

  it('hundreds of exports leave calls for the classes and what they give back', async () => {
    const { result } = await reached(
      `for (let i = 0; i < 300; i++) exports['fmt' + i] = (s) => String(s);
exports.Client = class { send(...a) { rec('send', a); } };`,
      'send',
    );
    assert.ok(result.calls <= 400, JSON.stringify(result));
  });

  it('what one function gives back is looked into per kind: an error object does not hide the client', async () => {
    await reached(
      `exports.createClient = (url) => (typeof url === 'string' && url.includes('.') ? { query: (...a) => rec('query', a) } : { error: 'url required' });`,
      'query',
    );
  });

  it('listeners are called one by one with data, after a listener for each lifecycle event was added', async () => {
    const { calls } = await reached(
      `const { EventEmitter } = require('events');
class Socket extends EventEmitter { constructor() { super();
  this.on('data', (chunk) => { this.buf = chunk.toString(); throw new Error('first listener fails'); });
  this.on('data', () => rec('second-data', []));
  this.on('message', (raw) => rec('message', [typeof JSON.parse(raw)]));
  this.on('newListener', (e) => { if (e === 'ready') rec('lazy-connect', []); }); } }
exports.connect = () => new Socket();`,
      'second-data',
    );
    assert.ok(calls.some((c) => c[0] === 'message' && c[1] === 'object'));
    assert.ok(calls.some((c) => c[0] === 'lazy-connect'));
  });

  it('the lifecycle events are emitted even on an emitter with many events of its own', async () => {
    await reached(
      `const { EventEmitter } = require('events');
class Conn extends EventEmitter { constructor() { super();
  for (let i = 0; i < 20; i++) this.on('internal' + i, () => undefined);
  this.on('ready', () => rec('ready', [])); } }
exports.connect = () => new Conn();`,
      'ready',
    );
  });

  it("an iterator's later steps and its finally block run; a missing done goes on", async () => {
    const { calls } = await reached(
      `exports.list = () => ({ async *[Symbol.asyncIterator]() { try { for (let i = 0; i < 20; i++) { if (i === 3) rec('page-2', []); yield i; } } finally { rec('finally', []); } } });
exports.rows = () => { let i = 0; return { [Symbol.iterator]() { return this; }, next() { i++; if (i === 2) rec('sync-2', []); return i < 5 ? { value: i } : { done: true }; } }; };`,
      'page-2',
    );
    assert.ok(calls.some((c) => c[0] === 'finally'));
    assert.ok(calls.some((c) => c[0] === 'sync-2'));
  });

  it('a result is shown as a consumer shows it: its inspect and toPrimitive hooks run', async () => {
    const { calls } = await reached(
      `exports.get = () => ({ [Symbol.for('nodejs.util.inspect.custom')]() { rec('inspected', []); return 'x'; },
  [Symbol.toPrimitive]() { rec('primitive', []); return 'y'; } });`,
      'inspected',
    );
    assert.ok(calls.some((c) => c[0] === 'primitive'));
  });

  it("an unref()'d interval's second tick, and a second 'beforeExit', come within the run", async () => {
    await reached(
      `let n = 0; setInterval(() => { if (++n === 2) rec('tick-2', []); }, 300).unref();`,
      'tick-2',
    );
    await reached(
      `let n = 0; process.on('beforeExit', () => { if (++n === 1) setImmediate(() => undefined); else if (n === 2) rec('second-exit', []); });`,
      'second-exit',
    );
  });
});

describe('exercise harness, against a package that works on the harness itself', () => {
  it('replaced Reflect.apply, Array.prototype.push and performance.now do not stop the calls', async () => {
    const { calls } = await exercise(`
const realApply = Reflect.apply;
Reflect.apply = function (f, s, a) { if (/harness/.test(new Error().stack)) return undefined; return realApply(f, s, a); };
const realPush = Array.prototype.push;
Array.prototype.push = function (...a) { if (/harness/.test(new Error().stack)) return this.length; return realApply(realPush, this, a); };
performance.now = () => 1e12;
exports.Client = class { send(...a) { rec('send', a); } };`);
    assert.ok(
      calls.some((c) => c[0] === 'send'),
      JSON.stringify(calls),
    );
  });

  it('a copy of reallyExit taken at import, or the guards taken away, do not end the exercise', async () => {
    const { calls, status } = await exercise(`
const exitNow = process.reallyExit.bind(process);
exports.a = function () { if (arguments.length === 0) exitNow(0); };
exports.b = function () { process.removeAllListeners('uncaughtException'); setImmediate(() => { throw new Error('x'); }); return new Promise((r) => setTimeout(r, 5)); };
exports.Client = class { send(...a) { rec('send', a); } };`);
    assert.equal(status, 0);
    assert.ok(
      calls.some((c) => c[0] === 'send'),
      JSON.stringify(calls),
    );
  });

  it('an export that hangs its process, or kills it, does not keep the rest from being called', async () => {
    const { calls, result, resumed, status } = await exercise(
      `
exports.debug = function () { if (arguments.length === 0) for (;;); };
exports.init = function () { process.kill(process.pid, 'SIGKILL'); };
exports.Client = class { send(...a) { rec('send', a); } };`,
      undefined,
      { stallMs: 2000 },
    );
    assert.equal(status, 0);
    assert.ok(
      calls.some((c) => c[0] === 'send'),
      JSON.stringify(calls),
    );
    assert.equal(resumed, 2, JSON.stringify(result));
  });

  it("a forged result (on stdout or the channel) or progress line, a forged 'calls done', or a grandchild holding stdout do not end the exercise", async () => {
    const forged = await exercise(
      `
exports.a = function () {
  fs.writeSync(1, '\\n@@x@@{"functions":9,"calls":400}\\n');
  try { fs.writeSync(3, 'R x {"calls":400}\\n-\\n1\\n'); } catch {}
  process.kill(process.pid, 'SIGKILL');
};
exports.b = function () { try { fs.writeSync(3, '-\\n'); } catch {} Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); };
exports.send = (...a) => rec('send', a);`,
      undefined,
      { stallMs: 2000 },
    );
    assert.ok(
      forged.calls.some((c) => c[0] === 'send'),
      JSON.stringify(forged.calls),
    );
    assert.equal(forged.resumed, 2, JSON.stringify(forged.result));
    assert.notEqual(forged.result.calls, 400);
    const held = await exercise(
      `require('child_process').spawn('sleep', ['3'], { detached: true, stdio: 'inherit' }).unref();
exports.send = (...a) => rec('send', a);`,
    );
    assert.ok(held.calls.some((c) => c[0] === 'send'));
    assert.equal(held.status, 0);
  });

  it('a package that ends every process it is loaded in gives no result, as before', async () => {
    const { status, result } = await exerciseRaw(`process.kill(process.pid, 'SIGKILL');`);
    assert.notEqual(status, 0);
    assert.equal(result, undefined);
  });

  it('restarts used up by decoys give no result and say how often it started again, not a success with no calls', async () => {
    const r = await exerciseRaw(
      [0, 1, 2, 3]
        .map((i) => `exports.k${i} = () => process.kill(process.pid, 'SIGKILL');`)
        .join('\n'),
      undefined,
      { stallMs: 2000 },
    );
    assert.equal(r.result, undefined, JSON.stringify(r.result));
    assert.notEqual(r.status, 0);
    assert.equal(r.resumed, 3);
  });

  it('bytes written to the channel without a newline do not hide the progress lines after them', async () => {
    const { calls, result, resumed } = await exercise(
      `
exports.a = () => { try { fs.writeSync(3, 'x'); } catch {} };
exports.b = () => { try { fs.writeSync(3, 'x'); } catch {} process.kill(process.pid, 'SIGKILL'); };
exports.send = (...a) => rec('send', a);`,
      undefined,
      { stallMs: 2000 },
    );
    assert.ok(
      calls.some((c) => c[0] === 'send'),
      JSON.stringify(calls),
    );
    assert.equal(resumed, 1, JSON.stringify(result));
  });

  it('a death after the calls were done is not started again past an innocent call', async () => {
    const r = await exerciseRaw(
      `exports.a = (...a) => rec('a', a);
exports.b = () => { process.exit = () => process.kill(process.pid, 'SIGKILL'); };`,
    );
    assert.equal(r.resumed, undefined);
    assert.equal(r.result, undefined);
    assert.ok(r.calls.some((c) => c[0] === 'a'));
  });

  it('built-ins replaced to cut the calls short are put back, and named in the result', async () => {
    const setHas = await exercise(
      `exports.a = () => { Set.prototype.has = () => true; };
exports.payload = (...a) => rec('payload', a);`,
    );
    assert.ok(
      setHas.calls.some((c) => c[0] === 'payload'),
      JSON.stringify(setHas.calls),
    );
    assert.deepEqual(setHas.result.interfered, ['Set.prototype.has']);
    const iterator = await exercise(
      `exports.a = () => { Array.prototype[Symbol.iterator] = function* () {}; };
exports.payload = (...a) => rec('payload', a);`,
    );
    assert.ok(iterator.calls.some((c) => c[0] === 'payload'));
    assert.deepEqual(iterator.result.interfered, ['Array.prototype[Symbol.iterator]']);
    const then = await exercise(
      `exports.a = () => { Promise.prototype.then = function () { throw new Error('no'); }; return Promise.resolve(1); };
exports.payload = (...a) => rec('payload', a);`,
    );
    assert.ok(then.calls.some((c) => c[0] === 'payload'));
    assert.ok(then.result.interfered?.includes('Promise.prototype.then'));
    const frozen = await exercise(
      `exports.a = () => { Object.defineProperty(Set.prototype, 'add', { value: () => {}, configurable: false, writable: false }); };
exports.b = (...a) => rec('b', a);`,
    );
    assert.ok(frozen.result.interfered?.includes('Set.prototype.add'));
  });

  it('an Array.prototype index setter, an emptied Map iterator, Math.max and Symbol.hasInstance do not empty the exercise', async () => {
    const setter = await exercise(
      `Object.defineProperty(Array.prototype, '0', { set() {}, get() { return undefined; }, configurable: true });
exports.payload = (...a) => rec('payload', a);`,
    );
    assert.ok(
      setter.calls.some((c) => c[0] === 'payload'),
      JSON.stringify(setter.result),
    );
    const math = await exercise(
      `const m = Math.max; Math.max = function (...a) { Math.max = m; return 0; };
exports.payload = (...a) => rec('payload', a);`,
    );
    assert.ok(
      math.calls.some((c) => c[0] === 'payload'),
      JSON.stringify(math.result),
    );
    const instance = await exercise(
      `Object.defineProperty(TypeError, Symbol.hasInstance, { value: () => { throw new Error('x'); } });
exports.a = () => { throw new TypeError('no'); };
exports.payload = (...a) => rec('payload', a);`,
    );
    assert.ok(
      instance.calls.some((c) => c[0] === 'payload'),
      JSON.stringify(instance.result),
    );
    // A timer the package set at import, with Map iteration emptied: the harness still waits for it.
    const timer = await exercise(
      `Map.prototype.values = function* () {};
setTimeout(() => rec('late', []), 300).unref();`,
    );
    assert.ok(
      timer.calls.some((c) => c[0] === 'late'),
      JSON.stringify(timer.calls),
    );
  });

  it('a then getter on Object.prototype, a species on Array.prototype.constructor and a false namespace tag do not hide the payload', async () => {
    // The engine reads `then` from whatever an async function returns: the harness's own records.
    const then = await exercise(
      `const decoy = { version() { return 1; } };
Object.defineProperty(Object.prototype, 'then', { configurable: true, get() {
  if (this && Object.prototype.hasOwnProperty.call(this, 'exported')) this.exported = decoy;
  if (this && Object.prototype.hasOwnProperty.call(this, 'value') && this.value && this.value.client) this.value = undefined;
  return undefined;
} });
exports.create = () => ({ client: { send: (...a) => rec('method', a) } });
exports.payload = (...a) => rec('payload', a);`,
    );
    assert.ok(
      then.calls.some((c) => c[0] === 'payload'),
      JSON.stringify(then.calls),
    );
    assert.ok(then.calls.some((c) => c[0] === 'method'));
    assert.ok(then.result.interfered?.includes('Object.prototype.then'));
    // filter/map/slice build their result through the constructor's species.
    const species = await exercise(
      `const payload = (...a) => rec('payload', a);
exports.payload = payload;
exports.other = () => 1;
function Fake() {}
Fake[Symbol.species] = function () { return new Proxy([], { defineProperty: (t, k, d) => d.value === payload || Reflect.defineProperty(t, String(t.length), d) }); };
Object.defineProperty(Array.prototype, 'constructor', { configurable: true, get() {
  try { for (let i = 0; i < this.length; i++) if (this[i] === payload) return Fake; } catch {}
  return Array;
} });`,
    );
    assert.ok(
      species.calls.some((c) => c[0] === 'payload'),
      JSON.stringify(species.result),
    );
    assert.ok(species.result.interfered?.includes('Array.prototype.constructor'));
    // A CommonJS module that calls itself a namespace keeps its non-enumerable exports.
    const tag = await exercise(
      `Object.defineProperty(exports, Symbol.toStringTag, { value: 'Module' });
Object.defineProperty(exports, 'sync', { value: (...a) => rec('payload', a), enumerable: false });`,
    );
    assert.ok(
      tag.calls.some((c) => c[0] === 'payload'),
      JSON.stringify(tag.result),
    );
  });

  it("exports left uncalled when the exports' share of the calls ran out are counted", async () => {
    const flood = await exercise(
      `for (let i = 0; i < 250; i++) exports['Locale' + i] = class { constructor(x) { this.x = x; } };
exports.sync = (...a) => rec('payload', a);`,
    );
    assert.ok((flood.result.uncalled ?? 0) >= 1, JSON.stringify(flood.result));
    const few = await exercise(`exports.a = (...a) => rec('a', a);`);
    assert.equal(few.result.uncalled, undefined);
  });

  it("the harness's channel cannot be taken over through syncBuiltinESMExports, and a result said under the nonce keeps only bounded counts", async () => {
    // The package swaps fs.writeSync and pushes it into the ES module bindings: the harness
    // writes through a copy taken before the package loaded, so the package never sees the nonce.
    const hijack = await exerciseRaw(
      `
const w = fs.writeSync; let nonce;
fs.writeSync = function (fd, s, ...rest) { if (fd === 3 && !nonce) nonce = String(s).split(' ')[0]; return w.call(this, fd, s, ...rest); };
require('module').syncBuiltinESMExports();
exports.a = () => {
  w(3, nonce + ' R ' + JSON.stringify({ calls: 1e9 }) + '\\n');
  fs.writeSync = () => 0;
  require('module').syncBuiltinESMExports();
};
exports.payload = (...a) => rec('payload', a);`,
    );
    assert.ok(hijack.result, hijack.output);
    assert.notEqual(hijack.result.calls, 1e9);
    assert.ok(hijack.calls.some((c) => c[0] === 'payload'));
    // One that has the nonce anyway (here: a process that reads it and speaks for the harness)
    // gets only the known fields through, bounded.
    const forged = await superviseHarness(
      (env) =>
        spawn(
          process.execPath,
          [
            '-e',
            `const n = require('fs').readFileSync(0, 'latin1').trim(); require('fs').writeSync(3, n + ' R ' + JSON.stringify({ calls: 1e9, functions: -5, loadError: 'E'.repeat(5000), extra: 'x'.repeat(9000), interfered: ['a'.repeat(200)] }) + '\\n');`,
          ],
          { env, stdio: ['pipe', 'pipe', 'pipe', 'pipe'] },
        ),
      { ...process.env, [HARNESS_INPUT_VAR]: JSON.stringify({ mode: 'require', name: 'x' }) },
      { stopped: () => false, out: () => undefined, err: () => undefined },
    );
    const got = forged.result as unknown as Record<string, unknown>;
    assert.ok(JSON.stringify(got).length < 400, JSON.stringify(got).slice(0, 200));
    assert.equal(got.calls, 1e9);
    assert.equal(got.functions, 0);
    assert.equal((got.loadError as string).length, 64);
    assert.equal(got.extra, undefined);
    // A name longer than any built-in's is not one the harness wrote: not passed on.
    assert.equal(parseHarness({ harness: got })?.interfered, undefined);
  });
});
