import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SyntheticAddresses } from '../../../src/capture/synthetic.js';

describe('synthetic addresses', () => {
  it('gives one stable IPv4 and IPv6 per name and maps them back', () => {
    const s = new SyntheticAddresses();
    const a = s.ipv4For('a.example');
    assert.equal(a, '198.18.0.1');
    assert.equal(s.ipv4For('a.example'), a);
    assert.equal(s.ipv4For('b.example'), '198.18.0.2');
    assert.equal(s.ipv6For('b.example'), '2001:2::2');
    assert.equal(s.nameFor('198.18.0.2'), 'b.example');
    assert.equal(s.nameFor('2001:2::2'), 'b.example');
    assert.equal(s.nameFor('2001:2:0:0:0:0:0:1'), 'a.example');
    assert.equal(s.nameFor('203.0.113.1'), undefined);
    assert.equal(s.nameFor('198.18.9.9'), undefined);
  });

  it('crosses byte and block boundaries without collisions', () => {
    const s = new SyntheticAddresses();
    const seen = new Set<string>();
    for (let i = 0; i < 70_000; i++) {
      const ip = s.ipv4For(`n${i}.example`);
      assert.ok(ip);
      seen.add(ip);
    }
    assert.equal(seen.size, 70_000);
    assert.equal(s.nameFor('198.19.0.0'), 'n65535.example');
    assert.equal(s.nameFor(s.ipv6For('n69999.example') ?? ''), 'n69999.example');
  });
});
