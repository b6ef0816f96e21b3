import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { EventSink } from '../../../src/capture/sink.js';
import { parseEventLog } from '../../../src/core/events.js';

describe('event sink', () => {
  it('writes events in order with sequence numbers and monotonic times', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'sink-')), 'events.ndjson');
    const sink = new EventSink(path);
    sink.record({ kind: 'icmp', ip: '203.0.113.1', count: 1 });
    sink.record({ kind: 'icmp', ip: '203.0.113.2', count: 2 });
    sink.finish();
    const log = parseEventLog(readFileSync(path, 'utf8'));
    assert.deepEqual(
      log.events.map((e) => e.seq),
      [0, 1],
    );
    assert.ok(log.events[1] && log.events[0] && log.events[1].t >= log.events[0].t);
    assert.equal(log.malformedLines, 0);
  });

  it('past its bounds keeps counting per kind and says so, losing no attempt', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'sink-')), 'events.ndjson');
    const sink = new EventSink(path, { maxEvents: 10, maxBytes: 1 << 20 });
    for (let i = 0; i < 1000; i++)
      sink.record({ kind: 'icmp', ip: `203.0.113.${i % 250}`, count: 1 });
    sink.finish();
    for (let i = 0; i < 5; i++)
      sink.record({ kind: 'udp', ip: '203.0.113.1', port: 1, bytes: 1, sampleHex: '00' });
    sink.finish();
    const log = parseEventLog(readFileSync(path, 'utf8'));
    const kept = log.events.filter((e) => e.kind === 'icmp').length;
    assert.equal(kept, 10);
    assert.equal(kept + (log.truncatedCounts.icmp ?? 0), 1000);
    assert.equal(log.truncatedCounts.udp, 5);
  });

  it('skips a torn last line', () => {
    const log = parseEventLog('{"kind":"icmp","seq":0,"t":1,"ip":"x","count":1}\n{"kind":"ic');
    assert.equal(log.events.length, 1);
    assert.equal(log.malformedLines, 1);
  });
});
