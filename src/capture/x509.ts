/**
 * The run's certificate authority: an ECDSA P-256 CA made when the capture starts, and leaf
 * certificates for the names (or addresses) clients ask for, made on first use and kept for the
 * run. The CA's private key lives only in this process; only its certificate leaves (the host
 * puts it in the sandbox's trust store). Node built-ins only: the certificates are written as
 * DER here (RFC 5280: a v3 certificate with the extensions clients check: basic constraints, key
 * usage, extended key usage, subject alternative names, key identifiers).
 */
import {
  createHash,
  createPrivateKey,
  generateKeyPairSync,
  randomBytes,
  randomInt,
  sign,
} from 'node:crypto';
import { isIP } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';

// ---- DER ----

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
}

const seq = (...parts: Buffer[]) => tlv(0x30, ...parts);
const set = (...parts: Buffer[]) => tlv(0x31, ...parts);
const octets = (b: Buffer) => tlv(0x04, b);
const bool = (v: boolean) => tlv(0x01, Buffer.from([v ? 0xff : 0]));
/** A BIT STRING holding whole bytes (a key, a signature). */
const bits = (b: Buffer) => tlv(0x03, Buffer.from([0]), b);
const explicit = (n: number, inner: Buffer) => tlv(0xa0 + n, inner);

/** A non-negative INTEGER from its big-endian bytes (minimal, with a 0 byte before a high bit). */
function unsigned(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  const v = b.subarray(i);
  return tlv(0x02, (v[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.from([0]), v]) : v);
}

function oid(dotted: string): Buffer {
  const [a = 0, b = 0, ...rest] = dotted.split('.').map(Number);
  const out = [40 * a + b];
  for (const n of rest) {
    const chunk = [n & 0x7f];
    for (let v = Math.floor(n / 128); v > 0; v = Math.floor(v / 128))
      chunk.unshift(0x80 | (v & 0x7f));
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

/** UTCTime until 2049, GeneralizedTime after (RFC 5280 4.1.2.5). */
function time(d: Date): Buffer {
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14); // YYYYMMDDHHMMSS
  return d.getUTCFullYear() < 2050
    ? tlv(0x17, Buffer.from(`${iso.slice(2)}Z`, 'latin1'))
    : tlv(0x18, Buffer.from(`${iso}Z`, 'latin1'));
}

const OID = {
  ecdsaSha256: '1.2.840.10045.4.3.2',
  organization: '2.5.4.10',
  commonName: '2.5.4.3',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  subjectKeyId: '2.5.29.14',
  authorityKeyId: '2.5.29.35',
  serverAuth: '1.3.6.1.5.5.7.3.1',
} as const;

function name(parts: { o?: string; cn: string }): Buffer {
  const rdn = (type: string, value: string) =>
    set(seq(oid(type), tlv(0x0c, Buffer.from(value, 'utf8'))));
  return seq(...(parts.o ? [rdn(OID.organization, parts.o)] : []), rdn(OID.commonName, parts.cn));
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return seq(oid(id), ...(critical ? [bool(true)] : []), octets(value));
}

/** SHA-1 of the subject public key's bits: the usual key identifier (RFC 5280 4.2.1.2). */
function keyId(spki: Buffer): Buffer {
  // The SubjectPublicKeyInfo of a P-256 key ends with its 65-byte uncompressed point.
  return createHash('sha1')
    .update(spki.subarray(spki.length - 65))
    .digest();
}

/** The DER of a subject alternative name entry: dNSName or iPAddress. */
function altName(n: string): Buffer {
  const kind = isIP(n);
  if (kind === 4) return tlv(0x87, Buffer.from(n.split('.').map(Number)));
  if (kind === 6) return tlv(0x87, ipv6Bytes(n));
  return tlv(0x82, Buffer.from(n, 'latin1'));
}

function ipv6Bytes(a: string): Buffer {
  const [head = '', tail] = a.split('::');
  const groups = (s: string) => (s ? s.split(':') : []);
  const h = groups(head);
  const t = tail === undefined ? [] : groups(tail);
  const all = [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16) || 0, i * 2));
  return out;
}

interface CertSpec {
  serial: Buffer;
  issuer: Buffer;
  subject: Buffer;
  notBefore: Date;
  notAfter: Date;
  spki: Buffer;
  extensions: Buffer[];
  signingKey: ReturnType<typeof createPrivateKey>;
}

