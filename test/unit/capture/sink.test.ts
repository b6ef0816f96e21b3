import { scratch } from '../../support/scratch.js';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { EventSink, type AttemptInput, type SinkLimits } from '../../../src/capture/sink.js';
import { findBaitLeaks } from '../../../src/core/bait.js';
import { summaryEvents } from '../../../src/core/bounds.js';
import { parseEventLog, type EventLog } from '../../../src/core/events.js';
import type { CaptureEvent, DnsEvent, ProcessInfo, StreamEvent } from '../../../src/core/terms.js';

function newSink(limits: Partial<SinkLimits> = {}): { sink: EventSink; read: () => EventLog } {
  const path = join(scratch('sink-'), 'events.ndjson');
  const sink = new EventSink(path, limits);
  return { sink, read: () => parseEventLog(readFileSync(path, 'utf8')) };
}

const PROC: ProcessInfo = { pid: 42, cmd: 'node flood.js', startMs: 1000 };
const dns = (qname: string, proc?: ProcessInfo): AttemptInput => ({
  kind: 'dns',
  qname,
  qtype: 'A',
  resolver: '192.168.1.1',
  resolverPort: 53,
  transport: 'udp',
  answer: '198.18.0.1',
  ...(proc ? { proc } : {}),
});
const post = (body: string, path = '/upload'): AttemptInput => ({
  kind: 'http',
  ip: '198.18.0.9',
  port: 80,
  host: 'exfil.example',
  bytesOut: 200 + body.length,
  method: 'POST',
  path,
  httpVersion: '1.1',
  headers: [
    ['host', 'exfil.example'],
    ['content-type', 'text/plain'],
  ],
  bodyBytes: body.length,
  bodySample: Buffer.from(body).toString('base64'),
});
const udp = (port: number, data = 'ping'): AttemptInput => ({
  kind: 'udp',
  ip: '203.0.113.9',
  port,
  bytes: data.length,
  sampleHex: Buffer.from(data).toString('hex'),
});

/** Every attempt of a kind, counted once: in detail, in summaries, or only counted. */
function accounted(log: EventLog, kind: CaptureEvent['kind']): number {
  return (
    log.events.filter((e) => e.kind === kind).length +
    log.summaries.filter((s) => s.of === kind).reduce((n, s) => n + s.count, 0) +
    (log.truncatedCounts[kind] ?? 0)
  );
}

const MARKER = 'npm_TOKEN_0123456789abcdefghijklmnop';
const BAIT = [{ id: 'npm', label: 'npm token', where: ['~/.npmrc'], value: MARKER }];

