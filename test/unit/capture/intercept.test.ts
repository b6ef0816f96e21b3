import assert from 'node:assert/strict';
import { connect as h2connect } from 'node:http2';
import { request } from 'node:https';
import { createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import {
  certificateName,
  chooseAlpn,
  h2Payloads,
  h2Target,
  handshakeError,
  intercept,
  websocketAccept,
  websocketPayloads,
  type Intercepted,
} from '../../../src/capture/intercept.js';
import { StreamClassifier } from '../../../src/capture/classify.js';
import { RunCa } from '../../../src/capture/x509.js';

const NAME = 'api.intercept.example';

/** A loopback listener that does what the capture does with TLS: classify, then intercept. */
function interceptor(ca: RunCa): {
  server: Server;
  results: Promise<Intercepted>[];
  sockets: Set<Socket>;
} {
  const results: Promise<Intercepted>[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    const c = new StreamClassifier();
    let resolve: (r: Intercepted) => void = () => undefined;
    results.push(new Promise((r) => (resolve = r)));
    sock.on('data', (d: Buffer) => {
      const v = c.feed(d);
      if (v.status !== 'done') return;
      sock.removeAllListeners('data');
      intercept(sock, Buffer.from(c.bytes), c.bytesSeen, ca, Promise.resolve(NAME), resolve);
    });
  });
  return { server, results, sockets };
}

