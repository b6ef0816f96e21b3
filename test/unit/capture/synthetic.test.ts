import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isNxdomain, tldsFrom } from '../../../src/capture/reserved.js';
import { randomBlocks, SyntheticAddresses } from '../../../src/capture/synthetic.js';
import { specialPurposeV4 } from '../../support/addresses.js';

/** One block, so a test can see where every address lands. */
const BLOCKS = {
  v4: [[57, 142]] as [number, number][],
  v6: [[0x2a03, 0x1b20, 7]] as [number, number, number][],
  offset: 0,
};

/** The special-purpose ranges, and the blocks of the big public resolvers. */
const SPECIAL = specialPurposeV4([
  ['1.1.1.0', 24],
  ['8.8.8.0', 24],
  ['9.9.9.0', 24],
  ['208.67.222.0', 24],
]);

describe('synthetic addresses', () => {
  it('gives one stable IPv4 and IPv6 per name in the run block, and maps them back', () => {
    const s = new SyntheticAddresses(BLOCKS);
    const a = s.ipv4For('a.example') as string;
    assert.match(a, /^57\.142\.\d+\.\d+$/);
    assert.equal(s.ipv4For('a.example'), a);
    const b = s.ipv4For('b.example') as string;
    assert.notEqual(b, a);
    const b6 = s.ipv6For('b.example') as string;
    assert.match(b6, /^2a03:1b20:7:/);
    assert.equal(s.nameFor(a), 'a.example');
    assert.equal(s.nameFor(b), 'b.example');
    assert.equal(s.nameFor(b6), 'b.example');
    assert.equal(s.nameFor(b6.toUpperCase()), 'b.example');
    // Outside the block, or in it but never handed out: a raw IP.
    assert.equal(s.nameFor('203.0.113.1'), undefined);
    assert.equal(s.nameFor('57.142.250.250'), undefined);
    assert.equal(s.nameFor('2a03:1b20:7::1'), undefined);
  });

  it('scatters addresses over the block, never on .0 or .255, without collisions', () => {
    const s = new SyntheticAddresses(BLOCKS);
    const seen = new Set<string>();
    const thirds = new Set<string>();
    for (let i = 0; i < 60_000; i++) {
      const ip = s.ipv4For(`n${i}.example`);
      assert.ok(ip, `address ${i}`);
      assert.doesNotMatch(ip, /\.(0|255)$/);
      seen.add(ip);
      if (i < 10) thirds.add(ip.split('.')[2] as string);
    }
    assert.equal(seen.size, 60_000);
    assert.ok(thirds.size >= 8, `the first ten addresses are not in sequence: ${[...thirds]}`);
    assert.equal(s.nameFor(s.ipv6For('n59999.example') ?? ''), 'n59999.example');
    // The block holds 65,536 - 512 addresses; past that, no answer rather than a reuse.
    for (let i = 60_000; i < 65_024; i++) assert.ok(s.ipv4For(`n${i}.example`));
    assert.equal(s.ipv4For('one-too-many.example'), undefined);
  });

  it("answers the public resolvers' own names with their real addresses", () => {
    const s = new SyntheticAddresses(BLOCKS);
    assert.equal(s.nameFor('8.8.8.8'), undefined, 'a raw IP until the name was looked up');
    assert.equal(s.ipv4For('dns.google'), '8.8.8.8');
    assert.equal(s.ipv4For('One.One.One.One'), '1.1.1.1');
    assert.equal(s.ipv6For('dns.google'), '2001:4860:4860::8888');
    assert.equal(s.nameFor('8.8.8.8'), 'dns.google');
    assert.equal(s.nameFor('2001:4860:4860:0:0:0:0:8888'), 'dns.google');
  });

  it('draws eight blocks per run from ordinary unicast space, never a special-purpose range', () => {
    const firsts = new Set<number>();
    for (let i = 0; i < 500; i++) {
      const b = randomBlocks();
      assert.equal(new Set(b.v4.map((x) => x.join('.'))).size, 8);
      assert.equal(new Set(b.v6.map((x) => x.join(':'))).size, 8);
      const s = new SyntheticAddresses(b);
      const seen16 = new Set<string>();
      for (let n = 0; n < 8; n++) {
        const ip = s.ipv4For(`x${n}.example`) as string;
        assert.ok(!SPECIAL.check(ip, 'ipv4'), `${ip} is special-purpose`);
        seen16.add(ip.split('.').slice(0, 2).join('.'));
        firsts.add(Number(ip.split('.')[0]));
        assert.equal(s.nameFor(ip), `x${n}.example`);
        const ip6 = s.ipv6For(`x${n}.example`) as string;
        assert.match(ip6, /^2a0[0-9a-f]:/);
        assert.equal(s.nameFor(ip6), `x${n}.example`);
      }
      assert.equal(seen16.size, 8, 'eight names in a row land in eight different /16s');
    }
    assert.ok(firsts.size > 100, 'the blocks differ from run to run');
  });
});

describe('names that do not exist', () => {
  const tlds = tldsFrom(
    ['// comment', 'com', 'io', '*.ck', '!www.ck', 'co.uk', 'uk', '中国', 'github.io', ''].join(
      '\n',
    ),
  );

  it('reads the TLDs of a Public Suffix List, IDN TLDs as punycode', () => {
    assert.deepEqual([...tlds].sort(), ['ck', 'com', 'io', 'uk', 'xn--fiqs8s']);
  });

  it('answers NXDOMAIN for made-up TLDs and special-use names, like a real resolver', () => {
    for (const n of [
      'qzxv.nosuchtld',
      'a.b.test',
      'x.invalid',
      'printer.local',
      'foo.localhost',
      'abc.onion',
      'router.home.arpa',
      'svc.internal',
      'BAD.NoSuchTld.',
      'single-label',
    ])
      assert.equal(isNxdomain(n, tlds), true, n);
    for (const n of [
      'api.example.com',
      'x.co.uk',
      'a.xn--fiqs8s',
      'com',
      'beacon.example',
      '5.0.0.10.in-addr.arpa',
    ])
      assert.equal(isNxdomain(n, tlds), false, n);
  });

  it('without a TLD list only the special-use names are NXDOMAIN', () => {
    assert.equal(isNxdomain('qzxv.nosuchtld', undefined), false);
    assert.equal(isNxdomain('x.invalid', undefined), true);
  });
});
