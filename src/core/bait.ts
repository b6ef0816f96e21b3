/**
 * Finding bait secrets in captured traffic. Each run plants unique, realistic secrets in the
 * sandbox (see sandbox/identity.ts); any of them leaving in any common encoding is a leak.
 *
 * Where it looks: HTTP request line, headers and body sample; DNS names (labels joined, and all
 * names of the run in order, for data chunked across queries); the first bytes of unrecognised TCP
 * streams and UDP datagrams; TLS SNI. How: the value raw, base64 (standard and URL-safe, at every
 * byte alignment, so a secret inside a larger encoded blob is found), hex and base32 (in either
 * case, at every alignment), URL-encoded; case-insensitively where the channel folds case (DNS);
 * in HTTP bodies also after gzip, deflate or br as the Content-Encoding says. A fragment of at least 16
 * characters of an encoded form counts, so a secret cut into pieces is still seen.
 */
import zlib from 'node:zlib';
import type { CaptureEvent, StreamEvent } from './terms.js';

/** A secret planted in the sandbox (sandbox/identity.ts makes them), unique to the run. */
export interface Bait {
  /** Stable id (`npm-token`, `aws-secret-access-key`, …). */
  id: string;
  /** What it is, for a person. */
  label: string;
  /** Where it was planted (file paths and environment variables). */
  where: string[];
  value: string;
}

export type BaitEncoding = 'raw' | 'base64' | 'hex' | 'url-encoded' | 'base32';

export interface BaitLeak {
  bait: Bait;
  encoding: BaitEncoding;
  /** Which part of the traffic carried it. */
  channel: string;
  event: CaptureEvent;
}

const FRAGMENT = 16;

function base32(buf: Buffer): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of buf) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}

/**
 * The forms a value takes on the wire, each trimmed so it does not depend on the bytes around it
 * (base64 of a value inside a larger blob differs in its first and last characters).
 */
