/**
 * Synthetic addresses: one IPv4 from 198.18.0.0/15 (RFC 2544's benchmarking range, never routed
 * on the internet) and one IPv6 from 2001:2::/48 (RFC 5180's benchmarking range) per name, so a
 * later connection to the address names the host the package asked for.
 */
import { normalizeIpv6 } from './dns.js';

const V4_BASE = (198 << 24) | (18 << 16);
// 198.18.0.0/15 has 2^17 addresses; skip .0 of the first block.
const V4_SIZE = 1 << 17;

export class SyntheticAddresses {
  private readonly byName = new Map<string, number>();
  private readonly names: string[] = [];

  /** The index for `name`, allocated on first use; undefined once the range is used up. */
  private indexOf(name: string): number | undefined {
    let i = this.byName.get(name);
    if (i === undefined) {
      if (this.names.length + 1 >= V4_SIZE) return undefined;
      this.names.push(name);
      i = this.names.length; // from 1
      this.byName.set(name, i);
    }
    return i;
  }

  ipv4For(name: string): string | undefined {
    const i = this.indexOf(name);
    if (i === undefined) return undefined;
    const n = (V4_BASE + i) >>> 0;
    return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
  }

  ipv6For(name: string): string | undefined {
    const i = this.indexOf(name);
    if (i === undefined) return undefined;
    return normalizeIpv6(
      `2001:2:0:0:0:0:${((i >>> 16) & 0xffff).toString(16)}:${(i & 0xffff).toString(16)}`,
    );
  }

  /** The name a synthetic address was handed out for, if it is one of ours. */
  nameFor(address: string): string | undefined {
    const v4 = /^198\.(18|19)\.(\d+)\.(\d+)$/.exec(address);
    if (v4) {
      const n = ((Number(v4[1]) - 18) << 16) | (Number(v4[2]) << 8) | Number(v4[3]);
      return this.names[n - 1];
    }
    if (address.includes(':')) {
      const norm = normalizeIpv6(address);
      const m = /^2001:2::(?:([0-9a-f]{1,4}):)?([0-9a-f]{1,4})$/.exec(norm);
      if (m) {
        const n = (parseInt(m[1] ?? '0', 16) << 16) | parseInt(m[2] ?? '0', 16);
        return this.names[n - 1];
      }
    }
    return undefined;
  }

  get size(): number {
    return this.names.length;
  }
}
