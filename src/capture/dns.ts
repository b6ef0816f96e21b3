/**
 * A small DNS message codec: enough to read any query and write the answers the capture gives
 * (A/AAAA with synthetic addresses, PTR for them, MX and TXT at a domain's apex, empty NOERROR for
 * the rest). Pure; no I/O.
 */

export const QTYPE_NAMES: Record<number, string> = {
  1: 'A',
  2: 'NS',
  5: 'CNAME',
  6: 'SOA',
  12: 'PTR',
  15: 'MX',
  16: 'TXT',
  28: 'AAAA',
  33: 'SRV',
  64: 'SVCB',
  65: 'HTTPS',
  255: 'ANY',
};

export function qtypeName(qtype: number): string {
  return QTYPE_NAMES[qtype] ?? `TYPE${qtype}`;
}

export interface DnsQuestion {
  id: number;
  flags: number;
  qname: string;
  qtype: number;
  qclass: number;
  /** Offset just after the first question; the question bytes are echoed back in the answer. */
  questionEnd: number;
}

export class DnsParseError extends Error {}

/** Read the header and first question of a query. Names are lower-cased, without the final dot. */
export function parseQuery(msg: Buffer): DnsQuestion {
  if (msg.length < 12) throw new DnsParseError('shorter than a DNS header');
  const id = msg.readUInt16BE(0);
  const flags = msg.readUInt16BE(2);
  const qdcount = msg.readUInt16BE(4);
  if (qdcount < 1) throw new DnsParseError('no question');
  let off = 12;
  const labels: string[] = [];
  let total = 0;
  for (;;) {
    const len = msg[off];
    if (len === undefined) throw new DnsParseError('name runs past the end');
    if (len === 0) {
      off += 1;
      break;
    }
    if ((len & 0xc0) !== 0) throw new DnsParseError('compressed name in a question');
    const label = msg.subarray(off + 1, off + 1 + len);
    if (label.length !== len) throw new DnsParseError('label runs past the end');
    labels.push(label.toString('latin1').toLowerCase());
    total += len + 1;
    if (total > 255) throw new DnsParseError('name longer than 255 bytes');
    off += 1 + len;
  }
  if (off + 4 > msg.length) throw new DnsParseError('question type runs past the end');
  const qtype = msg.readUInt16BE(off);
  const qclass = msg.readUInt16BE(off + 2);
  return { id, flags, qname: labels.join('.'), qtype, qclass, questionEnd: off + 4 };
}

export type DnsAnswer =
  | { type: 'A'; address: string }
  | { type: 'AAAA'; address: string }
  | { type: 'PTR'; name: string }
  | { type: 'MX'; preference: number; exchange: string }
  | { type: 'TXT'; text: string }
  | { type: 'none'; rcode?: number };

function encodeName(name: string): Buffer {
  const parts = name.split('.').filter((p) => p.length > 0);
  const bufs = parts.map((p) => {
    const b = Buffer.from(p, 'latin1').subarray(0, 63);
    return Buffer.concat([Buffer.from([b.length]), b]);
  });
  return Buffer.concat([...bufs, Buffer.from([0])]);
}

export function ipv4Bytes(address: string): Buffer {
  return Buffer.from(address.split('.').map((x) => Number(x)));
}

export function ipv6Bytes(address: string): Buffer {
  const [head = '', tail] = address.split('::');
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail ? tail.split(':') : [];
  const groups =
    tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g || '0', 16), i * 2));
  return out;
}

/** Build the response to `q` (the original query bytes are needed to echo the question). */
export function buildResponse(query: Buffer, q: DnsQuestion, answer: DnsAnswer, ttl = 60): Buffer {
  const rd = q.flags & 0x0100;
  const opcode = q.flags & 0x7800;
  const rcode = answer.type === 'none' ? (answer.rcode ?? 0) : 0;
  // QR=1, same opcode, AA=0, RD copied, RA=1.
  const flags = 0x8000 | opcode | rd | 0x0080 | rcode;
  const header = Buffer.alloc(12);
  header.writeUInt16BE(q.id, 0);
  header.writeUInt16BE(flags, 2);
  header.writeUInt16BE(1, 4);
  const question = query.subarray(12, q.questionEnd);
  let rr: Buffer | undefined;
  if (answer.type !== 'none') {
    let type: number;
    let rdata: Buffer;
    if (answer.type === 'A') {
      type = 1;
      rdata = ipv4Bytes(answer.address);
    } else if (answer.type === 'AAAA') {
      type = 28;
      rdata = ipv6Bytes(answer.address);
    } else if (answer.type === 'MX') {
      type = 15;
      const pref = Buffer.alloc(2);
      pref.writeUInt16BE(answer.preference, 0);
      rdata = Buffer.concat([pref, encodeName(answer.exchange)]);
    } else if (answer.type === 'TXT') {
      type = 16;
      const text = Buffer.from(answer.text, 'latin1').subarray(0, 255);
      rdata = Buffer.concat([Buffer.from([text.length]), text]);
    } else {
      type = 12;
      rdata = encodeName(answer.name);
    }
    const fixed = Buffer.alloc(10);
    fixed.writeUInt16BE(type, 0);
    fixed.writeUInt16BE(1, 2);
    fixed.writeUInt32BE(ttl, 4);
    fixed.writeUInt16BE(rdata.length, 8);
    // 0xc00c: a pointer to the name in the question.
    rr = Buffer.concat([Buffer.from([0xc0, 0x0c]), fixed, rdata]);
    header.writeUInt16BE(1, 6);
  }
  return Buffer.concat([header, question, ...(rr ? [rr] : [])]);
}

/** The name a PTR query asks about, as an address, if it is one (in-addr.arpa / ip6.arpa). */
export function ptrAddress(qname: string): string | undefined {
  const v4 = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\.in-addr\.arpa$/.exec(qname);
  if (v4) return `${v4[4]}.${v4[3]}.${v4[2]}.${v4[1]}`;
  const v6 = /^((?:[0-9a-f]\.){32})ip6\.arpa$/.exec(qname);
  if (v6 && v6[1]) {
    const nibbles = v6[1].split('.').filter(Boolean).reverse().join('');
    const groups = nibbles.match(/.{4}/g) ?? [];
    return normalizeIpv6(groups.join(':'));
  }
  return undefined;
}

/** Canonical (RFC 5952-ish, lower case, longest zero run compressed) form of an IPv6 address. */
export function normalizeIpv6(address: string): string {
  const b = ipv6Bytes(address);
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i));
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i > 1) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  const left = hex.slice(0, bestStart).join(':');
  const right = hex.slice(bestStart + bestLen).join(':');
  return `${left}::${right}`;
}