export function encodedForms(value: string): { encoding: BaitEncoding; form: string }[] {
  const buf = Buffer.from(value, 'utf8');
  const forms: { encoding: BaitEncoding; form: string }[] = [
    { encoding: 'raw', form: value },
    { encoding: 'hex', form: buf.toString('hex') },
    { encoding: 'url-encoded', form: encodeURIComponent(value) },
  ];
  for (let shift = 0; shift < 3; shift++) {
    const b64 = Buffer.concat([Buffer.alloc(shift), buf]).toString('base64');
    // Drop the characters that mix in the unknown bytes before and after: with one byte before
    // the value the first two characters carry some of it, with two the first three.
    const start = [0, 2, 3][shift] as number;
    const end = b64.replace(/=+$/, '').length - 2;
    const inner = b64.slice(start, end);
    forms.push({ encoding: 'base64', form: inner });
    forms.push({ encoding: 'base64', form: inner.replace(/\+/g, '-').replace(/\//g, '_') });
  }
  // base32 repeats every 5 bytes: a value inside a larger blob starts at one of five alignments;
  // drop the characters that mix in the unknown bytes around it, as for base64.
  for (let shift = 0; shift < 5; shift++) {
    const b32 = base32(Buffer.concat([Buffer.alloc(shift), buf]));
    forms.push({ encoding: 'base32', form: b32.slice(Math.ceil((shift * 8) / 5), -2) });
  }
  return forms.filter((f) => f.form.length >= Math.min(FRAGMENT, value.length));
}

/** Fragments of a form to look for: the whole when short, else overlapping windows. */
function fragments(form: string): string[] {
  if (form.length <= FRAGMENT * 2) return [form];
  const out: string[] = [];
  for (let i = 0; i + FRAGMENT <= form.length; i += FRAGMENT / 2)
    out.push(form.slice(i, i + FRAGMENT));
  return out;
}

interface Haystack {
  channel: string;
  text: string;
  caseless: boolean;
  event: CaptureEvent;
}

/** Bytes a compressed body's sample inflates to, at most this many. */
const DECODED_MAX = 1024 * 1024;

/**
 * The codings of a body as the headers list them, in the order they were applied: its content
 * codings, then its transfer codings other than chunked (which `dechunk` undoes first).
 */
function codings(headers: [string, string][]): string[] {
  const list = (name: string) =>
    headers
      .filter(([k]) => k.toLowerCase() === name)
      .flatMap(([, v]) => v.split(','))
      .map((c) => c.trim().toLowerCase())
      .filter((c) => c && c !== 'identity' && c !== 'chunked');
  return [...list('content-encoding'), ...list('transfer-encoding')];
}

function inflate(coding: string, body: Buffer): Buffer | undefined {
  const opts = { finishFlush: zlib.constants.Z_SYNC_FLUSH, maxOutputLength: DECODED_MAX };
  switch (coding) {
    case 'gzip':
    case 'x-gzip':
      return zlib.gunzipSync(body, opts);
    case 'deflate':
      // Deflate as sent in the wild: zlib-wrapped, or raw.
      try {
        return zlib.inflateSync(body, opts);
      } catch {
        return zlib.inflateRawSync(body, opts);
      }
    case 'br':
      return zlib.brotliDecompressSync(body, {
        finishFlush: zlib.constants.BROTLI_OPERATION_FLUSH,
        maxOutputLength: DECODED_MAX,
      });
    default:
      return undefined;
  }
}

/**
 * `inflate`, and when the output would pass DECODED_MAX (a small body that expands hugely), the
 * same on shorter and shorter prefixes of the input: a flushed prefix decodes to a prefix of the
 * output, so what the first megabyte holds is still read.
 */
function inflateBounded(coding: string, body: Buffer): Buffer | undefined {
  for (let len = body.length; len > 0; len = Math.floor(len / 2)) {
    try {
      return inflate(coding, body.subarray(0, len));
    } catch (e) {
      if ((e as { code?: unknown }).code !== 'ERR_BUFFER_TOO_LARGE') return undefined;
    }
  }
  return undefined;
}

/** The coding a body's first bytes show (gzip's or zlib's header), whatever the headers say. */
function sniffedCoding(body: Buffer): string | undefined {
  if (body[0] === 0x1f && body[1] === 0x8b) return 'gzip';
  if (body[0] === 0x78 && [0x01, 0x5e, 0x9c, 0xda].includes(body[1] ?? -1)) return 'deflate';
  return undefined;
}

/**
 * A body sent compressed (gzip, deflate or br, in Content-Encoding or Transfer-Encoding, stacked
 * in any order; codings it does not know are passed over), or compressed without saying so (its
 * first bytes are gzip's or zlib's), inflated as far as the sample goes (the stream is flushed,
 * not required to end; at most DECODED_MAX per step). Undefined when it is not compressed or not
 * valid.
 */
function decodedBody(headers: [string, string][], body: Buffer): string | undefined {
  const known = new Set(['gzip', 'x-gzip', 'deflate', 'br']);
  const list = codings(headers).filter((c) => known.has(c));
  let out: Buffer | undefined = body;
  for (const c of list.reverse()) {
    out = inflateBounded(c, out);
    if (!out) break;
  }
  if (out && list.length > 0) return out.toString('latin1');
  const sniffed = sniffedCoding(body);
  const raw = sniffed ? inflateBounded(sniffed, body) : undefined;
  return raw?.toString('latin1');
}

function latin1(hexOrB64: string, enc: 'hex' | 'base64'): string {
  return Buffer.from(hexOrB64, enc).toString('latin1');
}

/**
 * The data of a chunked body (RFC 9112 7.1), as far as its chunks go: a chunk cut by the end of
 * the sample gives what arrived of it.
 */
export function dechunk(body: Buffer): Buffer {
  const out: Buffer[] = [];
  let off = 0;
  while (off < body.length) {
    const lineEnd = body.indexOf('\r\n', off);
    if (lineEnd < 0) break;
    const digits = (body.subarray(off, lineEnd).toString('latin1').split(';')[0] ?? '').trim();
    if (!/^[0-9a-f]{1,13}$/i.test(digits)) break;
    const size = parseInt(digits, 16);
    if (size === 0) break;
    out.push(body.subarray(lineEnd + 2, Math.min(body.length, lineEnd + 2 + size)));
    off = lineEnd + 2 + size + 2;
  }
  return Buffer.concat(out);
}

/** The path, headers and body (as sent, and decoded) of a request read in plain HTTP or inside TLS. */
function httpHaystacks(e: StreamEvent, scheme: 'HTTP' | 'HTTPS', out: Haystack[]): void {
  if (e.path) out.push({ channel: `${scheme} path`, text: e.path, caseless: false, event: e });
  // HTTP/2's :authority is not among the headers; a name carries data caselessly.
  if (e.httpHost)
    out.push({ channel: `${scheme} authority`, text: e.httpHost, caseless: true, event: e });
  if (e.headers?.length)
    out.push({
      channel: `${scheme} headers`,
      text: e.headers.map(([k, v]) => `${k}: ${v}`).join('\n'),
      caseless: false,
      event: e,
    });
  if (e.bodySample) {
    out.push({
      channel: `${scheme} body`,
      text: latin1(e.bodySample, 'base64'),
      caseless: false,
      event: e,
    });
    // A chunked body is read without its framing, which would cut a secret into pieces.
    const raw = Buffer.from(e.bodySample, 'base64');
    const chunked = (e.headers ?? []).some(
      ([k, v]) => k.toLowerCase() === 'transfer-encoding' && /chunked/i.test(v),
    );
    const body = chunked ? dechunk(raw) : raw;
    if (chunked)
      out.push({
        channel: `${scheme} body`,
        text: body.toString('latin1'),
        caseless: false,
        event: e,
      });
    const decoded = decodedBody(e.headers ?? [], body);
    if (decoded)
      out.push({ channel: `${scheme} body (decoded)`, text: decoded, caseless: false, event: e });
  }
}

/**
 * Bytes of a connection that no request read holds (`innerHex`: what followed the requests, or
 * what was not HTTP), as sent, without chunk framing, and inflated: they may still be a body.
 */
function innerHaystacks(e: StreamEvent, channel: string, out: Haystack[]): void {
  if (!e.innerHex) return;
  const inner = Buffer.from(e.innerHex, 'hex');
  const unframed = dechunk(inner);
  out.push({ channel, text: inner.toString('latin1'), caseless: false, event: e });
  if (unframed.length > 0)
    out.push({ channel, text: unframed.toString('latin1'), caseless: false, event: e });
  for (const b of [unframed, inner]) {
    const decoded = decodedBody(e.headers ?? [], b);
    if (decoded)
      out.push({ channel: `${channel}, decoded`, text: decoded, caseless: false, event: e });
  }
}

function haystacks(events: CaptureEvent[]): Haystack[] {
  const out: Haystack[] = [];
  const dns: { name: string; event: CaptureEvent }[] = [];
  for (const e of events) {
    switch (e.kind) {
      case 'http':
        httpHaystacks(e, 'HTTP', out);
        innerHaystacks(e, 'HTTP data', out);
        break;
      case 'tcp':
        if (e.firstBytesHex)
          out.push({
            channel: 'TCP data',
            text: latin1(e.firstBytesHex, 'hex'),
            caseless: false,
            event: e,
          });
        break;
      case 'tls':
        // What an intercepted connection sent inside, read like plain HTTP.
        httpHaystacks(e, 'HTTPS', out);
        innerHaystacks(e, 'TLS data (decrypted)', out);
        if (e.sni) out.push({ channel: 'TLS server name', text: e.sni, caseless: true, event: e });
        for (const p of e.alpn ?? [])
          out.push({ channel: 'TLS ALPN', text: p, caseless: false, event: e });
        // The ClientHello's bytes (any extension) and what followed it are plaintext too.
        if (e.firstBytesHex)
          out.push({
            channel: 'TLS handshake data',
            text: latin1(e.firstBytesHex, 'hex'),
            caseless: false,
            event: e,
          });
        break;
      case 'udp':
        if (e.sampleHex)
          out.push({
            channel: 'UDP data',
            text: latin1(e.sampleHex, 'hex'),
            caseless: false,
            event: e,
          });
        break;
      case 'dns':
        if (e.extraHex)
          out.push({
            channel: 'DNS message data',
            text: latin1(e.extraHex, 'hex'),
            caseless: false,
            event: e,
          });
        out.push({
          channel: 'DNS name',
          text: e.qname.split('.').join(''),
          caseless: true,
          event: e,
        });
        dns.push({ name: e.qname, event: e });
        break;
      default:
        break;
    }
  }
  // Data cut across many queries: the names' first labels in order, then each name whole.
  if (dns.length > 1) {
    const first = dns[0] as { event: CaptureEvent };
    out.push({
      channel: 'DNS names (joined)',
      text: dns.map((d) => d.name.split('.').slice(0, -2).join('')).join(''),
      caseless: true,
      event: first.event,
    });
  }
  return out;
}

/** The registry the planted npm token is configured for (`//registry.npmjs.org/:_authToken` in ~/.npmrc). */
export const NPM_TOKEN_REGISTRY = 'registry.npmjs.org';

/**
 * A leak that looks like npm authenticating as it always does: the npm token, as sent, only as
 * `Authorization: Bearer <token>`, over HTTPS to the registry ~/.npmrc names it for (every name
 * of the request: DNS, TLS server name, Host or :authority), in a GET or HEAD of a package
 * document or tarball, by a process that calls itself npm (`npm i …`, npm's own title). npm sends
 * the token nowhere else; but where the bytes go in the wild is the sending process's choice, and
 * a process can call itself npm, so this is reported (`npm-token-used`, medium), never excused.
 * Writes (a publish), token and account paths (`/-/whoami`, `/-/npm/v1/tokens`), any other
 * process and the token anywhere else stay leaks.
 */
export function npmAuthenticatedRead(leak: BaitLeak): boolean {
  const e = leak.event;
  if (leak.bait.id !== 'npm-token' || leak.channel !== 'HTTPS headers') return false;
  // As sent: an encoding that leaves the token as it is (URL encoding of a plain token) counts.
  const value = leak.bait.value;
  if (!encodedForms(value).some((f) => f.encoding === leak.encoding && f.form === value))
    return false;
  if (e.kind !== 'tls' || e.host !== NPM_TOKEN_REGISTRY || e.sni !== NPM_TOKEN_REGISTRY)
    return false;
  if (
    e.httpHost !== undefined &&
    e.httpHost.toLowerCase().replace(/:443$/, '') !== NPM_TOKEN_REGISTRY
  )
    return false;
  const cmd = e.proc?.cmd ?? '';
  if (!/^npm\s/.test(cmd) && !/\/npm-cli\.js(\s|$)/.test(cmd)) return false;
  const method = (e.method ?? '').toUpperCase();
  if (method !== 'GET' && method !== 'HEAD') return false;
  const path = e.path ?? '';
  if (!path.startsWith('/') || path.startsWith('/-/') || /[?#]/.test(path) || path.includes('..'))
    return false;
  const headers = e.headers ?? [];
  const host = headers.filter(([k]) => k.toLowerCase() === 'host');
  if (host.length !== 1 || host[0]?.[1].toLowerCase() !== NPM_TOKEN_REGISTRY) return false;
  const parts = fragments(leak.bait.value);
  const carrying = headers.filter(([k, v]) => parts.some((p) => k.includes(p) || v.includes(p)));
  return (
    carrying.length === 1 &&
    carrying[0]?.[0].toLowerCase() === 'authorization' &&
    carrying[0]?.[1] === `Bearer ${leak.bait.value}`
  );
}

/** Every bait value seen in the traffic: one leak per bait, channel and encoding. */
export function findBaitLeaks(events: CaptureEvent[], bait: Bait[]): BaitLeak[] {
  const hay = haystacks(events);
  const leaks: BaitLeak[] = [];
  const seen = new Set<string>();
  for (const b of bait) {
    for (const { encoding, form } of encodedForms(b.value)) {
      const parts = fragments(form);
      // Hex and base32 carry no case: ABCDEF is the same bytes as abcdef, whatever the channel.
      const caseFree = encoding === 'hex' || encoding === 'base32';
      for (const h of hay) {
        const fold = h.caseless || caseFree;
        const text = fold ? h.text.toLowerCase() : h.text;
        const hit = parts.some((p) => text.includes(fold ? p.toLowerCase() : p));
        if (!hit) continue;
        // Folding case makes a raw value and its hex or base32 indistinguishable only by form.
        const key = `${b.id}\0${h.channel}\0${h.event.seq}\0${encoding}`;
        if (seen.has(key)) continue;
        seen.add(key);
        leaks.push({ bait: b, encoding, channel: h.channel, event: h.event });
      }
    }
  }
  return leaks;
}
