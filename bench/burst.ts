/**
 * Runs inside the sandbox (as a `node -e` program): N/2 TCP connections and N/2 DNS queries, at a
 * bounded concurrency, either at egress destinations (through the capture gateway) or at
 * loopback servers of its own (the baseline). Prints one JSON line with what it saw.
 */
/** Runs `fn(i)` for i below `count`, `conc` at once (a variable of the program); counts the true ones. */
const POOL = `async function pool(count, fn) {
  let next = 0, ok = 0;
  await Promise.all(Array.from({ length: conc }, async () => {
    while (next < count) { const i = next++; if (await fn(i)) ok++; }
  }));
  return ok;
}
`;

export const BURST_SOURCE = `
const net = require('net'), dgram = require('dgram');
const [n, mode] = [Number(process.argv[1]), process.argv[2]];
const half = Math.floor(n / 2), conc = 200;
const now = () => Number(process.hrtime.bigint() / 1000n) / 1000;
function query(id, name) {
  const h = Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
  const q = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  return Buffer.concat([h, ...q, Buffer.from([0, 0, 1, 0, 1])]);
}
${POOL}async function main() {
  let tcpTarget, dnsTarget, servers = [];
  if (mode === 'loopback') {
    const s = net.createServer((c) => { c.on('data', () => {}); c.on('end', () => c.end()); c.on('error', () => {}); });
    await new Promise((r) => s.listen(0, '127.0.0.1', r));
    const u = dgram.createSocket('udp4');
    u.on('message', (m, r) => u.send(Buffer.concat([m.subarray(0, 2), Buffer.from([0x81, 0x80]), m.subarray(4)]), r.port, r.address));
    await new Promise((r) => u.bind(0, '127.0.0.1', r));
    tcpTarget = (i) => ['127.0.0.1', s.address().port];
    dnsTarget = ['127.0.0.1', u.address().port];
    servers = [s, u];
  } else {
    tcpTarget = (i) => ['203.0.113.' + (1 + (i % 250)), 20000 + Math.floor(i / 250)];
    dnsTarget = ['192.168.1.1', 53];
  }
  const t0 = now();
  const tcpOk = await pool(half, (i) => new Promise((res) => {
    const [host, port] = tcpTarget(i);
    const c = net.connect(port, host, () => c.end('x'));
    c.setTimeout(10000, () => { c.destroy(); res(false); });
    c.on('close', (err) => res(!err)); c.on('error', () => {});
  }));
  const t1 = now();
  // Room for every reply of the window in flight (200 of ~1 KiB each in the kernel): with the
  // default 212 KiB, a reply burst while this process is descheduled overflows its own buffer.
  const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 1 << 20 });
  await new Promise((r) => sock.bind(0, r));
  const waiting = new Map();
  sock.on('message', (m) => { const w = waiting.get(m.readUInt16BE(0)); if (w) { waiting.delete(m.readUInt16BE(0)); w(true); } });
  const dnsOk = await pool(half, (i) => new Promise((res) => {
    const id = i & 0xffff;
    const timer = setTimeout(() => { waiting.delete(id); res(false); }, 5000);
    waiting.set(id, (v) => { clearTimeout(timer); res(v); });
    sock.send(query(id, 'b' + i + '.burst.example'), dnsTarget[1], dnsTarget[0]);
  }));
  const t2 = now();
  sock.close(); servers.forEach((s) => s.close());
  process.stdout.write(JSON.stringify({ tcpOk, dnsOk, tcpMs: t1 - t0, dnsMs: t2 - t1, totalMs: t2 - t0 }) + '\\n');
}
main();
`;

/**
 * Runs inside the sandbox: N HTTPS requests (a TLS handshake, a GET, the response), 50 at once,
 * at egress destinations (through the capture, which intercepts each with a certificate of the
 * run's CA) or at a loopback TLS server of its own with a certificate made for it (the baseline).
 * Prints one JSON line: requests answered, handshakes completed, time.
 */
export const TLS_BURST_SOURCE = `
const tls = require('tls'), fs = require('fs');
const [n, mode, certFile, keyFile] = [Number(process.argv[1]), process.argv[2], process.argv[3], process.argv[4]];
const conc = 50;
const now = () => Number(process.hrtime.bigint() / 1000n) / 1000;
${POOL}async function main() {
  let target, server, ca;
  if (mode === 'loopback') {
    const cert = fs.readFileSync(certFile), key = fs.readFileSync(keyFile);
    ca = cert;
    server = tls.createServer({ cert, key }, (s) => {
      s.on('data', () => s.end('HTTP/1.1 200 OK\\r\\nContent-Length: 0\\r\\nConnection: close\\r\\n\\r\\n'));
      s.on('error', () => {});
    });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    target = () => ['127.0.0.1', server.address().port, 'localhost'];
  } else {
    target = (i) => ['203.0.113.' + (1 + (i % 250)), 443, 't' + i + '.burst-tls.example'];
  }
  let handshakes = 0;
  const t0 = now();
  const ok = await pool(n, (i) => new Promise((res) => {
    const [host, port, servername] = target(i);
    const c = tls.connect({ host, port, servername, ...(ca ? { ca } : {}) }, () => {
      handshakes++;
      c.write('GET /b/' + i + ' HTTP/1.1\\r\\nHost: ' + servername + '\\r\\nConnection: close\\r\\n\\r\\n');
    });
    let got = '';
    c.setTimeout(10000, () => { c.destroy(); res(false); });
    c.on('data', (d) => { got += d; });
    c.on('close', () => res(got.startsWith('HTTP/1.1 200')));
    c.on('error', () => {});
  }));
  const ms = now() - t0;
  if (server) server.close();
  process.stdout.write(JSON.stringify({ ok, handshakes, ms }) + '\\n');
}
main();
`;
