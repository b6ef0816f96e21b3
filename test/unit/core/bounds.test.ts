import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { findBaitLeaks } from '../../../src/core/bait.js';
import {
  boundFindings,
  boundSummaryLines,
  summaryDestination,
  summaryEvents,
} from '../../../src/core/bounds.js';
import { parseEventLog, type EventLog } from '../../../src/core/events.js';
import type { CaptureStatsEvent, StreamEvent } from '../../../src/core/terms.js';

const line = (o: Record<string, unknown>) => JSON.stringify(o);

const STATS: Omit<CaptureStatsEvent, 'seq' | 't'> = {
  kind: 'capture-stats',
  attempts: 100,
  lookups: 90,
  lookupsAnswered: 80,
  lookupsTimedOut: 4,
  lookupsSkipped: 6,
  lookupsUnasked: 2,
  datagramsLost: 0,
  conntrackDrops: 0,
  conntrackMisses: 0,
  observer: 'connected',
  observerUnresponsive: 0,
  observerRejected: 0,
};

function log(lines: Record<string, unknown>[]): EventLog {
  return parseEventLog(lines.map((l, seq) => line({ seq, t: 1000 + seq, ...l })).join('\n'));
}

const MARKER = 'ghp_0123456789abcdefghijklmnopqrstuvwxyz';

