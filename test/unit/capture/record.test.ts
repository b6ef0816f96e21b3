/**
 * What the capture records of a connection's requests, plain or read inside TLS: one event per
 * request (pipelined ones too), sizes as carried, HTTP/2 streams with their own body sizes.
 */
import { scratch } from '../../support/scratch.js';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Capture } from '../../../src/capture/capture.js';
import type { ConntrackEntry } from '../../../src/capture/conntrack.js';
import { parseRequestHead } from '../../../src/capture/http.js';
import type { Intercepted } from '../../../src/capture/intercept.js';
import { findBaitLeaks } from '../../../src/core/bait.js';
import { parseEventLog } from '../../../src/core/events.js';
import type { StreamEvent } from '../../../src/core/terms.js';

function capture(): { c: Capture; streams: () => StreamEvent[] } {
  const path = join(scratch('record-'), 'events.ndjson');
  const c = new Capture(path);
  return {
    c,
    streams: () => {
      c.sink.finish();
      return parseEventLog(readFileSync(path, 'utf8')).events.filter(
        (e): e is StreamEvent => e.kind === 'http' || e.kind === 'tls',
      );
    },
  };
}

const ct = (dport: number): ConntrackEntry => ({
  family: 'ipv4',
  proto: 'tcp',
  src: '192.168.1.23',
  dst: '203.0.113.9',
  sport: 40000,
  dport,
  replySport: 15001,
  replyDport: 40000,
  mark: 0,
});

const pipelined = Buffer.from(
  'GET /latest HTTP/1.1\r\nHost: a.example\r\n\r\n' +
    'POST /v1/traces HTTP/1.1\r\nHost: c2.example\r\nContent-Length: 5\r\n\r\nhello',
  'latin1',
);

describe('capture records', () => {
  it('a plain HTTP connection carrying two requests: two events, each with its own host and body', () => {
    const { c, streams } = capture();
    const head = parseRequestHead(pipelined);
    assert.equal(head.status, 'ok');
    c.recordStream(
      1,
      ct(80),
      pipelined,
      pipelined.length,
      head.status === 'ok' ? head.head : undefined,
      undefined,
    );
    const [a, b] = streams();
    assert.deepEqual(
      [a?.method, a?.path, a?.httpHost, a?.bodyBytes],
      ['GET', '/latest', 'a.example', 0],
    );
    assert.equal(a?.bytesOut, pipelined.length);
    assert.deepEqual(
      [b?.method, b?.path, b?.httpHost, b?.bodyBytes],
      ['POST', '/v1/traces', 'c2.example', 5],
    );
    assert.equal(Buffer.from(b?.bodySample ?? '', 'base64').toString(), 'hello');
  });

  it('a header line without a colon, and header names, are kept as sent: a secret there is found', () => {
    const { c, streams } = capture();
    const secret = 'npm_Q7rX2mLk9PzA4bVt1nWc8YhE3sDf6GjKuR0o';
    const req = Buffer.from(
      `POST /v3/resolve HTTP/1.1\r\nHost: a.example\r\nX-Build ${secret}\r\n${secret}: 1\r\nContent-Length: 0\r\n\r\n`,
      'latin1',
    );
    const head = parseRequestHead(req);
    assert.equal(head.status, 'ok');
    c.recordStream(
      1,
      ct(80),
      req,
      req.length,
      head.status === 'ok' ? head.head : undefined,
      undefined,
    );
    const events = streams();
    assert.deepEqual(events[0]?.headers?.slice(1, 3), [
      [`X-Build ${secret}`, ''],
      [secret, '1'],
    ]);
    const leaks = findBaitLeaks(events, [
      { id: 'npm-token', label: 'npm token', where: [], value: secret },
    ]);
    assert.ok(leaks.length >= 1 && leaks.every((l) => l.channel === 'HTTP headers'));
  });

  it('the same inside TLS, and an HTTP/2 stream keeps the body size it carried', () => {
    const { c, streams } = capture();
    const head = parseRequestHead(pipelined);
    assert.equal(head.status, 'ok');
    const h1: Intercepted = {
      outcome: 'decrypted',
      bytesOut: 900,
      inner: pipelined,
      innerSeen: pipelined.length,
      ...(head.status === 'ok' ? { head: head.head } : {}),
    };
    const h2: Intercepted = {
      outcome: 'decrypted',
      bytesOut: 700,
      inner: Buffer.alloc(0),
      innerSeen: 0,
      h2: [
        {
          method: 'POST',
          path: '/svc/Send',
          authority: 'grpc.example',
          headers: [],
          body: Buffer.from('abc'),
          bodyBytes: 3,
        },
      ],
    };
    const hello = { sni: 'a.example' };
    c.recordIntercepted(1, ct(443), Buffer.from('hello'), hello, h1, undefined);
    c.recordIntercepted(2, ct(443), Buffer.from('hello'), { sni: 'grpc.example' }, h2, undefined);
    const [a, b, g] = streams();
    assert.deepEqual([a?.kind, a?.path, a?.bytesOut], ['tls', '/latest', 900]);
    assert.deepEqual(
      [b?.path, b?.httpHost, b?.bodyBytes, b?.bytesOut],
      ['/v1/traces', 'c2.example', 5, 0],
    );
    assert.deepEqual(
      [g?.path, g?.httpHost, g?.bodyBytes, g?.httpVersion],
      ['/svc/Send', 'grpc.example', 3, '2'],
    );
  });
});
