/**
 * TLS interception: a redirected connection whose ClientHello the classifier read is answered as
 * the server it asked for, with a certificate the run's CA (x509.ts) made for that name (or, with
 * no server name, for the address it dialled), and what it sends inside is read like plain HTTP:
 * an HTTP/1.x request (head, body sample), answered with an empty 200 and closed; a WebSocket
 * upgrade is accepted and its first frames read; anything else is kept as its first bytes. A
 * client that refuses the certificate (an alert, or closing during the handshake) is recorded as
 * having refused, with the alert it sent.
 *
 * Terms: `outcome` is what came of the interception: `decrypted` (the handshake completed) or
 * `refused` (it did not; `alert` names why).
 */
import { createHash } from 'node:crypto';
import { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { createServer as createH2Server, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import { StreamClassifier } from './classify.js';
import { type HttpRequestHead } from './http.js';
import { http1Reply, RUN_REPLY_SEED, siteReply } from './reply.js';
import type { RunCa } from './x509.js';

/** How long a decrypted connection may stay silent before we record what we have. */
const IDLE_MS = 1500;
/** The longest we hold one intercepted connection. */
const CONNECTION_MAX_MS = 10_000;
/** WebSocket frame bytes read after the upgrade. */
const WS_MAX = 64 * 1024;
/**
 * After the answer to an HTTP/1.1 request, how long the connection is still read (a client may
 * have sent more: a pipelined request, data after the head) and how much of it is kept.
 */
const LINGER_MS = 1000;
const TRAILING_MAX = 16 * 1024;

export interface Intercepted {
  /**
   * `decrypted`: the handshake completed; `refused`: the client would not go on with the run's
   * certificate (an alert, or it closed); `failed`: the capture could not agree on a handshake
   * with it (no common version, cipher or protocol): the client never saw a certificate.
   */
  outcome: 'decrypted' | 'refused' | 'failed';
  /** The alert the client sent when it refused (`unknown_ca`, `bad_certificate`…), or `none`; why the handshake failed. */
  alert?: string;
  /** Encrypted bytes the client sent. */
  bytesOut: number;
  /** The decrypted bytes kept (the classifier's first bytes) and how many there were. */
  inner: Buffer;
  innerSeen: number;
  /** The HTTP request head read inside, if any. */
  head?: HttpRequestHead;
  /** The payloads of the WebSocket frames the client sent after an accepted upgrade. */
  wsPayload?: Buffer;
  /** The requests of an HTTP/2 connection (ALPN h2), in the order their streams opened. */
  h2?: H2Request[];
  /** Decrypted bytes the client sent after the request that was answered (first TRAILING_MAX). */
  trailing?: Buffer;
  /**
   * The first decrypted bytes of an HTTP/2 connection as sent (frames, first H2_RAW_MAX): what
   * the streams' headers and bodies do not hold (PING and GOAWAY data, unknown frames, streams
   * past H2_STREAMS_MAX, bytes that were not HTTP/2 at all) is there.
   */
  h2Raw?: Buffer;
}

/** One HTTP/2 request read inside TLS. */
export interface H2Request {
  method: string;
  path: string;
  authority?: string;
  /** Headers other than the pseudo-headers, lower-case, as sent. */
  headers: [string, string][];
  /** The first body bytes (at most H2_BODY_MAX) and how many there were. */
  body: Buffer;
  bodyBytes: number;
}

/** HTTP/2 streams read per connection, body bytes kept per stream, raw bytes kept per connection. */
const H2_STREAMS_MAX = 256;
const H2_BODY_MAX = 64 * 1024;
export const H2_RAW_MAX = 128 * 1024;

/** The name a leaf certificate is made for: the server name when it is one, else the address. */
export function certificateName(sni: string | undefined, dialled: string): string {
  if (sni && /^[a-z0-9_*](?:[a-z0-9_.-]*[a-z0-9_])?\.?$/i.test(sni) && sni.length <= 253)
    return sni.replace(/\.$/, '');
  return dialled;
}

/**
 * What a handshake error says: an alert the client sent (ERR_SSL_TLSV1_ALERT_UNKNOWN_CA →
 * refused, unknown_ca), or a failure on the capture's side (no shared cipher, version or
 * protocol → failed, with OpenSSL's reason).
 */
export function handshakeError(err: unknown): { outcome: 'refused' | 'failed'; alert: string } {
  const code = (err as { code?: unknown })?.code;
  const m =
    typeof code === 'string' ? /^ERR_SSL_(?:TLSV1|SSLV3|TLSV13)_ALERT_(.+)$/.exec(code) : null;
  if (m?.[1]) return { outcome: 'refused', alert: m[1].toLowerCase() };
  const msg = err instanceof Error ? err.message : String(err);
  const a = /alert ([a-z ]+?)(?::|$)/i.exec(msg)?.[1];
  if (a) return { outcome: 'refused', alert: a.trim().toLowerCase().replace(/ /g, '_') };
  if (typeof code === 'string' && code.startsWith('ERR_SSL_'))
    return { outcome: 'failed', alert: code.slice('ERR_SSL_'.length).toLowerCase() };
  return { outcome: 'refused', alert: 'none' };
}

/**
 * The protocol to answer a ClientHello's ALPN list with: HTTP/1.1 whenever offered, h2 for
 * clients that speak only h2, else the client's first (its bytes are then kept raw); none when
 * it offered none.
 */
export function chooseAlpn(offered: readonly string[]): string | undefined {
  if (offered.includes('http/1.1')) return 'http/1.1';
  if (offered.includes('h2')) return 'h2';
  return offered[0];
}

/** The Sec-WebSocket-Accept value for a key (RFC 6455 4.2.2). */
export function websocketAccept(key: string): string {
  return createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC11B65`).digest('base64');
}

/**
 * The unmasked payloads of the client frames in `buf` (RFC 6455 5.2), as far as whole frames go,
 * at most `max` bytes. Pure.
 */
export function websocketPayloads(buf: Buffer, max = WS_MAX): Buffer {
  const out: Buffer[] = [];
  let size = 0;
  let off = 0;
  while (off + 2 <= buf.length && size < max) {
    const b1 = buf[off + 1] ?? 0;
    const masked = (b1 & 0x80) !== 0;
    let len = b1 & 0x7f;
    let p = off + 2;
    if (len === 126) {
      if (p + 2 > buf.length) break;
      len = buf.readUInt16BE(p);
      p += 2;
    } else if (len === 127) {
      if (p + 8 > buf.length) break;
      const big = buf.readBigUInt64BE(p);
      len = big > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(big);
      p += 8;
    }
    const mask = masked ? buf.subarray(p, p + 4) : undefined;
    if (masked) p += 4;
    if (p > buf.length) break;
    // A frame cut by the end of what arrived still gives what arrived of it.
    const data = Buffer.from(buf.subarray(p, Math.min(buf.length, p + len)));
    if (mask && mask.length === 4) for (let i = 0; i < data.length; i++) data[i]! ^= mask[i % 4]!;
    out.push(data.subarray(0, max - size));
    size += Math.min(data.length, max - size);
    off = p + len;
  }
  return Buffer.concat(out);
}

/**
 * Take over a connection whose ClientHello (`first`, `seen` bytes so far) was read: answer it as
 * `name` once `ready` resolves (the capture has looked the client's socket up), read what it
 * sends, and call `done` once with what came of it. Returns a function that ends it now (a flush).
 */
export function intercept(
  sock: Socket,
  first: Buffer,
  seen: number,
  ca: RunCa,
  ready: Promise<string>,
  done: (r: Intercepted) => void,
  /** The time of day the client reads, for the replies' `Date`. */
  now: () => Date = () => new Date(),
): () => void {
  let bytesOut = seen;
  /** The connection's record was made: nothing more is read or answered. */
  let completed = false;
  let secured = false;
  let failure: { outcome: 'refused' | 'failed'; alert: string } | undefined;
  let h2Raw = Buffer.alloc(0);
  /** The client closed its side (not the capture's idle or deadline). */
  let hungUp = false;
  let tlsSock: TLSSocket | undefined;
  let upgraded = false;
  let ws = Buffer.alloc(0);
  let h2: H2Request[] | undefined;
  const inner = new StreamClassifier();
  let idle: NodeJS.Timeout | undefined;
  const deadline = setTimeout(() => finish(), CONNECTION_MAX_MS);

  // The client's bytes, the ClientHello first, into the TLS server side.
  const raw = feeding(sock);
  raw.push(first);
  // Silence counts once the handshake is done: before, the client may be waiting on the capture
  // (its lookup, a certificate being made), and the connection's deadline bounds it.
  const armIdle = () => {
    if (!secured) return;
    clearTimeout(idle);
    idle = setTimeout(() => finish(), IDLE_MS);
  };
  sock.on('data', (d: Buffer) => {
    bytesOut += d.length;
    armIdle();
    if (!completed) raw.push(d);
  });
  sock.on('end', () => {
    hungUp = true;
    raw.push(null);
    // Once TLS runs, its own end (after every decrypted byte was read) finishes.
    if (!tlsSock) finish();
  });
  // A reset after the handshake is a hang-up too (a client closing with unread tickets).
  sock.on('error', () => {
    hungUp = true;
    finish();
  });

  let answered = false;
  let trailing = Buffer.alloc(0);
  let linger: NodeJS.Timeout | undefined;

  /** Record what came of the connection (once) and let it go. */
  function complete(): void {
    if (completed) return;
    completed = true;
    clearTimeout(deadline);
    clearTimeout(idle);
    clearTimeout(linger);
    const head = inner.httpHead;
    done({
      // A client that took the handshake, then hung up without a byte (a pinned client checks
      // the certificate after the handshake) refused it too.
      ...(secured && !(hungUp && inner.bytesSeen === 0 && h2Raw.length === 0)
        ? { outcome: 'decrypted' as const }
        : secured
          ? { outcome: 'refused' as const, alert: 'closed_after_handshake' }
          : { outcome: failure?.outcome ?? 'refused', alert: failure?.alert ?? 'none' }),
      bytesOut,
      inner: inner.bytes,
      innerSeen: inner.bytesSeen,
      ...(head ? { head } : {}),
      ...(upgraded ? { wsPayload: websocketPayloads(ws) } : {}),
      ...(h2 ? { h2 } : {}),
      ...(trailing.length > 0 ? { trailing } : {}),
      ...(h2 && h2Raw.length > 0 ? { h2Raw } : {}),
    });
    if (!answered) end();
    // Never wait on a client that does not close.
    setTimeout(() => {
      tlsSock?.destroy();
      sock.destroy();
    }, 1000).unref();
  }

  function end(reply?: Buffer): void {
    answered = true;
    const t = tlsSock;
    if (t && secured && !t.destroyed) {
      if (reply) t.end(reply);
      else t.end();
    } else if (!sock.destroyed) sock.end();
  }

  /**
   * Answer and end the connection. With `keepReading`, what the client still sends in the next
   * LINGER_MS (or until it closes) is kept as trailing bytes before the record is made.
   */
  function finish(reply?: Buffer, keepReading = false): void {
    if (completed || answered) return complete();
    clearTimeout(deadline);
    clearTimeout(idle);
    end(reply);
    if (keepReading && secured && tlsSock && !tlsSock.destroyed) {
      linger = setTimeout(complete, LINGER_MS);
      tlsSock.once('close', complete);
    } else complete();
  }

  void ready.then((name) => {
    if (completed) return;
    try {
      startTls(name);
    } catch {
      failure = { outcome: 'failed', alert: 'internal_error' };
      finish();
    }
  });

  function startTls(name: string): void {
    const t = new TLSSocket(raw, {
      isServer: true,
      secureContext: ca.contextFor(name),
      ALPNCallback: ({ protocols }: { protocols: string[] }) => chooseAlpn(protocols),
      requestCert: false,
      rejectUnauthorized: false,
    });
    tlsSock = t;
    // What is read inside is decided at the end of the handshake: HTTP/2 is the http2 module's
    // to read (a 'data' listener before it would take the client's preface from it).
    t.once('secure', () => {
      secured = true;
      armIdle();
      if (t.alpnProtocol === 'h2') {
        h2 = [];
        readH2(
          t,
          h2,
          (d) => {
            armIdle();
            if (h2Raw.length < H2_RAW_MAX)
              h2Raw = Buffer.concat([h2Raw, d.subarray(0, H2_RAW_MAX - h2Raw.length)]);
          },
          () => finish(),
          now,
        );
      } else t.on('data', onData);
    });
    t.on('error', (e: unknown) => {
      if (!secured) failure = handshakeError(e);
      finish();
    });
    // The client ended (its close_notify, or its side of the connection).
    t.on('end', () => {
      hungUp = true;
      finish();
    });
    t.on('close', () => finish());
    function onData(d: Buffer): void {
      const t = tlsSock;
      if (completed || !t) return;
      if (answered) {
        if (trailing.length < TRAILING_MAX)
          trailing = Buffer.concat([trailing, d.subarray(0, TRAILING_MAX - trailing.length)]);
        if (trailing.length >= TRAILING_MAX) complete();
        return;
      }
      armIdle();
      if (upgraded) {
        if (ws.length < WS_MAX) ws = Buffer.concat([ws, d.subarray(0, WS_MAX - ws.length)]);
        if (ws.length >= WS_MAX) finish();
        return;
      }
      const before = inner.httpHead;
      const v = inner.feed(d);
      const head = inner.httpHead;
      // A client that waits for 100 Continue before its body (curl, for bodies over 1 KiB).
      if (!before && head && v.status === 'need-more' && expectsContinue(head))
        t.write('HTTP/1.1 100 Continue\r\n\r\n');
      if (v.status !== 'done') return;
      if (v.kind === 'http' && v.head.websocket) {
        const key =
          v.head.headers.find(([k]) => k.toLowerCase() === 'sec-websocket-key')?.[1] ?? '';
        upgraded = true;
        t.write(
          `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${websocketAccept(key)}\r\n\r\n`,
        );
        // Frames that came with the head.
        const rest = inner.bytes.subarray(v.head.headLength);
        if (rest.length > 0) ws = Buffer.from(rest.subarray(0, WS_MAX));
        return;
      }
      if (v.kind === 'http') finish(http1Reply(siteReply(v.head, RUN_REPLY_SEED, now())), true);
      else finish();
    }
  }

  return () => complete();
}

/**
 * Read an HTTP/2 connection: every stream's headers and first body bytes, each answered with an
 * empty 200 once its body ended. `activity` is called on each frame's worth of progress.
 */
function readH2(
  t: TLSSocket,
  out: H2Request[],
  received: (raw: Buffer) => void,
  end: () => void,
  now: () => Date,
): void {
  const server = createH2Server({
    maxSessionMemory: 4,
    maxHeaderListPairs: 256,
    settings: { maxConcurrentStreams: H2_STREAMS_MAX, maxHeaderListSize: 64 * 1024 },
  });
  server.on('sessionError', () => end());
  server.on('session', (session) => session.on('error', () => end()));
  server.on(
    'stream',
    (
      stream: ServerHttp2Stream,
      headers: Record<string, unknown>,
      _flags: number,
      rawHeaders: string[],
    ) => {
      // First, before anything can fail: an error on a stream must never reach the process.
      stream.on('error', () => undefined);
      if (out.length >= H2_STREAMS_MAX) {
        // Past the bound its frames are still in the connection's raw bytes.
        stream.close();
        return;
      }
      const text = (v: unknown) => (Array.isArray(v) ? v.join(', ') : String(v ?? ''));
      const req: H2Request = {
        method: text(headers[':method']),
        path: text(headers[':path']),
        ...(headers[':authority'] !== undefined ? { authority: text(headers[':authority']) } : {}),
        // As sent: every value, repeated names too (the header object keeps one of a name that
        // takes one value).
        headers: pairs(rawHeaders).filter(([k]) => !k.startsWith(':')),
        body: Buffer.alloc(0),
        bodyBytes: 0,
      };
      out.push(req);
      stream.on('trailers', (_t: unknown, _f: number, rawTrailers: string[]) => {
        for (const [k, v] of pairs(rawTrailers)) if (!k.startsWith(':')) req.headers.push([k, v]);
      });
      stream.on('data', (d: Buffer) => {
        req.bodyBytes += d.length;
        if (req.body.length < H2_BODY_MAX)
          req.body = Buffer.concat([req.body, d.subarray(0, H2_BODY_MAX - req.body.length)]);
      });
      stream.on('end', () => {
        if (stream.destroyed) return;
        const r = siteReply(
          { ...req, ...(req.authority ? { host: req.authority } : {}) },
          RUN_REPLY_SEED,
          now(),
        );
        stream.respond(
          {
            ':status': r.status,
            ...Object.fromEntries(r.headers.map(([k, v]) => [k.toLowerCase(), v])),
          },
          { endStream: r.body.length === 0 },
        );
        if (r.body.length > 0) stream.end(r.body);
      });
    },
  );
  // The session reads a plain stream of the decrypted bytes: handed the TLS socket itself, the
  // http2 module would take over its handle, which here wraps a JavaScript stream.
  const plain = feeding(t);
  t.on('data', (d: Buffer) => {
    received(d);
    plain.push(d);
  });
  t.on('end', () => plain.push(null));
  server.emit('connection', plain);
}

/**
 * A stream whose reads are what the caller pushes into it and whose writes go to `to`: the
 * bytes of one side of a connection, handed to a protocol reader (TLS, HTTP/2) without giving it
 * the socket.
 */
function feeding(to: { destroyed: boolean; write(b: Buffer): unknown; end(): unknown }): Duplex {
  const d = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      if (!to.destroyed) to.write(chunk);
      cb();
    },
    final(cb) {
      to.end();
      cb();
    },
  });
  d.on('error', () => undefined);
  return d;
}

/** The connection preface every HTTP/2 client sends first (RFC 9113 3.4). */
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/**
 * The payloads an HTTP/2 client's frames carry outside its decoded headers, joined so that data
 * cut into many small frames reads as one: each stream's DATA in order (padding removed), then
 * PING payloads, GOAWAY debug data and the payloads of frame types HTTP/2 does not define, each
 * in order. HEADERS and CONTINUATION (HPACK) are left out; the http2 module decodes those. Pure.
 */
export function h2Payloads(raw: Buffer): Buffer {
  // Bytes that do not start as HTTP/2 are kept as they came.
  if (!raw.subarray(0, H2_PREFACE.length).equals(H2_PREFACE)) return raw;
  let off = H2_PREFACE.length;
  const data = new Map<number, Buffer[]>();
  const wire: Buffer[] = [];
  const ping: Buffer[] = [];
  const goaway: Buffer[] = [];
  const other: Buffer[] = [];
  while (off + 9 <= raw.length) {
    const len = raw.readUIntBE(off, 3);
    const type = raw[off + 3] ?? 0;
    const flags = raw[off + 4] ?? 0;
    const stream = raw.readUInt32BE(off + 5) & 0x7fffffff;
    // A frame cut by the end of the tap gives what arrived of it.
    const payload = raw.subarray(off + 9, Math.min(raw.length, off + 9 + len));
    off += 9 + len;
    if (type === 0) {
      // Padding is the sender's to fill: it is kept after the data (a pad length past the
      // payload keeps the payload whole).
      let body = payload;
      let pad: Buffer = Buffer.alloc(0);
      if (flags & 0x8 && payload.length > 0) {
        const n = payload[0] ?? 0;
        const end = payload.length - n;
        if (end >= 1) {
          body = payload.subarray(1, end);
          pad = payload.subarray(end);
        }
      }
      const list = data.get(stream) ?? [];
      list.push(body);
      data.set(stream, list);
      wire.push(body);
      if (pad.some((b) => b !== 0)) other.push(pad);
    } else if (type === 6) ping.push(payload);
    else if (type === 7) goaway.push(payload.subarray(8));
    else if (type > 9) other.push(payload);
  }
  const perStream = [...data.values()].flat();
  // In wire order too, when streams interleave, for data cut across them.
  const interleaved = data.size > 1 ? wire : [];
  return Buffer.concat([...perStream, ...interleaved, ...ping, ...goaway, ...other]);
}

/** A flat [name, value, name, value, …] list as pairs. */
function pairs(raw: readonly string[] | undefined): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < (raw?.length ?? 0); i += 2)
    out.push([String(raw?.[i]), String(raw?.[i + 1])]);
  return out;
}

/**
 * Where an HTTP/2 request says it goes, for judging: of its :authority and its host headers, the
 * one that is not the TLS server name (a front names one and routes by another), else the first.
 */
export function h2Target(q: H2Request, sni: string | undefined): string | undefined {
  const names = [
    ...(q.authority !== undefined ? [q.authority] : []),
    ...q.headers.filter(([k]) => k.toLowerCase() === 'host').map(([, v]) => v),
  ];
  const bare = (n: string) => n.replace(/:\d*$/, '').toLowerCase();
  return names.find((n) => sni === undefined || bare(n) !== sni.toLowerCase()) ?? names[0];
}

function expectsContinue(head: HttpRequestHead): boolean {
  return head.headers.some(([k, v]) => k.toLowerCase() === 'expect' && /100-continue/i.test(v));
}