describe('capture bounds in a report', () => {
  it('a hard bound hit is a high capture-bound finding naming the bound and the count', () => {
    const l = log([
      { kind: 'bound', bound: 'events', limit: 50_000, count: 12 },
      { kind: 'bound', bound: 'events', limit: 50_000, count: 1_234 },
      { kind: 'bound', bound: 'connections', limit: 4096, count: 504 },
    ]);
    const f = boundFindings(l, (t) => (t < 1001 ? 'install' : 'exercise'));
    assert.equal(f.length, 2);
    const events = f.find((x) => x.rule === 'capture-bound:events');
    assert.ok(events);
    assert.equal(events.id, 'capture-bound');
    assert.equal(events.severity, 'high');
    assert.equal(events.phase, 'install', 'dated when first hit');
    assert.match(events.message, /50,000 detailed events/);
    assert.match(events.message, /1,234 attempts/);
    const conns = f.find((x) => x.rule === 'capture-bound:connections');
    assert.match(
      conns?.message ?? '',
      /4,096 TCP connections open at once: 504 attempts were refused/,
    );
  });

  it('the per-destination limit loses nothing: info only', () => {
    const f = boundFindings(
      log([{ kind: 'bound', bound: 'per-destination', limit: 20, count: 50_980 }]),
    );
    assert.deepEqual(
      f.map((x) => [x.id, x.severity]),
      [['capture-summarised', 'info']],
    );
  });

  it('an unknown bound from a newer capture is still a finding', () => {
    const f = boundFindings(log([{ kind: 'bound', bound: 'future-thing', limit: 1, count: 1 }]));
    assert.equal(f[0]?.severity, 'high');
    assert.match(f[0]?.message ?? '', /future-thing/);
  });

  it('an unresponsive observer is a medium finding; lost datagrams too; missing processes are info', () => {
    const l = log([
      { kind: 'observer', status: 'connected' },
      { kind: 'observer', status: 'unresponsive' },
      { kind: 'observer', status: 'responsive' },
      { kind: 'observer', status: 'unresponsive' },
      { ...STATS, datagramsLost: 16_000, observerUnresponsive: 2 },
    ]);
    const f = boundFindings(l, () => 'import');
    const byId = Object.fromEntries(f.map((x) => [x.id, x]));
    assert.equal(byId['observer-unresponsive']?.severity, 'medium');
    assert.equal(byId['observer-unresponsive']?.phase, 'import');
    assert.match(byId['observer-unresponsive']?.message ?? '', /2 times/);
    assert.equal(byId['datagrams-lost']?.severity, 'medium');
    assert.match(byId['datagrams-lost']?.message ?? '', /16,000 UDP datagrams/);
    assert.equal(byId['attribution-incomplete']?.severity, 'info');
    assert.match(byId['attribution-incomplete']?.message ?? '', /12 attempts of 100/);
  });

  it('conntrack drops are a capture bound; a clean run has no finding', () => {
    assert.deepEqual(
      boundFindings(log([{ ...STATS, lookupsTimedOut: 0, lookupsSkipped: 0, lookupsUnasked: 0 }])),
      [],
    );
    const f = boundFindings(log([{ ...STATS, conntrackDrops: 3 }]));
    assert.ok(f.find((x) => x.rule === 'capture-bound:conntrack' && x.severity === 'high'));
  });

  it('no attribution finding when the run had no observer', () => {
    const f = boundFindings(log([{ ...STATS, observer: 'none', lookupsSkipped: 100 }]));
    assert.deepEqual(f, []);
  });

  it('summaries become synthetic events that attribution and bait detection can use', () => {
    const proc = { pid: 9, cmd: 'node evil.js', startMs: 500, package: 'evil@1.0.0' };
    const l = log([
      {
        kind: 'summary',
        of: 'dns',
        count: 50_980,
        lastT: 2000,
        qname: 'boring.example',
        qtype: 'A',
        resolver: '192.168.1.1',
        resolverPort: 53,
        transport: 'udp',
        procRef: 1,
        proc,
      },
      {
        kind: 'summary',
        of: 'http',
        count: 1,
        ip: '198.18.0.9',
        port: 80,
        host: 'exfil.example',
        method: 'POST',
        path: '/u',
        headers: [['authorization', `Bearer ${MARKER}`]],
        bodySample: Buffer.from('x').toString('base64'),
        procRef: 1,
      },
      { kind: 'summary', of: 'icmp', count: 7, ip: '203.0.113.5' },
    ]);
    const s = summaryEvents(l);
    assert.equal(s.length, 3);
    assert.deepEqual(
      s.map((x) => [x.event.kind, x.count, x.firstT, x.lastT]),
      [
        ['dns', 50_980, 1000, 2000],
        ['http', 1, 1001, 1001],
        ['icmp', 7, 1002, 1002],
      ],
    );
    const http = s[1]?.event as StreamEvent;
    assert.equal(http.proc?.package, 'evil@1.0.0', 'the process, from its reference');
    assert.equal(http.host, 'exfil.example');
    const leaks = findBaitLeaks(
      s.map((x) => x.event),
      [{ id: 'gh', label: 'GitHub token', where: ['~/.config/gh'], value: MARKER }],
    );
    assert.equal(leaks[0]?.channel, 'HTTP headers');
    assert.equal(summaryDestination(l.summaries[0]!), 'boring.example (DNS A)');
    assert.equal(summaryDestination(l.summaries[1]!), 'exfil.example:80');
  });

  it('summary lines name the bounds, the summarised destinations and what was only counted', () => {
    const l = log([
      { kind: 'bound', bound: 'events', limit: 50_000, count: 10 },
      { kind: 'summary', of: 'dns', count: 40, qname: 'a.example', qtype: 'A' },
      { kind: 'summary', of: 'dns', count: 2, qname: 'a.example', qtype: 'A' },
      { kind: 'summary', of: 'udp', count: 5, ip: '203.0.113.9', port: 9 },
      { kind: 'truncated', reason: 'more than 200000 destinations', countsByKind: { udp: 3 } },
      { ...STATS, datagramsLost: 4 },
    ]);
    const lines = boundSummaryLines(l);
    assert.deepEqual(lines, [
      'capture bound: detailed events in the log (limit 50,000): 10 attempts affected',
      'summarised: 47 attempts to 2 destinations (a.example (DNS A) ×42, 203.0.113.9:9 ×5)',
      'counted only (no destination): udp 3',
      'datagrams dropped by the kernel: 4',
      'without their process: 12 attempts (timed out 4, skipped 6, not asked 2)',
    ]);
    assert.deepEqual(boundSummaryLines(log([])), []);
  });
});
