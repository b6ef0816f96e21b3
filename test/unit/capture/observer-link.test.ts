import { scratch } from '../../support/scratch.js';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import {
  LOOKUP_TIMEOUT_MS,
  MAX_PENDING,
  ObserverLink,
} from '../../../src/capture/observer-link.js';
import { EventSink } from '../../../src/capture/sink.js';
import { parseEventLog } from '../../../src/core/events.js';
import type { ProcessInfo } from '../../../src/core/terms.js';

interface Req {
  id: number;
  proto: string;
  port: number;
  rport?: number;
}

/** A link and a fake observer connected to it, which records requests and answers on demand. */
const links: ObserverLink[] = [];
after(() => links.forEach((l) => l.close()));

async function setup() {
  const path = join(scratch('link-'), 'events.ndjson');
  const sink = new EventSink(path);
  const link = new ObserverLink(sink);
  links.push(link);
  const name = `phonehome-test-${randomBytes(6).toString('hex')}`;
  await link.listen(name);
  const requests: Req[] = [];
  const chunks: number[] = [];
  const observer: Socket = connect({ path: `\0${name}` });
  await new Promise<void>((r) => observer.once('connect', () => r()));
  let pending = '';
  observer.setEncoding('utf8');
  observer.on('data', (c: string) => {
    pending += c;
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    chunks.push(lines.length);
    for (const l of lines) requests.push(JSON.parse(l) as Req);
  });
  // Wait until the link has taken the connection.
  for (let i = 0; i < 100 && link.state !== 'connected'; i++)
    await new Promise((r) => setTimeout(r, 5));
  const answer = (id: number, proc?: ProcessInfo) =>
    observer.write(JSON.stringify(proc ? { id, proc } : { id }) + '\n');
  const log = () => {
    sink.finish();
    return parseEventLog(readFileSync(path, 'utf8'));
  };
  const until = async (cond: () => boolean, ms = 2000) => {
    const end = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > end) throw new Error('condition not met in time');
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  return { link, observer, requests, chunks, answer, log, until, name };
}

const PROC: ProcessInfo = { pid: 7, cmd: 'node x.js', startMs: 100 };

describe('observer link', () => {
  it('asks once per socket and in one write per turn, and answers every waiter', async () => {
    const { link, observer, requests, chunks, answer, until } = await setup();
    const waits = [
      link.who('udp', 5000, 53),
      link.who('udp', 5000, 53),
      link.who('udp', 5000, 53),
      link.who('tcp', 6000, 80),
    ];
    await until(() => requests.length === 2);
    assert.deepEqual(chunks, [2], 'both requests in one write');
    for (const r of requests) answer(r.id, PROC);
    const got = await Promise.all(waits);
    assert.deepEqual(
      got.map((p) => p?.pid),
      [7, 7, 7, 7],
    );
    assert.equal(link.stats.lookups, 4);
    assert.equal(link.stats.lookupsAnswered, 4);
    observer.destroy();
  });

  it('never waits longer than the timeout; after three timeouts stops asking until it answers a probe', async () => {
    const { link, observer, requests, answer, log, until } = await setup();
    const t0 = performance.now();
    const got = await Promise.all([1, 2, 3].map((i) => link.who('tcp', 7000 + i, 80)));
    const waited = performance.now() - t0;
    assert.deepEqual(got, [undefined, undefined, undefined]);
    assert.ok(waited >= LOOKUP_TIMEOUT_MS - 5 && waited < LOOKUP_TIMEOUT_MS + 200, `${waited}`);
    assert.equal(link.state, 'unresponsive');
    assert.equal(link.stats.lookupsTimedOut, 3);
    // Unresponsive: answered at once, not asked.
    const t1 = performance.now();
    assert.equal(await link.who('tcp', 7100, 80), undefined);
    assert.ok(performance.now() - t1 < 20);
    assert.equal(link.stats.lookupsSkipped, 1);
    // A probe goes out; answering it in time brings the link back.
    await until(() => requests.some((r) => r.port === 0));
    const probe = requests.filter((r) => r.port === 0).pop();
    assert.ok(probe);
    answer(probe.id);
    await until(() => link.state === 'connected');
    const again = link.who('tcp', 7200, 80);
    await until(() => requests.some((r) => r.port === 7200));
    answer(requests.find((r) => r.port === 7200)?.id ?? -1, PROC);
    assert.equal((await again)?.pid, 7);
    const l = log();
    assert.deepEqual(
      l.observerHealth.map((e) => e.status),
      ['unresponsive', 'responsive'],
    );
    assert.equal(link.unresponsiveTimes, 1);
    observer.destroy();
  });

  it('an answer after the timeout changes nothing', async () => {
    const { link, observer, requests, answer } = await setup();
    const p = link.who('udp', 8000);
    assert.equal(await p, undefined);
    answer(requests[0]?.id ?? -1, PROC);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(link.state, 'connected', 'one timeout is not unresponsive');
    assert.equal(link.stats.lookupsTimedOut, 1);
    assert.equal(link.stats.lookupsAnswered, 0);
    observer.destroy();
  });

  it('a lost observer ends every wait and later lookups are skipped', async () => {
    const { link, observer, log, until } = await setup();
    const p = link.who('udp', 9000);
    await new Promise((r) => setTimeout(r, 10));
    observer.destroy();
    assert.equal(await p, undefined);
    await until(() => link.state === 'lost');
    assert.equal(await link.who('udp', 9001), undefined);
    assert.equal(link.stats.lookupsSkipped, 1);
    assert.ok(log().events.find((e) => e.kind === 'observer' && e.status === 'lost'));
  });

  it('refuses an impostor and counts it', async () => {
    const { link, observer, log, name, until } = await setup();
    const impostor = connect({ path: `\0${name}` });
    impostor.on('error', () => undefined);
    await until(() => link.rejected === 1);
    assert.ok(log().events.find((e) => e.kind === 'observer' && e.status === 'rejected'));
    assert.equal(link.state, 'connected');
    observer.destroy();
    impostor.destroy();
  });

  it('does not ask past its bound of requests in flight', async () => {
    const { link, observer, requests, answer, log, until } = await setup();
    const waits = Array.from({ length: MAX_PENDING }, (_, i) => link.who('tcp', 10_000 + i));
    assert.equal(await link.who('tcp', 1), undefined, 'past the bound: not asked');
    assert.equal(link.stats.lookupsUnasked, 1);
    await until(() => requests.length === MAX_PENDING);
    for (const r of requests) answer(r.id);
    await Promise.all(waits);
    assert.ok(log().bounds.find((b) => b.bound === 'lookups' && b.limit === MAX_PENDING));
    observer.destroy();
  });

  it('skips lookups when no observer was configured', async () => {
    const path = join(scratch('link-'), 'events.ndjson');
    const link = new ObserverLink(new EventSink(path));
    assert.equal(link.state, 'none');
    assert.equal(await link.who('udp', 1), undefined);
    assert.equal(link.stats.lookupsSkipped, 1);
  });
});
