import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chunkedBodyComplete, mayBeHttp, parseRequestHead } from '../../../src/capture/http.js';

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
    assert.deepEqual(r.head.headers[2], ['x-a', 'b']);
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
