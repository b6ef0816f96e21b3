import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  buildResponse,
  DnsParseError,
  normalizeIpv6,
  parseQuery,
  ptrAddress,
} from '../../../src/capture/dns.js';

/** A query as a stub resolver would send it. */
function query(name: string, qtype: number, id = 0x1234): Buffer {
  const header = Buffer.from([id >> 8, id & 255, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
  const labels = name
    .split('.')
    .map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  return Buffer.concat([header, ...labels, Buffer.from([0, qtype >> 8, qtype & 255, 0, 1])]);
}

describe('dns codec', () => {
  it('reads the name (lower-cased), type and id of a query', () => {
    const q = parseQuery(query('Api.Example.COM', 28, 0xbeef));
    assert.equal(q.qname, 'api.example.com');
    assert.equal(q.qtype, 28);
    assert.equal(q.id, 0xbeef);
  });

  it('rejects truncated and compressed questions', () => {
    assert.throws(() => parseQuery(Buffer.alloc(5)), DnsParseError);
    const q = query('a.example', 1);
    assert.throws(() => parseQuery(q.subarray(0, q.length - 3)), DnsParseError);
    const compressed = Buffer.concat([q.subarray(0, 12), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1])]);
    assert.throws(() => parseQuery(compressed), DnsParseError);
  });

  it('answers A with the given address, echoing id and question', () => {
    const msg = query('x.example', 1, 7);
    const q = parseQuery(msg);
    const r = buildResponse(msg, q, { type: 'A', address: '198.18.0.5' });
    assert.equal(r.readUInt16BE(0), 7);
    assert.equal(r.readUInt16BE(2) & 0x8000, 0x8000, 'QR set');
    assert.equal(r.readUInt16BE(2) & 0x000f, 0, 'NOERROR');
    assert.equal(r.readUInt16BE(6), 1, 'one answer');
    assert.deepEqual([...r.subarray(r.length - 4)], [198, 18, 0, 5]);
    assert.equal(parseQuery(r).qname, 'x.example');
  });

  it('answers AAAA with 16 bytes and others with an empty NOERROR or NXDOMAIN', () => {
    const msg = query('y.example', 28);
    const r = buildResponse(msg, parseQuery(msg), { type: 'AAAA', address: '2001:2::1:5' });
    assert.deepEqual(
      [...r.subarray(r.length - 16)],
      [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 5],
    );
    const txt = query('y.example', 16);
    const e = buildResponse(txt, parseQuery(txt), { type: 'none' });
    assert.equal(e.readUInt16BE(6), 0);
    assert.equal(e.readUInt16BE(2) & 0x000f, 0);
    const nx = buildResponse(txt, parseQuery(txt), { type: 'none', rcode: 3 });
    assert.equal(nx.readUInt16BE(2) & 0x000f, 3);
  });

  it('reads PTR names back to addresses and normalises IPv6', () => {
    assert.equal(ptrAddress('5.0.18.198.in-addr.arpa'), '198.18.0.5');
    const nibbles = '5.0.0.0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.0.0.0.1.0.0.2.';
    assert.equal(ptrAddress(`${nibbles}ip6.arpa`), '2001:2::1:5');
    assert.equal(normalizeIpv6('2001:0db8:0000:0000:0000:0000:0000:0007'), '2001:db8::7');
    assert.equal(normalizeIpv6('fe80:0:0:1:0:0:0:1'), 'fe80:0:0:1::1');
    assert.equal(normalizeIpv6('::1'), '::1');
  });
});
