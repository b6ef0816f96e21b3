import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  chunkedBodyComplete,
  chunkedBodyEnd,
  chunkSize,
  mayBeHttp,
  parseRequestHead,
  splitRequests,
} from '../../../src/capture/http.js';

describe('HTTP request head', () => {
  it('parses method, path, headers, length and host', () => {
    const r = parseRequestHead(
      Buffer.from(
        'POST /collect?x=1 HTTP/1.1\r\nHost: hook.example\r\nContent-Length: 12\r\nX-A: b\r\n\r\n{"env":true}',
      ),
    );
    assert.equal(r.status, 'ok');
    if (r.status !== 'ok') return;
    assert.equal(r.head.method, 'POST');
    assert.equal(r.head.path, '/collect?x=1');
    assert.equal(r.head.host, 'hook.example');
    assert.equal(r.head.contentLength, 12);
    // Names as sent: a secret can be a header's name, and case is part of it.
    assert.deepEqual(r.head.headers[2], ['X-A', 'b']);
    assert.equal(r.head.websocket, false);
  });

  it('waits for the rest of a head, and rejects what is not HTTP', () => {
    assert.equal(parseRequestHead(Buffer.from('GET /a HTTP/1.1\r\nHost: x')).status, 'incomplete');
    assert.equal(parseRequestHead(Buffer.from('SSH-2.0-OpenSSH\r\n')).status, 'not-http');
    assert.equal(parseRequestHead(Buffer.from('GET nothing\r\n\r\n')).status, 'not-http');
    assert.equal(mayBeHttp(Buffer.from('GE')), true);
    assert.equal(mayBeHttp(Buffer.from('\x16\x03\x01')), false);
  });

  it('recognises a WebSocket upgrade and chunked bodies', () => {
    const r = parseRequestHead(
      Buffer.from('GET /ws HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\r\n'),
    );
    assert.ok(r.status === 'ok' && r.head.websocket);
    assert.equal(chunkedBodyComplete(Buffer.from('5\r\nhello\r\n')), false);
    assert.equal(chunkedBodyComplete(Buffer.from('5\r\nhello\r\n0\r\n\r\n')), true);
  });
});

describe('requests one after another (pipelined)', () => {
  const b = (s: string) => Buffer.from(s, 'latin1');

  it('reads each request, its body cut at its length, and what is left', () => {
    const { requests, rest } = splitRequests(
      b(
        'GET /latest HTTP/1.1\r\nHost: a.example\r\n\r\n' +
          'POST /v1/traces HTTP/1.1\r\nHost: c2.example\r\nContent-Length: 5\r\n\r\nhello' +
          'PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n' +
          '\x00\x01garbage',
      ),
    );
    assert.deepEqual(
      requests.map((q) => [
        q.head.method,
        q.head.path,
        q.head.host,
        q.body.toString('latin1'),
        q.bodyBytes,
      ]),
      [
        ['GET', '/latest', 'a.example', '', 0],
        ['POST', '/v1/traces', 'c2.example', 'hello', 5],
        ['PUT', '/c', undefined, '3\r\nabc\r\n0\r\n\r\n', 13],
      ],
    );
    assert.equal(rest.toString('latin1'), '\x00\x01garbage');
  });

  it('a body longer than what was kept ends the bytes; a head without its end is left as rest', () => {
    const cut = splitRequests(b('POST /u HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc'));
    assert.equal(cut.requests.length, 1);
    assert.equal(cut.requests[0]?.bodyBytes, 100);
    assert.equal(cut.requests[0]?.body.toString(), 'abc');
    const half = splitRequests(b('GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nHost: x'));
    assert.equal(half.requests.length, 1);
    assert.equal(half.rest.toString(), 'GET /b HTTP/1.1\r\nHost: x');
  });

  it('a chunk size with a sign, spaces inside or too many digits is malformed, and nothing loops', () => {
    for (const bad of ['-6\r\n', '-a\r\n', '+5\r\nabcde\r\n', '5 5\r\n', 'fffffffffffffff\r\n']) {
      assert.equal(chunkedBodyEnd(b(bad)), undefined, bad);
      assert.equal(chunkedBodyComplete(b(bad)), true, bad);
      const r = splitRequests(b(`POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n${bad}`));
      assert.equal(r.requests.length, 1, bad);
    }
    assert.equal(chunkSize(b('1a;name="x y"')), 26);
    assert.equal(chunkSize(b(' 5 ')), 5);
  });

  it('finds where a chunked body ends, trailers or not', () => {
    assert.equal(chunkedBodyEnd(b('3\r\nabc\r\n0\r\n\r\nNEXT')), 13);
    assert.equal(chunkedBodyEnd(b('1\r\na\r\n0\r\nX-T: 1\r\n\r\nNEXT')), 19);
    assert.equal(chunkedBodyEnd(b('3\r\nab')), undefined);
  });
});
