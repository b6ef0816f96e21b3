import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { deflateSync, gzipSync } from 'node:zlib';
import {
  dechunk,
  encodedForms,
  findBaitLeaks,
  npmAuthenticatedRead,
  type Bait,
} from '../../../src/core/bait.js';
import type { CaptureEvent } from '../../../src/core/terms.js';
import { makeIdentity, PLACEHOLDER } from '../../../src/sandbox/identity.js';

const token: Bait = {
  id: 'npm-token',
  label: 'npm access token',
  where: ['~/.npmrc'],
  value: 'npm_Q7rX2mLk9PzA4bVt1nWc8YhE3sDf6GjKuR0o',
};
let seq = 0;
const http = (over: Record<string, unknown>): CaptureEvent =>
  ({
    seq: seq++,
    t: 1,
    kind: 'http',
    ip: '198.18.0.1',
    port: 443,
    bytesOut: 100,
    host: 'collect.example.net',
    ...over,
  }) as CaptureEvent;
const dns = (qname: string): CaptureEvent =>
  ({
    seq: seq++,
    t: 1,
    kind: 'dns',
    qname,
    qtype: 'A',
    resolver: '192.168.1.1',
    resolverPort: 53,
    transport: 'udp',
    answer: '',
  }) as CaptureEvent;

