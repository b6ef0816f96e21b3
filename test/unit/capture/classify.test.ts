import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  CLASSIFY_MAX,
  RAW_DECIDE_BYTES,
  StreamClassifier,
  type Verdict,
} from '../../../src/capture/classify.js';
import { MAX_HEAD_BYTES } from '../../../src/capture/http.js';

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function extension(type: number, body: Buffer): Buffer {
  return Buffer.concat([u16(type), u16(body.length), body]);
}

/** A TLS 1.3 ClientHello in one handshake record, with SNI, ALPN and `padding` bytes of padding. */
function clientHello(sni: string, alpn: string[], padding = 0): Buffer {
  const name = Buffer.from(sni, 'latin1');
  const serverName = Buffer.concat([
    u16(name.length + 3),
    Buffer.from([0]),
    u16(name.length),
    name,
  ]);
  const protocols = Buffer.concat(
    alpn.map((p) => Buffer.concat([Buffer.from([p.length]), Buffer.from(p, 'latin1')])),
  );
  const extensions = Buffer.concat([
    extension(0, serverName),
    extension(16, Buffer.concat([u16(protocols.length), protocols])),
    extension(43, Buffer.from([4, 0x03, 0x04, 0x03, 0x03])),
    ...(padding > 0 ? [extension(21, Buffer.alloc(padding))] : []),
  ]);
  const body = Buffer.concat([
    u16(0x0303), // legacy version
    Buffer.alloc(32, 7), // random
    Buffer.from([0]), // session id
    u16(2),
    u16(0x1301), // cipher suites
    Buffer.from([1, 0]), // compression methods
    u16(extensions.length),
    extensions,
  ]);
  const handshake = Buffer.concat([
    Buffer.from([0x01, body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff]),
    body,
  ]);
  return Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), u16(handshake.length), handshake]);
}

/** A DNS query as a stub resolver would send it. */
function dnsQuery(name: string, qtype: number, id = 0x1234): Buffer {
  const header = Buffer.from([id >> 8, id & 255, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
  const labels = name
    .split('.')
    .map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  return Buffer.concat([header, ...labels, Buffer.from([0, qtype >> 8, qtype & 255, 0, 1])]);
}

/** `bytes` cut into pieces of `size` bytes (the last may be shorter). */
function pieces(bytes: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += size) out.push(bytes.subarray(i, i + size));
  return out;
}

/** Feed every chunk; the verdict after each. */
function feedAll(c: StreamClassifier, chunks: Buffer[]): Verdict[] {
  return chunks.map((d) => c.feed(d));
}

const needMore = (reading: string) => ({ status: 'need-more', reading });

describe('stream classifier: TLS', () => {
  it('waits for a ClientHello split over several reads, then finds SNI and ALPN', () => {
    const hello = clientHello('api.example.test', ['h2', 'http/1.1']);
    // One byte (not yet TLS-looking), then the rest of the header, then the record in pieces.
    const chunks = [hello.subarray(0, 1), hello.subarray(1, 5), ...pieces(hello.subarray(5), 40)];
    const c = new StreamClassifier();
    const verdicts = feedAll(c, chunks);
    assert.deepEqual(verdicts[0], needMore('unknown'));
    for (const v of verdicts.slice(1, -1)) assert.deepEqual(v, needMore('tls'));
    const last = verdicts.at(-1);
    assert.equal(last?.status, 'done');
    if (last?.status !== 'done' || last.kind !== 'tls') return assert.fail('not tls');
    assert.equal(last.hello.status, 'ok');
    if (last.hello.status !== 'ok') return;
    assert.equal(last.hello.sni, 'api.example.test');
    assert.deepEqual(last.hello.alpn, ['h2', 'http/1.1']);
    assert.equal(last.hello.version, 'TLS1.3');
    assert.equal(c.bytesSeen, hello.length);
    assert.deepEqual(c.bytes, hello);
  });

  it('reads a ClientHello larger than one read (segments of 1460 bytes)', () => {
    const hello = clientHello('big.example', ['h2'], 12_000);
    assert.ok(hello.length > 12_000);
    const c = new StreamClassifier();
    const verdicts = feedAll(c, pieces(hello, 1460));
    // Past RAW_DECIDE_BYTES still waiting: a TLS record is read whole.
    for (const v of verdicts.slice(0, -1)) assert.deepEqual(v, needMore('tls'));
    const last = verdicts.at(-1);
    if (last?.status !== 'done' || last.kind !== 'tls') return assert.fail('not tls');
    assert.equal(last.hello.status, 'ok');
    if (last.hello.status === 'ok') assert.equal(last.hello.sni, 'big.example');
  });

  it('waits for a whole record of the largest size, past every other limit', () => {
    // 65535 bytes of record: more than RAW_DECIDE_BYTES and MAX_HEAD_BYTES, within CLASSIFY_MAX.
    const header = Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff, 0x01]);
    const c = new StreamClassifier();
    assert.deepEqual(c.feed(header), needMore('tls'));
    assert.deepEqual(c.feed(Buffer.alloc(0xffff - 2)), needMore('tls'));
    const v = c.feed(Buffer.alloc(100));
    assert.equal(v.status === 'done' && v.kind, 'tls');
    assert.equal(c.bytes.length, header.length + 0xffff - 2 + 100);
  });
});