describe('event sink', () => {
  it('writes events in order with sequence numbers and monotonic times', () => {
    const { sink, read } = newSink();
    sink.record({ kind: 'icmp', ip: '203.0.113.1', count: 1 });
    sink.record({ kind: 'icmp', ip: '203.0.113.2', count: 2 });
    sink.finish();
    const log = read();
    assert.deepEqual(
      log.events.map((e) => e.seq),
      [0, 1],
    );
    assert.ok(log.events[1] && log.events[0] && log.events[1].t >= log.events[0].t);
    assert.equal(log.malformedLines, 0);
  });

  it('past its bounds keeps counting per kind and says so, losing no attempt', () => {
    const { sink, read } = newSink({ maxEvents: 10, maxBytes: 1 << 20 });
    for (let i = 0; i < 1000; i++)
      sink.record({ kind: 'icmp', ip: `203.0.113.${i % 250}`, count: 1 });
    sink.finish();
    for (let i = 0; i < 5; i++)
      sink.record({ kind: 'udp', ip: '203.0.113.1', port: 1, bytes: 1, sampleHex: '00' });
    sink.finish();
    const log = read();
    assert.equal(log.events.filter((e) => e.kind === 'icmp').length, 10);
    assert.equal(accounted(log, 'icmp'), 1000);
    assert.equal(accounted(log, 'udp'), 5);
    assert.ok(log.bounds.find((b) => b.bound === 'events' && b.limit === 10));
  });

  it('skips a torn last line', () => {
    const log = parseEventLog('{"kind":"icmp","seq":0,"t":1,"ip":"x","count":1}\n{"kind":"ic');
    assert.equal(log.events.length, 1);
    assert.equal(log.malformedLines, 1);
  });

  it('a flood of one name does not hide a later new name or an HTTP POST with a body', () => {
    const { sink, read } = newSink();
    for (let i = 0; i < 51_000; i++) sink.record(dns('boring.example', PROC));
    assert.equal(sink.record(dns('evil.example', PROC)), 'detail');
    assert.equal(sink.record(post(`token=${MARKER}`)), 'detail');
    sink.finish();
    const log = read();
    const boring = log.events.filter((e) => e.kind === 'dns' && e.qname === 'boring.example');
    assert.equal(boring.length, 20, 'the first 20 in detail');
    const summary = log.summaries.filter((s) => s.qname === 'boring.example');
    assert.equal(summary.length, 1);
    assert.equal(summary[0]?.count, 50_980, 'the rest counted exactly');
    assert.equal(summary[0]?.proc?.cmd, PROC.cmd, 'with the process that made them');
    assert.ok(log.events.find((e) => e.kind === 'dns' && e.qname === 'evil.example'));
    const http = log.events.find((e): e is StreamEvent => e.kind === 'http');
    assert.ok(http, 'the POST is kept in detail');
    assert.equal(Buffer.from(http.bodySample ?? '', 'base64').toString(), `token=${MARKER}`);
    assert.equal(findBaitLeaks(log.events, BAIT).length > 0, true, 'and its bait is found');
    assert.deepEqual(
      log.bounds.map((b) => [b.bound, b.limit, b.count]),
      [['per-destination', 20, 50_980]],
    );
    assert.equal(Object.keys(log.truncatedCounts).length, 0);
    assert.equal(log.captureStats, undefined);
  });

  it('keeps a repeated destination in detail when it carries a new payload', () => {
    const { sink, read } = newSink({ perDestination: 2 });
    for (let i = 0; i < 10; i++) sink.record(post('same body'));
    for (let i = 0; i < 5; i++) sink.record(post(`body ${i}`));
    for (let i = 0; i < 5; i++) sink.record(post('same body', `/p${i}`));
    sink.finish();
    const log = read();
    const http = log.events.filter((e): e is StreamEvent => e.kind === 'http');
    assert.equal(http.length, 2 + 5 + 5, 'two repeats, then every new body and path');
    assert.equal(log.summaries[0]?.count, 8);
    assert.equal(log.summaries[0]?.bodySample, undefined, 'a repeat needs no sample');
    assert.equal(accounted(log, 'http'), 20);
  });

  it('past the hard bounds keeps names, paths, headers and body samples in summaries', () => {
    const { sink, read } = newSink({ maxEvents: 5 });
    for (let i = 0; i < 100; i++) sink.record(dns(`name${i}.example`));
    assert.equal(
      sink.record(dns(`${Buffer.from(MARKER).toString('hex')}.exfil.example`)),
      'summary',
    );
    assert.equal(sink.record(post(`a=1&secret=${MARKER}&${'x'.repeat(5000)}`)), 'summary');
    assert.equal(sink.record(post('boring')), 'summary');
    assert.equal(sink.record(post('boring')), 'summary');
    sink.finish();
    const log = read();
    assert.equal(log.events.filter((e) => e.kind === 'dns').length, 5);
    const names = log.summaries.filter((s) => s.of === 'dns').map((s) => s.qname);
    assert.equal(names.length, 96, 'every distinct name has its summary');
    const bodies = log.summaries.filter((s) => s.of === 'http');
    assert.equal(bodies.length, 2, 'one per distinct payload');
    const secret = bodies.find((s) => s.count === 1 && s.bodySample);
    assert.ok(secret);
    assert.equal(secret.path, '/upload');
    assert.deepEqual(secret.headers?.[0], ['host', 'exfil.example']);
    assert.ok(Buffer.from(secret.bodySample ?? '', 'base64').length <= 1024, 'a small sample');
    assert.equal(bodies.find((s) => s !== secret)?.count, 2);
    const synthetic = summaryEvents(log).map((s) => s.event);
    const leaks = findBaitLeaks(synthetic, BAIT);
    assert.ok(leaks.find((l) => l.channel === 'HTTP body'));
    assert.ok(leaks.find((l) => l.channel === 'DNS name'));
    const events = log.bounds.find((b) => b.bound === 'events');
    assert.equal(events?.limit, 5);
    assert.equal(events?.count, 99, 'every attempt the bound kept from detail');
  });

  it('every bound hit yields its record', () => {
    const { sink, read } = newSink({
      maxEvents: 1000,
      maxBytes: 2000,
      maxDestinations: 50,
      maxSummaryBytes: 3000,
      perDestination: 1,
    });
    for (let i = 0; i < 3; i++) sink.record(dns('again.example'));
    for (let i = 0; i < 200; i++) sink.record(udp(1000 + i));
    sink.hitBound('connections', 4096, 3);
    sink.hitBound('lookups', 4096);
    sink.hitBound('datagrams', 32768);
    sink.hitBound('body-samples', 16 << 20);
    sink.finish();
    const log = read();
    const bounds = Object.fromEntries(log.bounds.map((b) => [b.bound, b]));
    assert.deepEqual(Object.keys(bounds).sort(), [
      'body-samples',
      'bytes',
      'connections',
      'datagrams',
      'destinations',
      'lookups',
      'per-destination',
      'summary-bytes',
    ]);
    assert.equal(bounds.connections?.count, 3);
    assert.equal(bounds['per-destination']?.count, 2);
    assert.equal(bounds.destinations?.limit, 50);
    assert.equal(accounted(log, 'udp'), 200, 'no datagram lost without a count');
    assert.ok((log.truncatedCounts.udp ?? 0) > 0, 'some only counted');
    assert.match(
      (log.events.find((e) => e.kind === 'truncated') as { reason: string }).reason,
      /destinations|summary/,
    );
  });

  it('bound records grow at each flush and the reader keeps the largest', () => {
    const { sink, read } = newSink();
    sink.hitBound('connections', 4096);
    sink.finish();
    sink.hitBound('connections', 4096, 4);
    sink.finish();
    const log = read();
    assert.equal(log.bounds.length, 1);
    assert.equal(log.bounds[0]?.count, 5);
  });

  it('summaries are deltas per flush and add up exactly', () => {
    const { sink, read } = newSink({ perDestination: 3 });
    for (let i = 0; i < 10; i++) sink.record(dns('x.example'));
    sink.finish();
    for (let i = 0; i < 7; i++) sink.record(dns('x.example'));
    sink.finish();
    sink.finish();
    const log = read();
    assert.deepEqual(
      log.summaries.map((s) => s.count),
      [7, 7],
    );
    assert.equal(accounted(log, 'dns'), 17);
    const [a, b] = log.summaries;
    assert.ok(a && b && a.t <= (a.lastT ?? a.t) && (a.lastT ?? a.t) <= b.t);
  });

  it('summarises per process, each naming its process once in full', () => {
    const { sink, read } = newSink({ perDestination: 1 });
    const other: ProcessInfo = { pid: 43, cmd: 'sh -c curl', startMs: 2000, package: 'x@1.0.0' };
    for (let i = 0; i < 4; i++) sink.record(dns('y.example', PROC));
    for (let i = 0; i < 4; i++) sink.record(dns('y.example', other));
    for (let i = 0; i < 4; i++) sink.record(dns('z.example', other));
    sink.finish();
    const log = read();
    const byProc = log.summaries.map((s) => [s.qname, s.proc?.pid, s.count]);
    assert.deepEqual(byProc, [
      ['y.example', 42, 3],
      ['y.example', 43, 4],
      ['z.example', 43, 3],
    ]);
    assert.equal(log.summaries[2]?.proc?.package, 'x@1.0.0', 'resolved from its reference');
  });

  it('writes the capture statistics it is given', () => {
    const { sink, read } = newSink();
    sink.record(dns('a.example'));
    sink.countOnly('udp', 'refused');
    sink.finish({
      lookups: 1,
      lookupsAnswered: 1,
      lookupsTimedOut: 0,
      lookupsSkipped: 0,
      lookupsUnasked: 1,
      datagramsLost: 16_000,
      conntrackDrops: 0,
      conntrackMisses: 0,
      observer: 'connected',
      observerUnresponsive: 0,
      observerRejected: 0,
    });
    const log = read();
    assert.equal(log.captureStats?.attempts, 2);
    assert.equal(log.captureStats?.datagramsLost, 16_000);
    assert.equal(log.truncatedCounts.udp, 1);
  });

  it('caps observer records per status', () => {
    const { sink, read } = newSink();
    sink.record({ kind: 'observer', status: 'connected' });
    for (let i = 0; i < 100; i++) sink.record({ kind: 'observer', status: 'rejected' });
    sink.record({ kind: 'observer', status: 'unresponsive' });
    sink.finish();
    const log = read();
    assert.equal(log.events.filter((e) => e.kind === 'observer').length, 21);
    assert.equal(log.observerHealth.length, 1);
  });

  it('stays within the size the host reads, every line readable', () => {
    const path = join(scratch('sink-'), 'events.ndjson');
    const sink = new EventSink(path, { maxEvents: 1_000_000 });
    const head = 'x'.repeat(60_000);
    for (let i = 0; i < 600; i++)
      sink.record({
        ...(post(`${i}`, `/${head}`) as Extract<AttemptInput, { kind: 'tcp' | 'tls' | 'http' }>),
        headers: [['x', head]],
      });
    sink.finish();
    assert.ok(statSync(path).size < 64 * 1024 * 1024);
    const log = parseEventLog(readFileSync(path, 'utf8'));
    assert.equal(log.malformedLines, 0);
    assert.ok(log.bounds.find((b) => b.bound === 'bytes'));
    assert.equal(accounted(log, 'http'), 600);
  });
});

