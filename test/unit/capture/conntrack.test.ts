import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Capture, reopened } from '../../../src/capture/capture.js';
import {
  ConntrackReader,
  type Lookup,
  parseConntrackLine,
  pickEntry,
  socketAddress,
} from '../../../src/capture/conntrack.js';
import { parseEventLog } from '../../../src/core/events.js';

// Lines as the kernel prints them in the gateway's namespace (shapes seen on our machines).
const TCP =
  'ipv4     2 tcp      6 119 ESTABLISHED src=192.168.1.23 dst=203.0.113.7 sport=40312 dport=1224 src=127.0.0.1 dst=192.168.1.23 sport=15001 dport=40312 [ASSURED] mark=0 zone=0 use=2';
const TCP_OLD =
  'ipv4     2 tcp      6 30 TIME_WAIT src=192.168.1.23 dst=198.18.0.9 sport=40312 dport=80 src=127.0.0.1 dst=192.168.1.23 sport=15001 dport=40312 [ASSURED] mark=0 zone=0 use=2';
const UDP =
  'ipv4     2 udp      17 29 src=192.168.1.23 dst=9.9.9.9 sport=51000 dport=53 [UNREPLIED] src=127.0.0.1 dst=192.168.1.23 sport=15053 dport=51000 mark=7 zone=0 use=2';
const TCP6 =
  'ipv6     10 tcp      6 119 SYN_RECV src=fd42:6e70:006d:0000:0000:0000:0000:0023 dst=2001:0db8:0000:0000:0000:0000:0000:0007 sport=50000 dport=8080 src=0000:0000:0000:0000:0000:0000:0000:0001 dst=fd42:6e70:006d:0000:0000:0000:0000:0023 sport=15001 dport=50000 mark=0 zone=0 use=2';
const ICMP =
  'ipv4     2 icmp     1 29 src=192.168.1.23 dst=203.0.113.5 type=8 code=0 id=17 [UNREPLIED] src=203.0.113.5 dst=192.168.1.23 type=0 code=0 id=17 mark=0 zone=0 use=2';

/** The ends of a redirected flow as the capture's socket sees them. */
const V4 = { clientAddress: '192.168.1.23', captureAddress: '127.0.0.1' };
const V6 = { clientAddress: 'fd42:6e70:6d::23', captureAddress: '::1' };

