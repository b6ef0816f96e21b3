/**
 * Reads the server name (SNI) and ALPN protocols from a TLS ClientHello. Pure; no I/O.
 */

export type ClientHelloResult =
  | { status: 'incomplete'; needBytes: number }
  | { status: 'not-tls' }
  | { status: 'ok'; sni?: string; alpn?: string[]; version: string };

/** True when the bytes start like a TLS handshake record (0x16 0x03 0x0X). */
export function looksLikeTls(buf: Buffer): boolean {
  return buf.length >= 3 && buf[0] === 0x16 && buf[1] === 0x03 && (buf[2] ?? 0xff) <= 0x04;
}

export function parseClientHello(buf: Buffer): ClientHelloResult {
  if (buf.length < 5) return { status: 'incomplete', needBytes: 5 };
  if (!looksLikeTls(buf)) return { status: 'not-tls' };
  const recordLen = buf.readUInt16BE(3);
  // A ClientHello may span several records; the first one holds SNI and ALPN in practice.
  if (buf.length < 5 + recordLen) return { status: 'incomplete', needBytes: 5 + recordLen };
  const hs = buf.subarray(5, 5 + recordLen);
  if (hs[0] !== 0x01 || hs.length < 4) return { status: 'not-tls' };
  let off = 4;
  const legacyVersion = hs.length >= off + 2 ? hs.readUInt16BE(off) : 0;
  off += 2 + 32; // version, random
  const sidLen = hs[off];
  if (sidLen === undefined) return { status: 'ok', version: versionName(legacyVersion) };
  off += 1 + sidLen;
  if (off + 2 > hs.length) return { status: 'ok', version: versionName(legacyVersion) };
  off += 2 + hs.readUInt16BE(off); // cipher suites
  const compLen = hs[off];
  if (compLen === undefined) return { status: 'ok', version: versionName(legacyVersion) };
  off += 1 + compLen;
  if (off + 2 > hs.length) return { status: 'ok', version: versionName(legacyVersion) };
  const extEnd = Math.min(hs.length, off + 2 + hs.readUInt16BE(off));
  off += 2;
  let sni: string | undefined;
  let alpn: string[] | undefined;
  let version = legacyVersion;
  while (off + 4 <= extEnd) {
    const type = hs.readUInt16BE(off);
    const len = hs.readUInt16BE(off + 2);
    const body = hs.subarray(off + 4, Math.min(extEnd, off + 4 + len));
    off += 4 + len;
    if (type === 0 && body.length >= 5) {
      // server_name list: one host_name entry in practice.
      const nameLen = body.readUInt16BE(3);
      if (body[2] === 0)
        sni = body
          .subarray(5, 5 + nameLen)
          .toString('latin1')
          .toLowerCase();
    } else if (type === 16 && body.length >= 2) {
      alpn = [];
      let p = 2;
      const end = Math.min(body.length, 2 + body.readUInt16BE(0));
      while (p < end) {
        const l = body[p] ?? 0;
        alpn.push(body.subarray(p + 1, p + 1 + l).toString('latin1'));
        p += 1 + l;
      }
    } else if (type === 43 && body.length >= 3) {
      // supported_versions: the highest offered is the real one (TLS 1.3 hides behind 1.2).
      for (let p = 1; p + 1 < body.length; p += 2) {
        const v = body.readUInt16BE(p);
        if ((v & 0x0f0f) === 0x0a0a) continue; // GREASE
        if (v > version && v <= 0x0304) version = v;
      }
    }
  }
  return {
    status: 'ok',
    version: versionName(version),
    ...(sni !== undefined ? { sni } : {}),
    ...(alpn !== undefined ? { alpn } : {}),
  };
}

function versionName(v: number): string {
  switch (v) {
    case 0x0301:
      return 'TLS1.0';
    case 0x0302:
      return 'TLS1.1';
    case 0x0303:
      return 'TLS1.2';
    case 0x0304:
      return 'TLS1.3';
    default:
      return `0x${v.toString(16)}`;
  }
}

/** A fatal handshake_failure alert: clients give up at once instead of waiting. */
export const TLS_HANDSHAKE_FAILURE_ALERT = Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]);
