/**
 * Reads an HTTP/1.x request head from the first bytes of a connection. Pure; no I/O.
 */

export const HTTP_METHODS = [
  'GET',
  'POST',
  'PUT',
  'DELETE',
  'HEAD',
  'OPTIONS',
  'PATCH',
  'CONNECT',
  'TRACE',
  'PROPFIND',
] as const;

/** Whether the bytes so far could be the start of an HTTP request (a method then a space). */
export function mayBeHttp(buf: Buffer): boolean {
  const head = buf.subarray(0, 9).toString('latin1');
  return HTTP_METHODS.some((m) => {
    const token = `${m} `;
    return head.length >= token.length ? head.startsWith(token) : token.startsWith(head);
  });
}

export interface HttpRequestHead {
  method: string;
  path: string;
  httpVersion: string;
  headers: [string, string][];
  /** Bytes of the head including the blank line; the body starts here. */
  headLength: number;
  contentLength?: number;
  chunked: boolean;
  host?: string;
  websocket: boolean;
}

export type HttpParseResult =
  { status: 'incomplete' } | { status: 'not-http' } | { status: 'ok'; head: HttpRequestHead };

/** Header heads larger than this are not HTTP we care to parse. */
export const MAX_HEAD_BYTES = 64 * 1024;

export function parseRequestHead(buf: Buffer): HttpParseResult {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) {
    if (buf.length > MAX_HEAD_BYTES || !mayBeHttp(buf)) return { status: 'not-http' };
    return { status: 'incomplete' };
  }
  const text = buf.subarray(0, end).toString('latin1');
  const [requestLine = '', ...lines] = text.split('\r\n');
  const m = /^([A-Z]+) (\S+) HTTP\/(\d\.\d)$/.exec(requestLine);
  if (!m) return { status: 'not-http' };
  const headers: [string, string][] = [];
  // Every header line, whole and as sent (names in their case; a line without a name is kept as
  // a name with no value): the head is bounded (MAX_HEAD_BYTES) and a secret may sit in any.
  for (const line of lines) {
    const i = line.indexOf(':');
    if (i <= 0) headers.push([line, '']);
    else headers.push([line.slice(0, i).trim(), line.slice(i + 1).trim()]);
  }
  const get = (name: string) => headers.find(([k]) => k.toLowerCase() === name)?.[1];
  const cl = get('content-length');
  const contentLength = cl !== undefined && /^\d+$/.test(cl) ? Number(cl) : undefined;
  const chunked = /chunked/i.test(get('transfer-encoding') ?? '');
  const upgrade = get('upgrade');
  const host = get('host');
  return {
    status: 'ok',
    head: {
      method: m[1] ?? '',
      path: m[2] ?? '',
      httpVersion: m[3] ?? '',
      headers,
      headLength: end + 4,
      chunked,
      websocket: upgrade !== undefined && upgrade.toLowerCase() === 'websocket',
      ...(contentLength !== undefined ? { contentLength } : {}),
      ...(host !== undefined ? { host } : {}),
    },
  };
}

/** Whether a chunked body is complete (its last-chunk and trailer end have arrived). */
/**
 * The size a chunk-size line says (hex digits, then optional extensions), or undefined when the
 * line is no chunk size (a sign, a space inside, too many digits): a malformed chunk.
 */
export function chunkSize(line: Buffer): number | undefined {
  const digits = (line.toString('latin1').split(';')[0] ?? '').trim();
  // 13 hex digits stay below Number.MAX_SAFE_INTEGER.
  return /^[0-9a-f]{1,13}$/i.test(digits) ? parseInt(digits, 16) : undefined;
}

export function chunkedBodyComplete(body: Buffer): boolean {
  let off = 0;
  for (;;) {
    const lineEnd = body.indexOf('\r\n', off);
    if (lineEnd < 0) return false;
    const size = chunkSize(body.subarray(off, lineEnd));
    if (size === undefined) return true; // malformed: nothing more to wait for
    if (size === 0)
      return (
        body.indexOf('\r\n\r\n', lineEnd) >= 0 ||
        body.subarray(lineEnd).equals(Buffer.from('\r\n\r\n'))
      );
    off = lineEnd + 2 + size + 2;
    if (off > body.length) return false;
  }
}

/** Where a chunked body ends (after its last chunk and trailers), or undefined if it has not. */
export function chunkedBodyEnd(body: Buffer): number | undefined {
  let off = 0;
  for (;;) {
    const lineEnd = body.indexOf('\r\n', off);
    if (lineEnd < 0) return undefined;
    const size = chunkSize(body.subarray(off, lineEnd));
    if (size === undefined) return undefined;
    if (size === 0) {
      if (body.subarray(lineEnd + 2, lineEnd + 4).toString('latin1') === '\r\n') return lineEnd + 4;
      const end = body.indexOf('\r\n\r\n', lineEnd + 2);
      return end < 0 ? undefined : end + 4;
    }
    off = lineEnd + 2 + size + 2;
    if (off > body.length) return undefined;
  }
}

/** One request of a connection: its head, and its body's bytes as far as they were kept. */
export interface RequestRead {
  head: HttpRequestHead;
  body: Buffer;
  /** Body bytes the request says it has (what was kept may be fewer). */
  bodyBytes: number;
}

/** At most this many requests are read from one connection's bytes. */
const MAX_REQUESTS = 64;

/**
 * The requests one after another in a connection's bytes (a pipelined client sends the next
 * before the answer to the first): each head, its body cut at its length (Content-Length, or the
 * end of its chunks), and what is left when the bytes stop being requests. Pure.
 */
export function splitRequests(buf: Buffer): { requests: RequestRead[]; rest: Buffer } {
  const requests: RequestRead[] = [];
  let off = 0;
  while (off < buf.length && requests.length < MAX_REQUESTS) {
    const r = parseRequestHead(buf.subarray(off));
    if (r.status !== 'ok') break;
    const start = off + r.head.headLength;
    let end: number;
    if (r.head.chunked) {
      const e = chunkedBodyEnd(buf.subarray(start));
      end = e === undefined ? buf.length : start + e;
    } else end = Math.min(buf.length, start + (r.head.contentLength ?? 0));
    const body = buf.subarray(start, end);
    requests.push({
      head: r.head,
      body,
      bodyBytes: r.head.chunked ? body.length : (r.head.contentLength ?? 0),
    });
    off = end;
    if (end >= buf.length) break;
  }
  return { requests, rest: buf.subarray(off) };
}