describe('TLS interception', () => {
  const ca = new RunCa();
  const other = new RunCa();
  const { server, results, sockets } = interceptor(ca);
  let port = 0;
  before(async () => {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as { port: number }).port;
  });
  after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  const last = () => results[results.length - 1] as Promise<Intercepted>;
  /** Every name is this listener (as every name is the capture in the sandbox). */
  const lookup = (
    _h: string,
    o: { all?: boolean },
    cb: (e: null, a: string | { address: string; family: number }[], f?: number) => void,
  ) => (o.all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4));

  it('reads an HTTPS POST (head and body) from a client that trusts the run CA, and answers it as a site would (2xx)', async () => {
    const status = await new Promise<number | undefined>((resolve, reject) => {
      const req = request(
        { host: NAME, port, path: '/v1/collect?x=1', method: 'POST', ca: ca.certPem, lookup },
        (res) => {
          res.resume();
          resolve(res.statusCode);
        },
      );
      req.on('error', reject);
      req.setHeader('content-type', 'application/json');
      req.end(JSON.stringify({ token: 'secret-in-body' }));
    });
    assert.ok([200, 201, 204].includes(status ?? 0), String(status));
    const r = await last();
    assert.equal(r.outcome, 'decrypted');
    assert.equal(r.head?.method, 'POST');
    assert.equal(r.head?.path, '/v1/collect?x=1');
    assert.ok(r.head?.headers.some(([k, v]) => k === 'content-type' && v === 'application/json'));
    assert.equal(r.inner.subarray(r.head?.headLength).toString(), '{"token":"secret-in-body"}');
    assert.ok(r.bytesOut > r.innerSeen, 'the encrypted bytes are counted');
  });

  it('answers 100 Continue to a client that waits for it before its body', async () => {
    const body = 'b'.repeat(5000);
    await new Promise<void>((resolve, reject) => {
      const req = request(
        {
          host: NAME,
          port,
          method: 'PUT',
          path: '/upload',
          ca: ca.certPem,
          lookup,
          headers: { expect: '100-continue', 'content-length': body.length },
        },
        (res) => {
          res.resume();
          res.on('end', resolve);
        },
      );
      req.on('continue', () => req.end(body));
      req.on('error', reject);
    });
    const r = await last();
    assert.equal(r.head?.method, 'PUT');
    assert.equal(r.innerSeen - (r.head?.headLength ?? 0), 5000);
  });

  it('reads every HTTP/2 stream of a client that speaks only h2', async () => {
    const session = h2connect(`https://${NAME}:${port}`, { ca: ca.certPem, lookup });
    const status = await new Promise<unknown>((resolve, reject) => {
      session.on('error', reject);
      const s = session.request({ ':method': 'POST', ':path': '/pkg.Svc/Send', 'x-key': 'k1' });
      s.on('response', (h) => resolve(h[':status']));
      s.on('error', reject);
      s.resume();
      s.end('h2-body');
    });
    assert.ok([200, 201, 204].includes(Number(status)), String(status));
    session.close();
    const r = await last();
    assert.equal(r.outcome, 'decrypted');
    assert.equal(r.h2?.length, 1);
    const q = r.h2?.[0];
    assert.equal(q?.method, 'POST');
    assert.equal(q?.path, '/pkg.Svc/Send');
    assert.equal(q?.authority, `${NAME}:${port}`);
    assert.ok(q?.headers.some(([k, v]) => k === 'x-key' && v === 'k1'));
    assert.equal(q?.body.toString(), 'h2-body');
    assert.equal(q?.bodyBytes, 7);
  });

  it('keeps what HTTP/2 carries outside stream bodies: trailers, PING data, and many streams', async () => {
    const session = h2connect(`https://${NAME}:${port}`, { ca: ca.certPem, lookup });
    session.on('error', () => undefined);
    await new Promise<void>((resolve) => session.once('connect', () => resolve()));
    session.ping(Buffer.from('pingsec1'), () => undefined);
    const t = session.request({ ':method': 'POST', ':path': '/t' }, { waitForTrailers: true });
    t.on('wantTrailers', () => t.sendTrailers({ 'x-trailer': 'trailer-secret' }));
    t.on('error', () => undefined);
    t.resume();
    t.end('body');
    // Many streams, some cut short: none may bring the capture down.
    await Promise.all(
      Array.from(
        { length: 70 },
        (_, i) =>
          new Promise<void>((resolve) => {
            const s = session.request({ ':method': 'GET', ':path': `/s${i}` });
            s.on('error', () => resolve());
            s.on('close', () => resolve());
            s.resume();
            s.end();
          }),
      ),
    );
    session.close();
    const r = await last();
    assert.equal(r.outcome, 'decrypted');
    assert.equal(r.h2?.length, 71);
    const trailer = r.h2?.find((q) => q.path === '/t');
    assert.ok(trailer?.headers.some(([k, v]) => k === 'x-trailer' && v === 'trailer-secret'));
    assert.ok(r.h2Raw?.includes('pingsec1'), 'PING data in the raw frames');
  });

  it('reads the raw bytes of a client that offered a protocol other than HTTP', async () => {
    await new Promise<void>((resolve, reject) => {
      const t = tlsConnect(
        { host: '127.0.0.1', port, servername: NAME, ca: ca.certPem, ALPNProtocols: ['x-sync/1'] },
        () => t.end('SYNC secret-payload'),
      );
      t.on('close', () => resolve());
      t.on('error', reject);
    });
    const r = await last();
    assert.equal(r.outcome, 'decrypted');
    assert.equal(r.inner.toString(), 'SYNC secret-payload');
  });

  it('keeps every HTTP/2 header as sent, a repeated single-value one too', async () => {
    // Hand-made HPACK (literals, no Huffman): user-agent twice, the second carrying a secret.
    const lit = (name: string, value: string) =>
      Buffer.concat([
        Buffer.from([0x00, name.length]),
        Buffer.from(name),
        Buffer.from([value.length]),
        Buffer.from(value),
      ]);
    const block = Buffer.concat([
      Buffer.from([0x83, 0x84, 0x87]), // :method POST, :path /, :scheme https
      lit(':authority', NAME),
      lit('user-agent', 'ua/1'),
      lit('user-agent', 'second-value-secret'),
    ]);
    const frame = (type: number, flags: number, stream: number, payload: Buffer) => {
      const h = Buffer.alloc(9);
      h.writeUIntBE(payload.length, 0, 3);
      h[3] = type;
      h[4] = flags;
      h.writeUInt32BE(stream, 5);
      return Buffer.concat([h, payload]);
    };
    await new Promise<void>((resolve, reject) => {
      const t = tlsConnect(
        { host: '127.0.0.1', port, servername: NAME, ca: ca.certPem, ALPNProtocols: ['h2'] },
        () => {
          t.write(
            Buffer.concat([
              Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'),
              frame(4, 0, 0, Buffer.alloc(0)),
              frame(1, 0x4 | 0x1, 1, block),
            ]),
          );
          setTimeout(() => t.end(), 200);
        },
      );
      t.resume();
      t.on('close', () => resolve());
      t.on('error', reject);
    });
    const r = await last();
    const ua = r.h2?.[0]?.headers.filter(([k]) => k === 'user-agent').map(([, v]) => v);
    assert.deepEqual(ua, ['ua/1', 'second-value-secret']);
  });

  it('accepts a WebSocket upgrade and reads the first frames', async () => {
    const key = 'dGhlIHNhbXBsZSBub25jZQ==';
    const reply = await new Promise<string>((resolve, reject) => {
      const t = tlsConnect({ host: '127.0.0.1', port, servername: NAME, ca: ca.certPem }, () => {
        t.write(
          `GET /live HTTP/1.1\r\nHost: ${NAME}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        );
        t.once('data', (d: Buffer) => {
          const payload = Buffer.from('frame-data');
          const mask = Buffer.from([9, 8, 7, 6]);
          const masked = Buffer.from(payload.map((b, i) => b ^ (mask[i % 4] ?? 0)));
          t.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]));
          setTimeout(() => t.end(), 100);
          resolve(d.toString('latin1'));
        });
      });
      t.on('error', reject);
    });
    assert.match(reply, /^HTTP\/1\.1 101 /);
    assert.ok(reply.includes(`Sec-WebSocket-Accept: ${websocketAccept(key)}`));
    const r = await last();
    assert.equal(r.head?.websocket, true);
    assert.equal(r.wsPayload?.toString(), 'frame-data');
  });

  it('reads a request whose client ends the connection right after sending it', async () => {
    await new Promise<void>((resolve, reject) => {
      const t = tlsConnect({ host: '127.0.0.1', port, servername: NAME, ca: ca.certPem }, () =>
        t.end(`POST /bye HTTP/1.1\r\nHost: ${NAME}\r\nContent-Length: 4\r\n\r\ndata`),
      );
      t.resume();
      t.on('close', () => resolve());
      t.on('error', reject);
    });
    const r = await last();
    assert.equal(r.head?.path, '/bye');
    assert.equal(r.inner.subarray(r.head?.headLength).toString(), 'data');
  });

  it('keeps the first bytes of what is not HTTP inside TLS', async () => {
    await new Promise<void>((resolve, reject) => {
      const t = tlsConnect({ host: '127.0.0.1', port, servername: NAME, ca: ca.certPem }, () => {
        t.end(Buffer.alloc(5000, 0x01));
      });
      t.on('close', () => resolve());
      t.on('error', reject);
    });
    const r = await last();
    assert.equal(r.outcome, 'decrypted');
    assert.equal(r.head, undefined);
    assert.ok(r.inner.length >= 4096 && r.inner.every((b) => b === 1));
  });

  it('records a client that took the handshake and hung up without a byte as refused', async () => {
    await new Promise<void>((resolve, reject) => {
      const t = tlsConnect({ host: '127.0.0.1', port, servername: NAME, ca: ca.certPem }, () =>
        t.end(),
      );
      t.resume();
      t.on('close', () => resolve());
      t.on('error', reject);
    });
    const r = await last();
    assert.equal(r.outcome, 'refused');
    assert.equal(r.alert, 'closed_after_handshake');
  });

  it('records a client that trusts another CA as refused, with what it did', async () => {
    const err = await new Promise<Error>((resolve) => {
      const t = tlsConnect({ host: '127.0.0.1', port, servername: NAME, ca: other.certPem });
      t.on('error', resolve);
    });
    assert.match(String((err as { code?: string }).code), /UNABLE_TO_VERIFY|SELF_SIGNED|CERT/);
    const r = await last();
    assert.equal(r.outcome, 'refused');
    assert.ok(r.alert, 'an alert or none');
    assert.equal(r.head, undefined);
  });
});

describe('interception helpers', () => {
  it('names the certificate after the server name, else the dialled address', () => {
    assert.equal(certificateName('api.example.com.', '198.51.100.1'), 'api.example.com');
    assert.equal(certificateName(undefined, '198.51.100.1'), '198.51.100.1');
    assert.equal(certificateName('/v1/items', '198.51.100.1'), '198.51.100.1');
    assert.equal(certificateName('x'.repeat(300), '2001:db8::1'), '2001:db8::1');
  });

  it('judges an HTTP/2 request by the name that is not its TLS server name', () => {
    const q = (authority: string | undefined, host?: string) => ({
      method: 'GET',
      path: '/',
      ...(authority !== undefined ? { authority } : {}),
      headers: host ? ([['host', host]] as [string, string][]) : [],
      body: Buffer.alloc(0),
      bodyBytes: 0,
    });
    assert.equal(h2Target(q('a.example', 'evil.example'), 'a.example'), 'evil.example');
    assert.equal(h2Target(q('evil.example:443', 'a.example'), 'a.example'), 'evil.example:443');
    assert.equal(h2Target(q('a.example'), 'a.example'), 'a.example');
    assert.equal(h2Target(q(undefined, 'b.example'), undefined), 'b.example');
    assert.equal(h2Target(q(undefined), 'a.example'), undefined);
  });

  it('tells an alert the client sent from a handshake the capture could not make', () => {
    assert.deepEqual(handshakeError({ code: 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA' }), {
      outcome: 'refused',
      alert: 'unknown_ca',
    });
    assert.deepEqual(handshakeError({ code: 'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE' }), {
      outcome: 'refused',
      alert: 'bad_certificate',
    });
    assert.deepEqual(handshakeError({ code: 'ERR_SSL_NO_SHARED_CIPHER' }), {
      outcome: 'failed',
      alert: 'no_shared_cipher',
    });
    assert.deepEqual(handshakeError(new Error('socket hang up')), {
      outcome: 'refused',
      alert: 'none',
    });
  });

  it('answers ALPN with HTTP/1.1 when offered, h2 for h2-only clients, else the first offered', () => {
    assert.equal(chooseAlpn(['h2', 'http/1.1']), 'http/1.1');
    assert.equal(chooseAlpn(['h2']), 'h2');
    assert.equal(chooseAlpn(['x-sync/1', 'y']), 'x-sync/1');
    assert.equal(chooseAlpn([]), undefined);
  });

  it('joins what HTTP/2 frames carry: DATA per stream without padding, PING, GOAWAY, unknown types', () => {
    const frame = (type: number, flags: number, stream: number, payload: Buffer) => {
      const h = Buffer.alloc(9);
      h.writeUIntBE(payload.length, 0, 3);
      h[3] = type;
      h[4] = flags;
      h.writeUInt32BE(stream, 5);
      return Buffer.concat([h, payload]);
    };
    const raw = Buffer.concat([
      Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'),
      frame(4, 0, 0, Buffer.alloc(0)),
      frame(0, 0, 1, Buffer.from('sec')),
      frame(6, 0, 0, Buffer.from('ping0001')),
      frame(0, 0x8, 1, Buffer.concat([Buffer.from([2]), Buffer.from('ret'), Buffer.from('pp')])),
      frame(6, 0, 0, Buffer.from('ping0002')),
      frame(0, 0, 3, Buffer.from('other')),
      frame(7, 0, 0, Buffer.concat([Buffer.alloc(8), Buffer.from('bye-data')])),
      frame(0xee, 0, 0, Buffer.from('unknown')),
      frame(0, 0, 1, Buffer.from('cut-off-part')).subarray(0, 9 + 3),
    ]);
    assert.equal(
      h2Payloads(raw).toString('latin1'),
      // Per stream, then in wire order (two streams interleaved), PING, GOAWAY, padding, unknown.
      'secretcut' + 'other' + 'secretothercut' + 'ping0001ping0002' + 'bye-data' + 'pp' + 'unknown',
    );
    // Bytes that are not HTTP/2 from the start stay as they came.
    const notH2 = Buffer.concat([
      Buffer.from([0, 0, 4, 4, 0, 0, 0, 0, 0]),
      Buffer.from('raw-secret'),
    ]);
    assert.deepEqual(h2Payloads(notH2), notH2);
  });

  it('unmasks client frames, short and 16-bit lengths, and stops at a cut frame', () => {
    const frame = (payload: Buffer, mask = Buffer.from([1, 2, 3, 4])) => {
      const len =
        payload.length < 126
          ? Buffer.from([0x82, 0x80 | payload.length])
          : Buffer.from([0x82, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
      return Buffer.concat([len, mask, Buffer.from(payload.map((b, i) => b ^ (mask[i % 4] ?? 0)))]);
    };
    const a = Buffer.from('first');
    const b = Buffer.alloc(300, 0x41);
    const both = Buffer.concat([frame(a), frame(b)]);
    assert.equal(websocketPayloads(both).toString(), `first${'A'.repeat(300)}`);
    assert.equal(websocketPayloads(both.subarray(0, both.length - 100)).length, 5 + 200);
    assert.equal(websocketPayloads(both, 8).toString(), 'firstAAA');
    assert.equal(websocketPayloads(Buffer.from([0x81])).length, 0);
  });
});
