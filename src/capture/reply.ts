/**
 * What the capture answers an HTTP request with, plain or inside intercepted TLS. Every site used
 * to get the same empty `200 OK`, which a package can test for (two unrelated hosts, or a page
 * and an API, answering byte for byte alike is no internet). Each site now answers in a style of
 * its own, picked from the host name and a seed made per run: its server software (or none), and
 * a body that fits what was asked (a small page, an empty JSON object for APIs and writes, an
 * empty text file). Still always 2xx, with no content a package could act on: a payload that
 * waits for its second stage gets nothing it can run. Pure, but for the run's seed.
 */
import { createHash, randomBytes } from 'node:crypto';

/** Made when the capture program starts: one per run. */
export const RUN_REPLY_SEED = randomBytes(16);

/**
 * How much faster than the wall clock package processes' clocks run (CLOCK_SPEED in
 * src/agent/clock.ts; the capture program keeps its own copy, which the contract test holds to
 * it).
 */
export const SANDBOX_CLOCK_SPEED = 50;

/**
 * The time of day the process that asked reads: from its start, its clock runs
 * SANDBOX_CLOCK_SPEED times as fast as the wall clock, so a site's `Date` moves with the waits it
 * fast-forwards (a payload may ask a site for the time before and after one). `startMs` and
 * `monoNow` are CLOCK_MONOTONIC ms; without a process, the wall clock.
 */
export function processDate(
  proc: { startMs: number } | undefined,
  wallNow: number,
  monoNow: number,
): Date {
  if (!proc) return new Date(wallNow);
  const lived = Math.max(0, monoNow - proc.startMs);
  return new Date(wallNow + (SANDBOX_CLOCK_SPEED - 1) * lived);
}

export interface ReplyRequest {
  method: string;
  path: string;
  headers: readonly (readonly [string, string])[];
  /** The site's name: the Host header, else the TLS server name. */
  host?: string;
}

export interface SiteReply {
  status: number;
  reason: string;
  /** In order, names in their usual case (HTTP/2 lower-cases them). */
  headers: [string, string][];
  body: Buffer;
}

/**
 * Server software as sites announce it; `undefined`: the site sends no Server header. None of
 * them is a CDN: a CDN's name comes with headers of its own (Cloudflare's `CF-RAY`), and a
 * package can ask for them.
 */
const SERVERS: (string | undefined)[] = [
  'nginx',
  'nginx/1.24.0',
  'Apache',
  'AmazonS3',
  'envoy',
  undefined,
  'openresty',
  'Microsoft-IIS/10.0',
  'gunicorn',
  'Caddy',
];

const REASONS: Record<number, string> = { 200: 'OK', 201: 'Created', 204: 'No Content' };

function header(headers: ReplyRequest['headers'], name: string): string {
  return headers.find(([k]) => k.toLowerCase() === name)?.[1] ?? '';
}

/** The answer of the site `req` names to `req`, in that site's style for this run. */
export function siteReply(
  req: ReplyRequest,
  seed: Buffer = RUN_REPLY_SEED,
  now: Date = new Date(),
): SiteReply {
  const host = (req.host ?? header(req.headers, 'host')).toLowerCase().replace(/:\d+$/, '');
  const style = createHash('sha256').update(seed).update(host).digest();
  const server = SERVERS[(style[0] as number) % SERVERS.length];
  const method = req.method.toUpperCase();
  const path = req.path.split(/[?#]/)[0] ?? '/';
  const ext = /\.([a-z0-9]{1,8})$/i.exec(path)?.[1]?.toLowerCase();
  const accept = header(req.headers, 'accept').toLowerCase();
  const api =
    ext === 'json' ||
    accept.includes('json') ||
    /^\/(api|v\d+|graphql|rpc|oauth|token|metrics|events|collect|track|ingest)\b/i.test(path);
  let status = 200;
  let type: string | undefined;
  let body = '';
  if (method === 'OPTIONS') {
    status = 204;
  } else if (method !== 'GET' && method !== 'HEAD') {
    // A write: some APIs say they made something, some answer with nothing.
    status = [200, 201, 204][(style[1] as number) % 3] as number;
    if (status !== 204) {
      type = 'application/json';
      body = '{}';
    }
  } else if (api) {
    type = 'application/json';
    body = '{}';
  } else if (ext && ext !== 'html' && ext !== 'htm' && ext !== 'php') {
    // A file: empty, typed by the site as plain bytes.
    type = ext === 'txt' ? 'text/plain' : 'application/octet-stream';
  } else {
    type = 'text/html';
    const title = ['', 'Home', 'Welcome', 'Index'][(style[3] as number) % 4];
    body = `<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>${title}</title></head><body></body></html>\n`;
  }
  const bytes = Buffer.from(body, 'utf8');
  const headers: [string, string][] = [];
  if (server) headers.push(['Server', server]);
  // Every origin server sends one (RFC 9110, 6.6.1).
  headers.push(['Date', now.toUTCString()]);
  if (type)
    headers.push(['Content-Type', type.startsWith('text/') ? `${type}; charset=utf-8` : type]);
  if (status !== 204) headers.push(['Content-Length', String(bytes.length)]);
  if ((style[2] as number) % 2 === 0) headers.push(['Cache-Control', 'no-cache']);
  return {
    status,
    reason: REASONS[status] ?? 'OK',
    headers,
    body: method === 'HEAD' || status === 204 ? Buffer.alloc(0) : bytes,
  };
}

/** A registered domain's mail: its MX and its SPF record, in a style of its own for the run. */
export function siteMail(
  domain: string,
  seed: Buffer = RUN_REPLY_SEED,
): { preference: number; exchange: string; spf: string } {
  const style = createHash('sha256').update(seed).update('mail').update(domain).digest();
  const hosts = ['mx1', 'mail', 'mx', 'inbound', 'smtp', 'mx01'];
  const spf = [
    'v=spf1 mx ~all',
    'v=spf1 mx -all',
    `v=spf1 a mx include:_spf.${domain} ~all`,
    'v=spf1 mx a ?all',
    `v=spf1 include:spf.${domain} -all`,
  ];
  return {
    preference: [10, 5, 1, 20, 0][(style[0] as number) % 5] as number,
    exchange: `${hosts[(style[1] as number) % hosts.length]}.${domain}`,
    spf: spf[(style[2] as number) % spf.length] as string,
  };
}

/** The reply as HTTP/1.1 bytes; the capture closes the connection after it. */
export function http1Reply(r: SiteReply): Buffer {
  const head = [`HTTP/1.1 ${r.status} ${r.reason}`, ...r.headers.map(([k, v]) => `${k}: ${v}`)];
  head.push('Connection: close', '', '');
  return Buffer.concat([Buffer.from(head.join('\r\n'), 'latin1'), r.body]);
}