/** RFC 4648 base32: uppercase, padded. */
function base32Upper(buf: Buffer): string {
  const a = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let v = 0;
  let out = '';
  for (const x of buf) {
    v = (v << 8) | x;
    bits += 8;
    while (bits >= 5) {
      out += a[(v >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits) out += a[(v << (5 - bits)) & 31];
  while (out.length % 8) out += '=';
  return out;
}

describe('bait leaks', () => {
  it('finds uppercase hex, standard base32 inside a larger blob, and a gzip-encoded body', () => {
    const body = (text: string | Buffer, headers: [string, string][] = []) =>
      http({
        method: 'POST',
        path: '/v1',
        headers,
        bodySample: Buffer.from(text).toString('base64'),
      });
    const upperHex = body(
      JSON.stringify({ id: Buffer.from(token.value).toString('hex').toUpperCase() }),
    );
    const b32 = body(JSON.stringify({ id: base32Upper(Buffer.from(`xyz${token.value}!!`)) }));
    const gz = body(gzipSync(JSON.stringify({ id: token.value })), [['Content-Encoding', 'gzip']]);
    const leaks = findBaitLeaks([upperHex, b32, gz], [token]);
    const found = new Set(leaks.map((l) => `${l.event.seq}:${l.encoding}:${l.channel}`));
    for (const want of [
      `${upperHex.seq}:hex:HTTP body`,
      `${b32.seq}:base32:HTTP body`,
      `${gz.seq}:raw:HTTP body (decoded)`,
    ])
      assert.ok(found.has(want), `${want} in ${[...found].join(', ')}`);
    // The compressed bytes themselves hold no trace of it: only the decoded body does.
    assert.ok(!leaks.some((l) => l.event === gz && l.channel === 'HTTP body'));
  });

  it('reads a chunked body without its framing, gzip too, in plain HTTP and inside TLS', () => {
    const chunked = (data: Buffer, size: number) => {
      const parts: Buffer[] = [];
      for (let i = 0; i < data.length; i += size) {
        const c = data.subarray(i, i + size);
        parts.push(Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from('\r\n'));
      }
      return Buffer.concat([...parts, Buffer.from('0\r\n\r\n')]);
    };
    const te: [string, string] = ['transfer-encoding', 'chunked'];
    const plain = http({
      method: 'POST',
      headers: [te],
      bodySample: chunked(Buffer.from(JSON.stringify({ t: token.value })), 8).toString('base64'),
    });
    const zipped = http({
      kind: 'tls',
      sni: 'collect.example.net',
      intercept: 'decrypted',
      method: 'POST',
      headers: [te, ['content-encoding', 'gzip']],
      bodySample: chunked(gzipSync(token.value), 5).toString('base64'),
    });
    const leaks = findBaitLeaks([plain, zipped], [token]);
    assert.ok(
      leaks.some((l) => l.event === plain && l.channel === 'HTTP body'),
      'chunked',
    );
    assert.ok(
      leaks.some((l) => l.event === zipped && l.channel === 'HTTPS body (decoded)'),
      JSON.stringify(leaks.map((l) => [l.event.seq, l.channel])),
    );
    assert.equal(dechunk(Buffer.from('3\r\nabc\r\n4\r\ndefg')).toString(), 'abcdefg');
    // Stacked codings, in Content-Encoding and in Transfer-Encoding before chunked.
    const stacked = http({
      method: 'POST',
      headers: [['content-encoding', 'deflate, gzip']],
      bodySample: gzipSync(deflateSync(token.value)).toString('base64'),
    });
    const transfer = http({
      method: 'POST',
      headers: [['transfer-encoding', 'gzip, chunked']],
      bodySample: chunked(gzipSync(token.value), 7).toString('base64'),
    });
    // A small body that inflates past the bound, one compressed without saying so, and a coding
    // phonehome does not know beside one it does.
    const bomb = http({
      method: 'POST',
      headers: [['content-encoding', 'gzip']],
      bodySample: gzipSync(
        Buffer.concat([Buffer.from(token.value), Buffer.alloc(3 << 20)]),
      ).toString('base64'),
    });
    const unsaid = http({ method: 'POST', bodySample: gzipSync(token.value).toString('base64') });
    const unknown = http({
      method: 'POST',
      headers: [['content-encoding', 'gzip, x-custom']],
      bodySample: gzipSync(token.value).toString('base64'),
    });
    const more = findBaitLeaks([stacked, transfer, bomb, unsaid, unknown], [token]);
    for (const e of [stacked, transfer, bomb, unsaid, unknown])
      assert.ok(
        more.some((l) => l.event === e && l.channel === 'HTTP body (decoded)'),
        JSON.stringify(more.map((l) => [l.event.seq, l.channel])),
      );
  });

  it('finds a secret raw, in base64 at any offset, in hex and URL-encoded, and names the channel', () => {
    const env = JSON.stringify({ PATH: '/usr/bin', NPM_TOKEN: token.value, X: 'y' });
    const cases: [CaptureEvent, string, string][] = [
      [http({ bodySample: Buffer.from(env).toString('base64') }), 'raw', 'HTTP body'],
      ...[0, 1, 2].map((pad): [CaptureEvent, string, string] => [
        http({
          bodySample: Buffer.from(Buffer.from('x'.repeat(pad) + env).toString('base64')).toString(
            'base64',
          ),
        }),
        'base64',
        'HTTP body',
      ]),
      [http({ path: `/c?d=${Buffer.from(env).toString('hex')}` }), 'hex', 'HTTP path'],
      [http({ path: `/c?t=${encodeURIComponent(`a b ${token.value}`)}` }), 'raw', 'HTTP path'],
      [http({ headers: [['authorization', `Bearer ${token.value}`]] }), 'raw', 'HTTP headers'],
    ];
    for (const [event, encoding, channel] of cases) {
      const leaks = findBaitLeaks([event], [token]);
      assert.ok(
        leaks.some((l) => l.encoding === encoding && l.channel === channel),
        `${encoding} in ${channel}: ${JSON.stringify(leaks.map((l) => [l.encoding, l.channel]))}`,
      );
    }
  });

  it('finds hex data cut across DNS labels and across queries', () => {
    const hex = Buffer.from(token.value).toString('hex');
    const one = dns(`${hex.slice(0, 40)}.${hex.slice(40)}.x.exfil.example`);
    assert.ok(
      findBaitLeaks([one], [token]).some((l) => l.channel === 'DNS name' && l.encoding === 'hex'),
    );
    const chunks = hex.match(/.{1,30}/g) ?? [];
    const many = chunks.map((c, i) => dns(`${c}.${i}.exfil.example`));
    assert.ok(findBaitLeaks(many, [token]).some((l) => l.channel === 'DNS names (joined)'));
  });

  it('finds a secret in raw TCP and UDP bytes, and nothing in traffic without it', () => {
    const tcp = {
      seq: seq++,
      t: 1,
      kind: 'tcp',
      ip: '203.0.113.5',
      port: 1224,
      bytesOut: 80,
      firstBytesHex: Buffer.from(`TOKEN ${token.value}\n`).toString('hex'),
    } as CaptureEvent;
    const udp = {
      seq: seq++,
      t: 1,
      kind: 'udp',
      ip: '203.0.113.5',
      port: 9999,
      bytes: 60,
      sampleHex: Buffer.from(Buffer.from(token.value).toString('base64')).toString('hex'),
    } as CaptureEvent;
    assert.equal(findBaitLeaks([tcp], [token])[0]?.channel, 'TCP data');
    assert.equal(findBaitLeaks([udp], [token])[0]?.encoding, 'base64');
    const clean = [
      http({
        bodySample: Buffer.from('{"hello":"world"}').toString('base64'),
        path: '/api/v1/items',
      }),
      dns('registry.npmjs.org'),
    ];
    assert.deepEqual(findBaitLeaks(clean, [token]), []);
  });

  it('finds a secret riding after the question of a DNS query', () => {
    const q = {
      seq: seq++,
      t: 1,
      kind: 'dns',
      qname: 'wpad',
      qtype: 'A',
      resolver: '203.0.113.53',
      resolverPort: 53,
      transport: 'udp',
      answer: 'NXDOMAIN',
      extraHex: Buffer.from(`\0\0\0${token.value}\n`).toString('hex'),
    } as CaptureEvent;
    assert.equal(findBaitLeaks([q], [token])[0]?.channel, 'DNS message data');
  });

  it('every encoded form of a fresh identity bait is long enough to be unambiguous', () => {
    const id = makeIdentity('laptop');
    assert.equal(new Set(id.bait.map((b) => b.value)).size, id.bait.length);
    for (const b of id.bait) {
      assert.ok(b.value.length >= 20, b.id);
      for (const f of encodedForms(b.value))
        assert.ok(f.form.length >= 16, `${b.id} ${f.encoding}`);
      // Not textbook example values.
      assert.doesNotMatch(b.value, PLACEHOLDER);
    }
    const ci = makeIdentity('ci');
    assert.equal(ci.user, 'runner');
    assert.equal(ci.env.CI, 'true');
    assert.match(ci.env.GITHUB_TOKEN ?? '', /^ghs_/);
    assert.notEqual(makeIdentity('laptop').env.NPM_TOKEN, id.env.NPM_TOKEN, 'unique per run');
  });
});

describe("npm's own use of the npm token", () => {
  const read = (over: Record<string, unknown> = {}) =>
    http({
      kind: 'tls',
      host: 'registry.npmjs.org',
      sni: 'registry.npmjs.org',
      intercept: 'decrypted',
      method: 'GET',
      path: '/pm2',
      proc: { pid: 7, cmd: 'npm i pm2@latest', startMs: 0 },
      headers: [
        ['host', 'registry.npmjs.org'],
        ['authorization', `Bearer ${token.value}`],
        ['npm-command', 'install'],
      ],
      ...over,
    });
  const used = (e: CaptureEvent) => findBaitLeaks([e], [token]).map(npmAuthenticatedRead);
  const allUsed = (e: CaptureEvent) => {
    const r = used(e);
    return r.length > 0 && r.every(Boolean);
  };

  it('a GET of a package document or tarball on its registry, as Bearer only, by npm, looks like npm authenticating', () => {
    assert.ok(allUsed(read()));
    assert.ok(allUsed(read({ path: '/@scope%2fpkg', method: 'HEAD' })));
    assert.ok(allUsed(read({ path: '/pm2/-/pm2-7.0.4.tgz' })));
    assert.ok(allUsed(read({ httpHost: 'registry.npmjs.org' })));
    assert.ok(
      allUsed(
        read({
          proc: {
            pid: 9,
            cmd: '/usr/local/bin/node /usr/local/lib/node_modules/npm/bin/npm-cli.js view x',
            startMs: 0,
          },
        }),
      ),
    );
  });

  it('a write, a token or account path, another host, a query or the token elsewhere stays a leak', () => {
    const cases: Record<string, unknown>[] = [
      { method: 'PUT' },
      { path: '/-/whoami' },
      { path: '/-/npm/v1/tokens' },
      { path: '/pm2?write=true' },
      { host: 'registry.npmjs.org.evil.example', sni: 'registry.npmjs.org.evil.example' },
      { sni: 'c2.evil.example' },
      { kind: 'http', sni: undefined },
      {
        headers: [
          ['host', 'registry.npmjs.org'],
          ['authorization', `Bearer ${token.value}`],
          ['x-copy', token.value],
        ],
      },
      {
        headers: [
          ['host', 'collect.evil.example'],
          ['authorization', `Bearer ${token.value}`],
        ],
      },
      {
        headers: [
          ['host', 'registry.npmjs.org'],
          ['authorization', `Basic ${token.value}`],
        ],
      },
      // HTTP/2 with another :authority than the TLS server name.
      { httpHost: 'front.evil.example' },
      // Not npm: the package's own process, or none known.
      { proc: { pid: 8, cmd: 'node /work/node_modules/x/index.js', startMs: 0 } },
      { proc: undefined },
    ];
    for (const c of cases) {
      const r = used(read(c));
      assert.ok(r.length > 0 && r.every((x) => !x), JSON.stringify(c));
    }
    // Also in the body or path: those are leaks of their own.
    const inPath = findBaitLeaks([read({ path: `/pm2/${token.value}` })], [token]);
    assert.ok(inPath.some((l) => !npmAuthenticatedRead(l)));
    // A secret in an HTTP/2 :authority is found.
    const aws: Bait = {
      id: 'aws',
      label: 'AWS key',
      where: ['~/.aws'],
      value: 'AKIAQ7RX2MLK9PZA4BVT',
    };
    const authority = findBaitLeaks(
      [read({ httpHost: `${aws.value.toLowerCase()}.api.evil.example` })],
      [aws],
    );
    assert.ok(
      authority.some((l) => l.channel === 'HTTPS authority'),
      JSON.stringify(authority),
    );
  });
});
