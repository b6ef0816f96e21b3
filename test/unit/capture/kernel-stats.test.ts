import { scratch } from '../../support/scratch.js';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { conntrackDrops, udpReceiveErrors } from '../../../src/capture/kernel-stats.js';

const SNMP = `Ip: Forwarding DefaultTTL InReceives
Ip: 2 64 100
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 24000 0 16000 24000 16000 0 0 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 0 0 0 99 0 0 0 0
`;
const SNMP6 = `Udp6InDatagrams                 	10
Udp6RcvbufErrors                	25
UdpLite6RcvbufErrors            	7
`;
const STAT = `entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop error expect_new expect_create expect_delete search_restart
00001770  00000000 00000000 00000000 00000003 00000000 00000000 00000000 00000000 00000001 0000000a 00000002 00000000 00000000 00000000 00000000 00000000
00001770  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000010 00000000 00000000 00000000 00000000 00000000 00000000
`;

describe('kernel counters', () => {
  const dir = scratch('kstats-');
  const file = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };

  it('adds UDP and UDP6 receive buffer errors, not UDP-Lite', async () => {
    assert.equal(await udpReceiveErrors(file('snmp', SNMP), file('snmp6', SNMP6)), 16_025);
  });

  it('counts what it can read', async () => {
    assert.equal(await udpReceiveErrors(file('snmp-b', SNMP), join(dir, 'absent')), 16_000);
    assert.equal(await udpReceiveErrors(join(dir, 'absent'), join(dir, 'absent')), 0);
  });

  it('sums conntrack drops (hex) over every CPU', async () => {
    assert.equal(await conntrackDrops(file('nf_conntrack', STAT)), 1 + 10 + 2 + 16);
    assert.equal(await conntrackDrops(join(dir, 'absent')), 0);
  });
});