describe('event log reader', () => {
  const line = (o: Record<string, unknown>) => JSON.stringify(o);
  it('refuses unknown kinds, missing fields, infinite numbers and huge lines', () => {
    const good: Omit<DnsEvent, never> = {
      kind: 'dns',
      seq: 0,
      t: 1,
      qname: 'a.example',
      qtype: 'A',
      resolver: '192.168.1.1',
      resolverPort: 53,
      transport: 'udp',
      answer: '198.18.0.1',
    };
    const text = [
      line({ ...good }),
      line({ ...good, seq: 1, kind: 'nonsense' }),
      line({ ...good, seq: 2, qname: 7 }),
      '{"kind":"icmp","seq":3,"t":1,"ip":"x","count":1e999}',
      line({ ...good, seq: 4, proc: { pid: 'x', cmd: 'y', startMs: 1 } }),
      line({ ...good, seq: 5, qname: 'y'.repeat(2 * 1024 * 1024) }),
      '{"kind":"truncated","seq":6,"t":1,"reason":"r","countsByKind":{"__proto__":1}}',
      line({ kind: 'bound', seq: 7, t: 1, bound: 'events', limit: 1, count: -1 }),
      line({ kind: 'summary', seq: 8, t: 1, of: 'observer', count: 1 }),
      line({ ...good, seq: 9.5 }),
    ].join('\n');
    const log = parseEventLog(text);
    assert.equal(log.events.length, 1);
    assert.equal(log.malformedLines, 9);
  });

  it('returns bounds, statistics, summaries and observer health apart from the events', () => {
    const text = [
      line({ kind: 'observer', seq: 0, t: 1, status: 'connected' }),
      line({ kind: 'observer', seq: 1, t: 2, status: 'unresponsive' }),
      line({ kind: 'bound', seq: 2, t: 3, bound: 'events', limit: 10, count: 1 }),
      line({
        kind: 'summary',
        seq: 3,
        t: 4,
        of: 'dns',
        count: 5,
        qname: 'a.example',
        procRef: 1,
        proc: PROC,
      }),
      line({ kind: 'summary', seq: 4, t: 5, of: 'dns', count: 2, qname: 'b.example', procRef: 1 }),
      line({ kind: 'bound', seq: 5, t: 6, bound: 'events', limit: 10, count: 7 }),
      line({
        kind: 'capture-stats',
        seq: 6,
        t: 7,
        attempts: 1,
        lookups: 1,
        lookupsAnswered: 0,
        lookupsTimedOut: 1,
        lookupsSkipped: 0,
        lookupsUnasked: 0,
        datagramsLost: 3,
        conntrackDrops: 0,
        conntrackMisses: 0,
        observer: 'unresponsive',
        observerUnresponsive: 1,
        observerRejected: 0,
      }),
      line({ kind: 'observer', seq: 7, t: 8, status: 'responsive' }),
    ].join('\n');
    const log = parseEventLog(text);
    assert.equal(log.malformedLines, 0);
    assert.deepEqual(
      log.events.map((e) => e.kind),
      ['observer'],
    );
    assert.deepEqual(
      log.observerHealth.map((e) => e.status),
      ['unresponsive', 'responsive'],
    );
    assert.equal(log.bounds.length, 1);
    assert.equal(log.bounds[0]?.count, 7);
    assert.equal(log.bounds[0]?.t, 3, 'dated when first hit');
    assert.equal(log.captureStats?.datagramsLost, 3);
    assert.equal(log.summaries[1]?.proc?.pid, PROC.pid, 'procRef resolved');
  });
});
