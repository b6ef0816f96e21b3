import assert from 'node:assert/strict';
import { connect } from 'node:tls';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import { looksLikeTls, parseClientHello } from '../../../src/capture/tls.js';

/** A real ClientHello, from Node's own TLS client, captured on a loopback socket. */
async function clientHello(servername: string, alpn: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const server = createServer((s) => {
      s.once('data', (d: Buffer) => {
        resolve(d);
        s.destroy();
        server.close();
      });
    });
    server.listen(0, '127.0.0.1', () => {
      const addr = server.address();
      if (!addr || typeof addr !== 'object') return reject(new Error('no address'));
      const c = connect({ host: '127.0.0.1', port: addr.port, servername, ALPNProtocols: alpn });
      c.on('error', () => undefined);
    });
  });
}

describe('TLS ClientHello', () => {
  it('reads SNI, ALPN and the real version from a real hello', async () => {
    const hello = await clientHello('api.example.test', ['h2', 'http/1.1']);
    assert.ok(looksLikeTls(hello));
    const r = parseClientHello(hello);
    assert.equal(r.status, 'ok');
    if (r.status !== 'ok') return;
    assert.equal(r.sni, 'api.example.test');
    assert.deepEqual(r.alpn, ['h2', 'http/1.1']);
    assert.equal(r.version, 'TLS1.3');
  });

  it('asks for more bytes on a partial record and refuses non-TLS', async () => {
    const hello = await clientHello('a.example', []);
    const partial = parseClientHello(hello.subarray(0, 40));
    assert.equal(partial.status, 'incomplete');
    assert.equal(parseClientHello(Buffer.from('GET / HTTP/1.1\r\n')).status, 'not-tls');
  });
});