function certificate(s: CertSpec): Buffer {
  const alg = seq(oid(OID.ecdsaSha256));
  const tbs = seq(
    explicit(0, tlv(0x02, Buffer.from([2]))), // v3
    unsigned(s.serial),
    alg,
    s.issuer,
    seq(time(s.notBefore), time(s.notAfter)),
    s.subject,
    s.spki,
    explicit(3, seq(...s.extensions)),
  );
  return seq(tbs, alg, bits(sign('sha256', tbs, s.signingKey)));
}

const pem = (der: Buffer) =>
  `-----BEGIN CERTIFICATE-----\n${der
    .toString('base64')
    .replace(/.{64}/g, '$&\n')
    .replace(/\n?$/, '\n')}-----END CERTIFICATE-----\n`;

const DAY = 24 * 3600 * 1000;

/**
 * The CA's name. Fixed, so the runner image can link it into the hashed certificate folder
 * (`openssl x509 -subject_hash` of this name) at build time; sandbox-images/runner/Dockerfile
 * writes the same name.
 */
export const CA_SUBJECT = { o: 'Local Network Services', cn: 'Local Network Services Root CA' };

/** Names (or addresses) whose TLS context is kept for the run; past that, each is made anew (CPU, not memory). */
const MAX_LEAVES = 2048;

export class RunCa {
  /** The CA certificate, DER and PEM: public, the only part that leaves the capture. */
  readonly certDer: Buffer;
  readonly certPem: string;
  private readonly caKey: ReturnType<typeof createPrivateKey>;
  private readonly caSubject: Buffer;
  private readonly caKeyId: Buffer;
  /** One key for every leaf of the run (a leaf's key need not differ per name). */
  private readonly leafKeyPem: string;
  private readonly leafSpki: Buffer;
  private readonly leafKeyId: Buffer;
  private readonly contexts = new Map<string, SecureContext>();
  private readonly now: number;

  constructor(now = Date.now()) {
    this.now = now;
    const ca = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const leaf = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    this.caKey = ca.privateKey;
    const caSpki = ca.publicKey.export({ type: 'spki', format: 'der' });
    this.caKeyId = keyId(caSpki);
    this.caSubject = name(CA_SUBJECT);
    this.leafKeyPem = leaf.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    this.leafSpki = leaf.publicKey.export({ type: 'spki', format: 'der' });
    this.leafKeyId = keyId(this.leafSpki);
    this.certDer = certificate({
      serial: randomBytes(16),
      issuer: this.caSubject,
      subject: this.caSubject,
      // As an organisation's root made some time ago, valid for years.
      notBefore: new Date(now - 400 * DAY),
      notAfter: new Date(now + 3250 * DAY),
      spki: caSpki,
      extensions: [
        extension(OID.basicConstraints, true, seq(bool(true))),
        // keyCertSign and cRLSign (bits 5 and 6).
        extension(OID.keyUsage, true, tlv(0x03, Buffer.from([0x01, 0x06]))),
        extension(OID.subjectKeyId, false, octets(this.caKeyId)),
      ],
      signingKey: this.caKey,
    });
    this.certPem = pem(this.certDer);
  }

  /** A leaf certificate (DER) for a host name or an IP address, signed by the CA. */
  leafFor(host: string): Buffer {
    const cn = host.length <= 64 ? host : host.slice(0, 64);
    return certificate({
      serial: randomBytes(16),
      issuer: this.caSubject,
      subject: name({ cn }),
      // Issued some days ago, as a server's certificate would have been (90 days' validity).
      notBefore: new Date(this.now - (1 + randomInt(60)) * DAY - randomInt(DAY)),
      notAfter: new Date(this.now + 29 * DAY + randomInt(DAY)),
      spki: this.leafSpki,
      extensions: [
        extension(OID.basicConstraints, true, seq()),
        // digitalSignature (bit 0).
        extension(OID.keyUsage, true, tlv(0x03, Buffer.from([0x07, 0x80]))),
        extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth))),
        extension(OID.subjectAltName, false, seq(altName(host))),
        extension(OID.subjectKeyId, false, octets(this.leafKeyId)),
        extension(OID.authorityKeyId, false, seq(tlv(0x80, this.caKeyId))),
      ],
      signingKey: this.caKey,
    });
  }

  /** The TLS context that answers for `host` (made once per name for the run). */
  contextFor(host: string): SecureContext {
    const key = host.toLowerCase().replace(/\.$/, '');
    let ctx = this.contexts.get(key);
    if (!ctx) {
      ctx = createSecureContext({
        key: this.leafKeyPem,
        cert: pem(this.leafFor(key)),
      });
      if (this.contexts.size < MAX_LEAVES) this.contexts.set(key, ctx);
    }
    return ctx;
  }
}
