/**
 * Tells what a redirected TCP connection speaks from its first bytes: a TLS ClientHello, an
 * HTTP/1.x request, DNS over TCP, or anything else ("raw"), and when enough has arrived to
 * answer. Pure: a state machine fed the connection's chunks, with no sockets, timers or I/O; the
 * capture (capture.ts) owns those and decides what to reply.
 *
 * Terms:
 * - verdict: what the bytes so far say; `need-more` (with what is being read) or `done` (with the
 *   kind and what was read).
 * - kept bytes: the first CLASSIFY_MAX bytes of the connection, the only ones looked at; bytes
 *   past them are only counted.
 *
 * DNS over TCP (a two-byte length, then a query) cannot be told from the bytes alone: it is DNS
 * only when the connection went to port 53, which the capture learns from conntrack after the
 * bytes arrived. So a connection whose bytes are neither TLS nor HTTP is `need-more` reading
 * `unknown`, and the capture asks `atDnsPort()` once it knows the destination is port 53.
 */
import { parseQuery, DnsParseError, type DnsQuestion } from './dns.js';
import { chunkedBodyComplete, mayBeHttp, parseRequestHead, type HttpRequestHead } from './http.js';
import { looksLikeTls, parseClientHello, type ClientHelloResult } from './tls.js';

/** Bytes kept while working out the protocol (HTTP heads up to 64 KiB, TLS records 16 KiB). */
export const CLASSIFY_MAX = 80 * 1024;
/** Kept bytes after which a stream that is neither TLS nor HTTP is raw. */
export const RAW_DECIDE_BYTES = 4096;

export type StreamKind = 'tls' | 'http' | 'dns-tcp' | 'raw';

export type Verdict =
  | {
      status: 'need-more';
      /**
       * What is being read: a TLS record, an HTTP head or body, or bytes that are neither
       * (raw, unless the destination is a DNS server: see `atDnsPort`).
       */
      reading: 'tls' | 'http-head' | 'http-body' | 'unknown';
    }
  /**
   * The first TLS handshake record has all arrived (`hello` says what it held). A record is at
   * most 5 + 65535 bytes, inside CLASSIFY_MAX, so the limit only guards against that changing.
   */
  | { status: 'done'; kind: 'tls'; hello: ClientHelloResult }
  /**
   * An HTTP request head and its body: all of a Content-Length body (or none without one), a
   * chunked body to its last chunk or until CLASSIFY_MAX bytes were kept.
   */
  | { status: 'done'; kind: 'http'; head: HttpRequestHead }
  /** The first length-prefixed message of a connection to port 53, a query we read. */
  | { status: 'done'; kind: 'dns-tcp'; query: Buffer; question: DnsQuestion }
  /** RAW_DECIDE_BYTES kept bytes that are neither TLS nor HTTP (nor DNS when asked in time). */
  | { status: 'done'; kind: 'raw' };

export class StreamClassifier {
  private buf = Buffer.alloc(0);
  private total = 0;
  private head: HttpRequestHead | undefined;
  private last: Verdict = { status: 'need-more', reading: 'unknown' };

  /** The kept bytes: the connection's first CLASSIFY_MAX bytes. */
  get bytes(): Buffer {
    return this.buf;
  }

  /** Every byte fed until the verdict was done, kept or not. */
  get bytesSeen(): number {
    return this.total;
  }

  /** The HTTP request head, once one was read (even before its body has all arrived). */
  get httpHead(): HttpRequestHead | undefined {
    return this.head;
  }

  /** The latest verdict. */
  get verdict(): Verdict {
    return this.last;
  }

  /** Take the connection's next chunk. Once the verdict is done, chunks are ignored. */
  feed(chunk: Buffer): Verdict {
    // An empty chunk says nothing (sockets never deliver one; no bytes at all "could be HTTP").
    if (this.last.status === 'done' || chunk.length === 0) return this.last;
    this.total += chunk.length;
    if (this.buf.length < CLASSIFY_MAX)
      this.buf = Buffer.concat([this.buf, chunk.subarray(0, CLASSIFY_MAX - this.buf.length)]);
    this.last = this.decide();
    return this.last;
  }

  private decide(): Verdict {
    const buf = this.buf;
    if (looksLikeTls(buf)) {
      const hello = parseClientHello(buf);
      if (hello.status === 'incomplete' && buf.length < CLASSIFY_MAX)
        return { status: 'need-more', reading: 'tls' };
      return { status: 'done', kind: 'tls', hello };
    }
    if (!this.head && mayBeHttp(buf)) {
      const r = parseRequestHead(buf);
      if (r.status === 'incomplete') return { status: 'need-more', reading: 'http-head' };
      if (r.status === 'ok') this.head = r.head;
    }
    const head = this.head;
    if (head) {
      const bodyDone = head.chunked
        ? chunkedBodyComplete(buf.subarray(head.headLength))
        : this.total - head.headLength >= (head.contentLength ?? 0);
      if (bodyDone || (head.chunked && buf.length >= CLASSIFY_MAX))
        return { status: 'done', kind: 'http', head };
      return { status: 'need-more', reading: 'http-body' };
    }
    if (buf.length >= RAW_DECIDE_BYTES) return { status: 'done', kind: 'raw' };
    return { status: 'need-more', reading: 'unknown' };
  }

  /**
   * The connection is known to go to port 53: done as `dns-tcp` when the kept bytes start with
   * a whole length-prefixed DNS query, else the verdict as it was. Asked whatever is being read
   * (a stream is only ever asked after bytes that were neither TLS nor HTTP, but more may have
   * arrived since); a done verdict stays as it is.
   */
  atDnsPort(): Verdict {
    if (this.last.status === 'done') return this.last;
    const buf = this.buf;
    if (buf.length < 2) return this.last;
    const len = buf.readUInt16BE(0);
    if (buf.length < 2 + len) return this.last;
    const query = buf.subarray(2, 2 + len);
    let question: DnsQuestion;
    try {
      question = parseQuery(query);
    } catch (e) {
      if (!(e instanceof DnsParseError)) throw e;
      return this.last;
    }
    this.last = { status: 'done', kind: 'dns-tcp', query, question };
    return this.last;
  }
}
