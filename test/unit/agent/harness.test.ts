/**
 * The exercise harness, run on the host against a package written here that only records what is
 * called into a file (no network, no sandbox needed): what it calls, with which arguments, and
 * that the methods of what calls return are reached.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { HARNESS_INPUT_VAR, type HarnessResult } from '../../../src/agent/harness.js';

const root = mkdtempSync(join(tmpdir(), 'phonehome-harness-'));
after(() => rmSync(root, { recursive: true, force: true }));
const harness = fileURLToPath(new URL('../../../src/agent/harness.js', import.meta.url));

function exercise(source: string, host = 'db.prod-4821.9f3a0c1e.com') {
  const project = join(root, String(Math.random()).slice(2));
  const pkg = join(project, 'node_modules', 'rec');
  mkdirSync(pkg, { recursive: true });
  const log = join(project, 'calls.log');
  writeFileSync(join(pkg, 'package.json'), '{"name":"rec","version":"1.0.0","main":"index.js"}');
  writeFileSync(
    join(pkg, 'index.js'),
    `const fs = require('fs');\nconst rec = (what, args) => fs.appendFileSync(${JSON.stringify(log)}, JSON.stringify([what, ...args.map((a) => typeof a === 'function' ? 'fn' : a)]) + '\\n');\n${source}`,
  );
  const marker = '@@test@@';
  const r = spawnSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `import { run } from ${JSON.stringify(harness)};\nawait run((n) => import(n));`,
    ],
    {
      cwd: project,
      env: {
        ...process.env,
        [HARNESS_INPUT_VAR]: JSON.stringify({
          mode: 'exercise',
          name: 'rec',
          marker,
          callerHost: host,
          graceMs: 50,
        }),
      },
      encoding: 'utf8',
      timeout: 30_000,
    },
  );
  const line = r.stdout.split('\n').find((l) => l.startsWith(marker));
  assert.ok(line, `a result line:\n${r.stdout}\n${r.stderr}`);
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
    result: JSON.parse(line.slice(marker.length)) as HarnessResult,
    calls,
    status: r.status,
  };
}

describe('exercise harness', () => {
  it('passes the caller host as a string, in a URL and in an options object', () => {
    const { calls } = exercise(`exports.connect = (...a) => rec('connect', a);`);
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

  it('calls the methods of an instance, of a returned client and of what it holds, once per export', () => {
    const { result, calls } = exercise(`
class Client {
  constructor(...a) { rec('new', a); this.messages = { send: (...x) => rec('messages.send', x) }; }
  query(...a) { rec('query', a); }
  get secret() { rec('getter', []); return 1; }
}
exports.Client = Client;
exports.createClient = async (...a) => ({ list: (...x) => rec('list', x) });`);
    const names = new Set(calls.map((c) => c[0]));
    for (const n of ['new', 'query', 'messages.send', 'list'])
      assert.ok(names.has(n), [...names].join(','));
    assert.ok(!names.has('getter'), 'getters are not run');
    // Seven instances were made, one was looked into: its methods four times each.
    assert.equal(calls.filter((c) => c[0] === 'query').length, 4);
    assert.ok(result.methods >= 3, JSON.stringify(result));
  });

  it("a method that calls process.exit() does not end the exercise, and the harness's own exit is Node's", () => {
    const { result, calls, status } = exercise(`
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
  it('calls the methods of what a method returns (two levels), and no deeper', () => {
    const { result, calls } = exercise(`
exports.connect = () => ({
  db: () => ({ collection: (...x) => { rec('collection', x); return { find: () => rec('find', []) }; } }),
});`);
    const names = new Set(calls.map((c) => c[0]));
    // connect() gives { db } (looked into), db() gives { collection } (looked into: the second
    // level); what collection() gives is not.
    assert.ok(names.has('collection'), [...names].join(','));
    assert.ok(!names.has('find'), [...names].join(','));
    const two = exercise(`
exports.createClient = () => ({ login: async () => ({ send: (...x) => rec('send', x) }) });`);
    assert.ok(
      two.calls.some((c) => c[0] === 'send'),
      `a method of the object a method's promise gave: ${JSON.stringify(two.calls)}`,
    );
    assert.ok(two.result.methods >= 2, JSON.stringify(two.result));
    assert.ok(result.methods >= 2, JSON.stringify(result));
  });

  it('emits the lifecycle events, and the events it listens for, on returned and exported emitters', () => {
    const { result, calls } = exercise(`
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

  it('steps through async iterators, iterables and generators it is given, three steps at most', () => {
    const { result, calls } = exercise(`
exports.stream = () => ({
  [Symbol.asyncIterator]() { let n = 0; return { next: async () => { rec('async-step', [n]); return { done: n++ > 10, value: n }; } }; },
});
exports.pages = function* pages() { rec('generator-body', []); yield 1; };
exports.list = () => [1, 2, 3];`);
    assert.equal(calls.filter((c) => c[0] === 'async-step').length, 3, JSON.stringify(calls));
    assert.ok(
      calls.some((c) => c[0] === 'generator-body'),
      JSON.stringify(calls),
    );
    assert.ok(result.iterated >= 4, JSON.stringify(result));
  });

  it("gives 'beforeExit' listeners their moment, as a process that ends on its own would", () => {
    const { result, calls } = exercise(`process.on('beforeExit', () => rec('before-exit', []));`);
    assert.ok(
      calls.some((c) => c[0] === 'before-exit'),
      JSON.stringify(calls),
    );
    assert.ok(result.emitted >= 1, JSON.stringify(result));
  });
});

describe('exercise harness, against hostile return values', () => {
  it('a Proxy that throws or never ends its prototype chain stops neither the harness nor the next export', () => {
    const { result, calls, status } = exercise(`
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