describe('conntrack', () => {
  it('reads original destination and the capture port of a redirected flow', () => {
    const e = parseConntrackLine(TCP);
    assert.ok(e);
    assert.equal(e.dst, '203.0.113.7');
    assert.equal(e.dport, 1224);
    assert.equal(e.sport, 40312);
    assert.equal(e.replySport, 15001);
    assert.equal(e.state, 'ESTABLISHED');
    const u = parseConntrackLine(UDP);
    assert.equal(u?.dst, '9.9.9.9');
    assert.equal(u?.mark, 7);
    assert.equal(u?.state, undefined);
  });

  it('prints IPv6 addresses in their short form and reads ICMP ids', () => {
    assert.equal(parseConntrackLine(TCP6)?.dst, '2001:db8::7');
    const i = parseConntrackLine(ICMP);
    assert.equal(i?.proto, 'icmp');
    assert.equal(i?.icmpId, 17);
    assert.equal(parseConntrackLine('garbage'), undefined);
  });

  it('prefers the live entry over a TIME_WAIT twin on a reused port', () => {
    const live = parseConntrackLine(TCP);
    const old = parseConntrackLine(TCP_OLD);
    assert.ok(live && old);
    assert.equal(pickEntry([old, live]), live);
  });

  it('finds a flow whose client port conntrack remapped (a source port reused for two destinations)', async (t) => {
    const remapped =
      'ipv4     2 tcp      6 119 ESTABLISHED src=192.168.1.23 dst=203.0.113.8 sport=40312 dport=80 src=127.0.0.1 dst=192.168.1.23 sport=15001 dport=61234 [ASSURED] mark=0 zone=0 use=2';
    const dir = mkdtempSync(join(tmpdir(), 'ct-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'nf_conntrack');
    writeFileSync(path, [TCP, remapped].join('\n') + '\n');
    const reader = new ConntrackReader(path);
    const [first, second] = await Promise.all([
      reader.lookup({ proto: 'tcp', clientPort: 40312, capturePort: 15001, ...V4 }),
      reader.lookup({ proto: 'tcp', clientPort: 61234, capturePort: 15001, ...V4 }),
    ]);
    assert.equal(first?.dst, '203.0.113.7');
    assert.equal(second?.dst, '203.0.113.8');
  });

  it("two sockets of one port, one straight to the capture's port, never take each other's destination", async (t) => {
    // A package binds two sockets to one port (SO_REUSEADDR): one connects to the capture's port
    // on the sandbox's own address, the other to its real destination (redirected). The ports of
    // their reply tuples are the same; the capture's address is not.
    const direct =
      'ipv4     2 tcp      6 119 ESTABLISHED src=192.168.1.23 dst=192.168.1.23 sport=40312 dport=15001 src=192.168.1.23 dst=192.168.1.23 sport=15001 dport=40312 [ASSURED] mark=0 zone=0 use=2';
    const dir = mkdtempSync(join(tmpdir(), 'ct-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'nf_conntrack');
    const reader = new ConntrackReader(path, 2, 0);
    for (const order of [
      [direct, TCP],
      [TCP, direct],
    ]) {
      writeFileSync(path, order.join('\n') + '\n');
      const at = { proto: 'tcp', clientPort: 40312, capturePort: 15001 } as const;
      const [redirected, straight, v6] = await Promise.all([
        reader.lookup({
          ...at,
          clientAddress: '::ffff:192.168.1.23',
          captureAddress: '::ffff:127.0.0.1',
        }),
        reader.lookup({
          ...at,
          clientAddress: '::ffff:192.168.1.23',
          captureAddress: '::ffff:192.168.1.23',
        }),
        reader.lookup({ ...at, clientAddress: 'fd42:6e70:6d::23', captureAddress: '::1' }),
      ]);
      assert.equal(redirected?.dst, '203.0.113.7');
      assert.equal(straight?.dst, '192.168.1.23');
      assert.equal(straight?.dport, 15001);
      assert.equal(v6, undefined, 'no IPv6 flow on that port');
    }
    writeFileSync(path, TCP6 + '\n');
    const six = await reader.lookup({
      proto: 'tcp',
      clientPort: 50000,
      capturePort: 15001,
      clientAddress: 'fd42:6e70:6d:0:0:0:0:23',
      captureAddress: '::1',
    });
    assert.equal(six?.dst, '2001:db8::7');
    // Scoped, malformed or overlong addresses are read as far as they can be, never thrown on.
    assert.equal(socketAddress('fe80:0:0:0:0:0:0:1%eth0'), 'fe80::1');
    assert.equal(socketAddress('::FFFF:192.168.1.23'), '192.168.1.23');
    for (const odd of ['1:2:3:4:5:6:7:8:9:10', 'zz::', '::1.2.3.4.5', ''])
      assert.doesNotThrow(() => socketAddress(odd), odd);
  });

  it('answers many concurrent lookups from one read', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'ct-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'nf_conntrack');
    writeFileSync(path, [TCP, UDP, TCP6, ICMP].join('\n') + '\n');
    const reader = new ConntrackReader(path);
    const [a, b, c, missing] = await Promise.all([
      reader.lookup({ proto: 'tcp', clientPort: 40312, capturePort: 15001, ...V4 }),
      reader.lookup({ proto: 'udp', clientPort: 51000, capturePort: 15053, ...V4 }),
      reader.lookup({ proto: 'tcp', clientPort: 50000, capturePort: 15001, ...V6 }),
      reader.lookup({ proto: 'tcp', clientPort: 1, capturePort: 15001, ...V4 }),
    ]);
    assert.equal(a?.dst, '203.0.113.7');
    assert.equal(b?.dst, '9.9.9.9');
    assert.equal(c?.dst, '2001:db8::7');
    assert.equal(missing, undefined, 'a direct loopback connection has no entry');
  });
});

describe('ICMP from conntrack', () => {
  it("a ping with a forged source is recorded; one of the namespace's own addresses is not", async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'ct-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const table = join(dir, 'nf_conntrack');
    const own = Object.values(networkInterfaces())
      .flat()
      .find((a) => a?.family === 'IPv4')?.address;
    assert.ok(own, 'an IPv4 address of this machine');
    writeFileSync(
      table,
      [
        // Source forged to the destination (IPV6_FREEBIND): egress all the same.
        'ipv6     10 icmpv6   58 29 src=2a01:04f8:0001:0002:0000:0000:0000:0099 dst=2a01:04f8:0001:0002:0000:0000:0000:0099 type=128 code=0 id=6001 [UNREPLIED] src=2a01:04f8:0001:0002:0000:0000:0000:0099 dst=2a01:04f8:0001:0002:0000:0000:0000:0099 type=129 code=0 id=6001 mark=113 zone=0 use=2',
        `ipv4     2 icmp     1 29 src=${own} dst=${own} type=8 code=0 id=18 src=${own} dst=${own} type=0 code=0 id=18 mark=0 zone=0 use=2`,
        ICMP,
      ].join('\n') + '\n',
    );
    const events = join(dir, 'events.ndjson');
    const c = new Capture(events);
    (c as unknown as { conntrack: ConntrackReader }).conntrack = new ConntrackReader(table);
    await c.pollTable();
    c.sink.finish();
    const icmp = parseEventLog(readFileSync(events, 'utf8')).events.filter(
      (e) => e.kind === 'icmp',
    );
    assert.deepEqual(icmp.map((e) => (e.kind === 'icmp' ? e.ip : '')).sort(), [
      '203.0.113.5',
      '2a01:4f8:1:2::99',
    ]);
  });
});

/** A capture reading its connection table from a file the test writes. */
function tableCapture(
  t: { after(fn: () => void): void },
  lines: string[],
): {
  table: string;
  events: string;
  c: Capture;
  find: (l: Lookup) => Promise<unknown>;
} {
  const dir = mkdtempSync(join(tmpdir(), 'ct-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const table = join(dir, 'nf_conntrack');
  writeFileSync(table, lines.map((l) => l + '\n').join(''));
  const events = join(dir, 'events.ndjson');
  const c = new Capture(events);
  (c as unknown as { conntrack: ConntrackReader }).conntrack = new ConntrackReader(table);
  const find = (c as unknown as { find(l: Lookup): Promise<unknown> }).find.bind(c);
  return { table, events, c, find };
}

describe('connections the capture could not read', () => {
  it('a redirected connection no lookup claimed is recorded from its entry; a claimed one is not', async (t) => {
    const reset =
      'ipv4     2 tcp      6 9 CLOSE src=192.168.1.23 dst=203.0.113.9 sport=40999 dport=443 src=127.0.0.1 dst=192.168.1.23 sport=15001 dport=40999 [ASSURED] mark=0 zone=0 use=2';
    // Not redirected to the capture (its reply comes from elsewhere): never a connection of ours.
    const other =
      'ipv4     2 tcp      6 9 CLOSE src=192.168.1.23 dst=203.0.113.10 sport=41000 dport=443 src=203.0.113.10 dst=192.168.1.23 sport=443 dport=41000 mark=0 zone=0 use=2';
    const { events, c, find } = tableCapture(t, [TCP, reset, other]);
    // The capture read the first connection (its lookup claimed it), never the reset one.
    assert.ok(await find({ proto: 'tcp', clientPort: 40312, capturePort: 15001, ...V4 }));
    await c.pollTable();
    await c.pollTable(true);
    await c.pollTable(true);
    c.sink.finish();
    const tcp = parseEventLog(readFileSync(events, 'utf8')).events.filter((e) => e.kind === 'tcp');
    assert.deepEqual(
      tcp.map((e) => (e.kind === 'tcp' ? [e.ip, e.port, e.bytesOut] : [])),
      [['203.0.113.9', 443, 0]],
    );
  });

  it('an unclaimed connection that leaves the table between two polls is recorded all the same', async (t) => {
    // A package that slows every read of the table can make its reset connection's entry
    // expire before a second poll sees it.
    const { table, events, c } = tableCapture(t, [
      'ipv4     2 tcp      6 9 CLOSE src=192.168.1.23 dst=198.51.100.7 sport=41001 dport=443 src=127.0.0.1 dst=192.168.1.23 sport=15001 dport=41001 [ASSURED] mark=0 zone=0 use=2',
    ]);
    await c.pollTable();
    writeFileSync(table, '');
    const recorded = () => {
      c.sink.flush();
      return parseEventLog(readFileSync(events, 'utf8'))
        .events.filter((e) => e.kind === 'tcp')
        .map((e) => (e.kind === 'tcp' ? [e.ip, e.port] : []));
    };
    // One read that misses it may be a read that skipped it: only misses in a row, over a second
    // (GONE_AFTER_MS), say it is gone.
    await c.pollTable();
    await c.pollTable();
    await c.pollTable();
    assert.deepEqual(recorded(), []);
    await new Promise((r) => setTimeout(r, 1100));
    await c.pollTable();
    assert.deepEqual(recorded(), [['198.51.100.7', 443]]);
    await c.pollTable(true);
    c.sink.finish();
    assert.deepEqual(recorded(), [['198.51.100.7', 443]]);
  });

  it('a claimed connection one read skipped is still claimed when the next lists it: never recorded twice', async (t) => {
    // Reading /proc while the table changes can skip an entry; the connection's own record came
    // from its lookup, and it must not come back as one nobody claimed.
    const { table, events, c, find } = tableCapture(t, [TCP]);
    assert.ok(await find({ proto: 'tcp', clientPort: 40312, capturePort: 15001, ...V4 }));
    await c.pollTable();
    writeFileSync(table, '');
    await c.pollTable();
    await c.pollTable();
    writeFileSync(table, TCP + '\n');
    await c.pollTable();
    await c.pollTable(true);
    c.sink.finish();
    const tcp = parseEventLog(readFileSync(events, 'utf8')).events.filter((e) => e.kind === 'tcp');
    assert.deepEqual(tcp, []);
  });
});

describe('DNS retransmissions', () => {
  it('the same query again within the window is one attempt; later, or another query, is new', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'dns-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const c = new Capture(join(dir, 'events.ndjson'));
    assert.equal(c.retransmission('a', 1000), false);
    // A resolver whose first timeout passed (40 ms of real time on the sandbox's fast clock).
    assert.equal(c.retransmission('a', 1040), true);
    // Lookups end in any order: the repeat may be recorded before the first.
    assert.equal(c.retransmission('b', 5000), false);
    assert.equal(c.retransmission('b', 4990), true);
    assert.equal(c.retransmission('c', 1040), false);
    assert.equal(c.retransmission('a', 4100), false);
    c.sink.finish();
  });
});

describe('a claimed flow whose ends another connection takes', () => {
  const entry = (state: string, timeout: number) => {
    const e = parseConntrackLine(
      `ipv4     2 tcp      6 ${timeout} ${state} src=192.168.1.23 dst=203.0.113.7 sport=40123 dport=443 src=127.0.0.1 dst=192.168.1.23 sport=15001 dport=40123 [ASSURED] mark=0 zone=0 use=2`,
    );
    assert.ok(e);
    return e;
  };
  const at = (ms: number) => ({ from: ms, to: ms + 5 });
  const KERNEL = { CLOSE: 10_000, TIME_WAIT: 120_000 };

  it('a closed entry counting down, read at any moment, is the same connection', () => {
    for (const timeouts of [{}, KERNEL]) {
      // Reset at 300 ms, and the capture's socket closed: CLOSE expires at 10.3 s.
      const claim = { released: 300 };
      for (const t of [400, 1250, 2300, 5299, 9000, 10_250])
        assert.equal(
          reopened(claim, entry('CLOSE', Math.floor((10_300 - t) / 1000)), at(t), timeouts),
          false,
        );
    }
  });

  it('closed, then open again, closed another way, or expiring later than it could: another connection', () => {
    const claim = { released: 0 };
    assert.equal(reopened(claim, entry('CLOSE', 9), at(1000)), false);
    // Reset again from the same port three seconds later: 10 s left at 4 s.
    assert.equal(reopened({ ...claim }, entry('CLOSE', 9), at(4100)), true);
    assert.equal(reopened({ ...claim }, entry('ESTABLISHED', 431_999), at(2000)), true);
    assert.equal(reopened({ ...claim }, entry('SYN_RECV', 59), at(1500)), true);
    // Closed with FINs (TIME_WAIT, 120 s), then a connection from the same port, reset: a new
    // entry in CLOSE, which expires far sooner.
    const tw = { released: 0 };
    assert.equal(reopened(tw, entry('TIME_WAIT', 119), at(1000)), false);
    assert.equal(reopened(tw, entry('CLOSE', 9), at(2000)), true);
  });

  it("the state's full timeout bounds the expiry from the capture's close: a reuse 0.4 s later is caught", () => {
    const claim = { released: 1000 };
    assert.equal(reopened(claim, entry('CLOSE', 9), at(1100), KERNEL), false);
    // The other connection is reset at 1.4 s: it expires at 11.4 s, past 1.05 s + 10 s.
    assert.equal(reopened(claim, entry('CLOSE', 9), at(1500), KERNEL), false);
    assert.equal(reopened(claim, entry('CLOSE', 9), at(2100), KERNEL), true);
  });

  it("an open connection's entry, one the capture's socket has only just let go, or one the client closed later, is not bounded", () => {
    const open = {};
    assert.equal(reopened(open, entry('CLOSE', 9), at(1000), KERNEL), false);
    assert.equal(reopened(open, entry('CLOSE', 9), at(4000), KERNEL), false);
    // The client's reset to what the capture sent last refreshes the timeout: not yet bounded.
    const just = { released: 980 };
    assert.equal(reopened(just, entry('CLOSE', 9), at(1000), KERNEL), false);
    assert.equal(reopened(just, entry('CLOSE', 9), at(1200), KERNEL), false);
    // Still open after the capture let go (its FIN sent, the client's to come): the client's
    // close at 2.9 s starts the count.
    const late = { released: 1000 };
    assert.equal(reopened(late, entry('FIN_WAIT', 119), at(1100), KERNEL), false);
    assert.equal(reopened(late, entry('TIME_WAIT', 119), at(3000), KERNEL), false);
    assert.equal(reopened(late, entry('TIME_WAIT', 117), at(5000), KERNEL), false);
  });
});