describe('stream classifier: HTTP', () => {
  it('waits for a Content-Length body arriving in pieces', () => {
    const body = '{"token":"abcdefghijklmnopqrstuvwxyz"}';
    const req = Buffer.from(
      `POST /collect HTTP/1.1\r\nHost: hook.example\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    );
    const headEnd = req.indexOf('\r\n\r\n') + 4;
    const c = new StreamClassifier();
    assert.deepEqual(c.feed(req.subarray(0, 3)), needMore('http-head'));
    assert.deepEqual(c.feed(req.subarray(3, headEnd - 1)), needMore('http-head'));
    assert.equal(c.httpHead === undefined, true);
    assert.deepEqual(c.feed(req.subarray(headEnd - 1, headEnd + 5)), needMore('http-body'));
    assert.equal(c.httpHead?.contentLength, body.length);
    assert.deepEqual(c.feed(req.subarray(headEnd + 5, req.length - 1)), needMore('http-body'));
    const v = c.feed(req.subarray(req.length - 1));
    if (v.status !== 'done' || v.kind !== 'http') return assert.fail('not http');
    assert.equal(v.head.method, 'POST');
    assert.equal(v.head.path, '/collect');
    assert.equal(v.head.host, 'hook.example');
    assert.equal(c.bytesSeen, req.length);
    assert.equal(c.bytes.subarray(v.head.headLength).toString(), body);
  });

  it('is done at the head when there is no body', () => {
    const v = new StreamClassifier().feed(Buffer.from('GET / HTTP/1.1\r\nHost: a.example\r\n\r\n'));
    assert.equal(v.status === 'done' && v.kind, 'http');
  });

  it('counts a body past the classification limit without keeping it', () => {
    const head = Buffer.from(`PUT /up HTTP/1.1\r\nContent-Length: ${CLASSIFY_MAX * 2}\r\n\r\n`);
    const c = new StreamClassifier();
    assert.deepEqual(c.feed(head), needMore('http-body'));
    const verdicts = feedAll(c, pieces(Buffer.alloc(CLASSIFY_MAX * 2, 0x61), 16 * 1024));
    for (const v of verdicts.slice(0, -1)) assert.deepEqual(v, needMore('http-body'));
    assert.equal(verdicts.at(-1)?.status, 'done');
    assert.equal(c.bytes.length, CLASSIFY_MAX);
    assert.equal(c.bytesSeen, head.length + CLASSIFY_MAX * 2);
  });

  it('waits for a chunked body to its last chunk and trailer', () => {
    const req = Buffer.from(
      'POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n',
    );
    const c = new StreamClassifier();
    const verdicts = feedAll(c, pieces(req, 7));
    for (const v of verdicts.slice(0, -1)) assert.equal(v.status, 'need-more');
    assert.deepEqual(verdicts.at(-2), needMore('http-body'));
    const last = verdicts.at(-1);
    if (last?.status !== 'done' || last.kind !== 'http') return assert.fail('not http');
    assert.equal(last.head.chunked, true);
  });

  it('stops waiting for a chunked body at the classification limit', () => {
    const head = Buffer.from('POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n');
    const c = new StreamClassifier();
    assert.deepEqual(c.feed(head), needMore('http-body'));
    assert.deepEqual(c.feed(Buffer.from('100000\r\n')), needMore('http-body'));
    const v = c.feed(Buffer.alloc(CLASSIFY_MAX));
    assert.equal(v.status === 'done' && v.kind, 'http');
  });

  it('flags a WebSocket upgrade', () => {
    const req = Buffer.from(
      'GET /socket HTTP/1.1\r\nHost: ws.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
    const v = feedAll(new StreamClassifier(), pieces(req, 10)).at(-1);
    if (v?.status !== 'done' || v.kind !== 'http') return assert.fail('not http');
    assert.equal(v.head.websocket, true);
    assert.equal(v.head.path, '/socket');
  });

  it('gives up on an HTTP head larger than the classification limit: raw', () => {
    const c = new StreamClassifier();
    const start = Buffer.from('GET / HTTP/1.1\r\nX-Big: ');
    assert.deepEqual(c.feed(start), needMore('http-head'));
    // Up to MAX_HEAD_BYTES an unfinished head is still waited for, past RAW_DECIDE_BYTES too.
    const fill = Buffer.alloc(MAX_HEAD_BYTES - start.length, 0x61);
    const verdicts = feedAll(c, pieces(fill, 8192));
    for (const v of verdicts) assert.deepEqual(v, needMore('http-head'));
    assert.deepEqual(c.feed(Buffer.from('aaaa')), { status: 'done', kind: 'raw' });
    assert.equal(c.httpHead, undefined);
  });
});

describe('stream classifier: DNS over TCP', () => {
  const query = dnsQuery('tcp.example', 1);
  const framed = Buffer.concat([u16(query.length), query]);

  it('reads a length-prefixed query split over reads, once the destination is port 53', () => {
    const c = new StreamClassifier();
    // Neither TLS nor HTTP: unknown until the destination is known.
    assert.deepEqual(c.feed(framed.subarray(0, 1)), needMore('unknown'));
    assert.deepEqual(c.atDnsPort(), needMore('unknown'));
    assert.deepEqual(c.feed(framed.subarray(1, 10)), needMore('unknown'));
    assert.deepEqual(c.atDnsPort(), needMore('unknown'));
    assert.deepEqual(c.feed(framed.subarray(10)), needMore('unknown'));
    const v = c.atDnsPort();
    if (v.status !== 'done' || v.kind !== 'dns-tcp') return assert.fail('not dns-tcp');
    assert.deepEqual(v.query, query);
    assert.equal(v.question.qname, 'tcp.example');
    assert.equal(v.question.qtype, 1);
    assert.deepEqual(c.verdict, v);
    // Done: later bytes change nothing.
    assert.deepEqual(c.feed(Buffer.from('more')), v);
    assert.equal(c.bytesSeen, framed.length);
  });

  it('reads only the first message when two arrive at once', () => {
    const second = dnsQuery('two.example', 28, 0x4321);
    const c = new StreamClassifier();
    c.feed(Buffer.concat([framed, u16(second.length), second]));
    const v = c.atDnsPort();
    if (v.status !== 'done' || v.kind !== 'dns-tcp') return assert.fail('not dns-tcp');
    assert.equal(v.question.qname, 'tcp.example');
  });

  it('is raw when not asked about port 53', () => {
    const c = new StreamClassifier();
    assert.deepEqual(c.feed(framed), needMore('unknown'));
    assert.deepEqual(c.feed(Buffer.alloc(RAW_DECIDE_BYTES)), { status: 'done', kind: 'raw' });
    // Too late: a done verdict stays.
    assert.deepEqual(c.atDnsPort(), { status: 'done', kind: 'raw' });
  });

  it('does not take a message that is not a query we read for DNS', () => {
    const c = new StreamClassifier();
    c.feed(Buffer.concat([u16(5), Buffer.from('hello')]));
    assert.deepEqual(c.atDnsPort(), needMore('unknown'));
  });
});

describe('stream classifier: raw and empty', () => {
  it('calls garbage raw at RAW_DECIDE_BYTES, not before', () => {
    const garbage = Buffer.from(
      'SSH-2.0-OpenSSH_9.6\r\n' + '\u00ff'.repeat(2 * RAW_DECIDE_BYTES),
      'latin1',
    );
    const c = new StreamClassifier();
    const verdicts = feedAll(c, pieces(garbage, 1000));
    const at = verdicts.findIndex((v) => v.status === 'done');
    assert.equal(at, Math.ceil(RAW_DECIDE_BYTES / 1000) - 1);
    for (const v of verdicts.slice(0, at)) assert.deepEqual(v, needMore('unknown'));
    assert.deepEqual(verdicts[at], { status: 'done', kind: 'raw' });
    // Done: the rest is neither kept nor counted.
    assert.equal(c.bytes.length, (at + 1) * 1000);
    assert.equal(c.bytesSeen, (at + 1) * 1000);
    assert.equal(c.atDnsPort().status, 'done');
  });

  it('leaves a short unknown stream undecided (the capture records it when it goes idle)', () => {
    const c = new StreamClassifier();
    assert.deepEqual(c.feed(Buffer.from([0x00, 0x01, 0x02])), needMore('unknown'));
    assert.deepEqual(c.verdict, needMore('unknown'));
  });

  it('has nothing to say about an empty connection', () => {
    const c = new StreamClassifier();
    assert.deepEqual(c.verdict, needMore('unknown'));
    assert.equal(c.bytes.length, 0);
    assert.equal(c.bytesSeen, 0);
    assert.equal(c.httpHead, undefined);
    assert.deepEqual(c.atDnsPort(), needMore('unknown'));
    // An empty read changes nothing either (not even to "could be HTTP").
    assert.deepEqual(c.feed(Buffer.alloc(0)), needMore('unknown'));
    assert.equal(c.bytesSeen, 0);
  });
});
