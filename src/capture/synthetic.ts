/**
 * Synthetic addresses: the capture answers every name it resolves with an address of its own, so
 * a later connection to that address names the host the package asked for. They look like the
 * internet's: each run draws eight IPv4 /16s from ordinary unicast space (never a special-purpose
 * range: no private, shared, loopback, link-local, documentation or benchmarking block) and eight
 * IPv6 /48s from 2a00::/12, and hands out addresses round the blocks and scattered in each, not in
 * order. An
 * address of the block that no name was given stays a raw IP.
 */
import { randomInt } from 'node:crypto';
import { normalizeIpv6 } from './dns.js';

/**
 * First octets an IPv4 block may start with: unicast, outside every special-purpose range
 * (0/8, 10/8, 100.64/10, 127/8, 169.254/16, 172.16/12, 192.0.0/24, 192.0.2/24, 192.88.99/24,
 * 192.168/16, 198.18/15, 198.51.100/24, 203.0.113/24, 224/3), and outside the blocks of the
 * best-known public resolvers (1.1.1.1, 8.8.8.8, 9.9.9.9, 208.67.222.222), which a package may
 * well reach by address.
 */
const FIRST_OCTETS = Array.from({ length: 223 }, (_, i) => i + 1).filter(
  (o) => ![1, 8, 9, 10, 100, 127, 169, 172, 192, 198, 203, 208].includes(o),
);

/**
 * Names whose addresses every machine knows (the public resolvers' own names): answered with the
 * real addresses, as a real resolver would, since a payload may check them. A connection to one
 * of these addresses names the host only once it was looked up.
 */
const WELL_KNOWN: Readonly<Record<string, { v4: string; v6: string }>> = {
  'dns.google': { v4: '8.8.8.8', v6: '2001:4860:4860::8888' },
  'one.one.one.one': { v4: '1.1.1.1', v6: '2606:4700:4700::1111' },
  'dns.quad9.net': { v4: '9.9.9.9', v6: '2620:fe::fe' },
  'resolver1.opendns.com': { v4: '208.67.222.222', v6: '2620:119:35::35' },
};

/** An odd multiplier: i → i·K mod 2^16 visits every 16-bit value once, in no visible order. */
const SPREAD = 40_503;
const BLOCK = 1 << 16;

export interface SyntheticBlocks {
  /** The first two octets of each IPv4 /16, e.g. [[57, 142], [134, 9]]. */
  v4: [number, number][];
  /** The first three groups of each IPv6 /48 (as many as v4), e.g. [[0x2a03, 0x1b20, 0x7]]. */
  v6: [number, number, number][];
  /** Where in the permutation the run starts. */
  offset: number;
}

/** How many /16s (and /48s) a run draws: names land in different blocks, as on the internet. */
const BLOCKS_PER_RUN = 8;

export function randomBlocks(): SyntheticBlocks {
  const v4 = new Map<string, [number, number]>();
  while (v4.size < BLOCKS_PER_RUN) {
    const b: [number, number] = [
      FIRST_OCTETS[randomInt(FIRST_OCTETS.length)] as number,
      randomInt(256),
    ];
    v4.set(b.join('.'), b);
  }
  const v6 = new Map<string, [number, number, number]>();
  while (v6.size < BLOCKS_PER_RUN) {
    const b: [number, number, number] = [
      0x2a00 + randomInt(16),
      randomInt(BLOCK),
      randomInt(BLOCK),
    ];
    v6.set(b.join(':'), b);
  }
  return { v4: [...v4.values()], v6: [...v6.values()], offset: randomInt(BLOCK) };
}

/** A handed-out address: which block, and the 16-bit host part in it. */
interface Slot {
  block: number;
  host: number;
}

export class SyntheticAddresses {
  private readonly byName = new Map<string, Slot>();
  private readonly byHost = new Map<number, string>();
  private next = 0;
  /** Well-known addresses handed out, by address. */
  private readonly known = new Map<string, string>();

  constructor(readonly blocks: SyntheticBlocks = randomBlocks()) {
    if (blocks.v4.length === 0 || blocks.v6.length !== blocks.v4.length)
      throw new Error('synthetic addresses: as many IPv6 blocks as IPv4 blocks, at least one');
  }

  /**
   * The block and host part for `name`, allocated on first use, going round the blocks (never .0
   * or .255 of a /24, which look like network and broadcast addresses); undefined once every block
   * is used up.
   */
  private slotOf(name: string): Slot | undefined {
    const known = this.byName.get(name);
    if (known !== undefined) return known;
    const k = this.blocks.v4.length;
    while (this.next < BLOCK * k) {
      const n = this.next++;
      const slot = {
        block: n % k,
        host: (this.blocks.offset + Math.floor(n / k) * SPREAD) % BLOCK,
      };
      const low = slot.host & 255;
      if (low === 0 || low === 255) continue;
      this.byName.set(name, slot);
      this.byHost.set(slot.block * BLOCK + slot.host, name);
      return slot;
    }
    return undefined;
  }

  ipv4For(name: string): string | undefined {
    const fixed = this.wellKnown(name, 'v4');
    if (fixed) return fixed;
    const slot = this.slotOf(name);
    if (slot === undefined) return undefined;
    const [a, b] = this.blocks.v4[slot.block] as [number, number];
    return `${a}.${b}.${slot.host >>> 8}.${slot.host & 255}`;
  }

  ipv6For(name: string): string | undefined {
    const fixed = this.wellKnown(name, 'v6');
    if (fixed) return fixed;
    const slot = this.slotOf(name);
    if (slot === undefined) return undefined;
    const h = slot.host;
    const [a, b, c] = this.blocks.v6[slot.block] as [number, number, number];
    // The host part in the last group, behind an interface id that varies with it.
    const iid = ((h * 2_654_435_761) >>> 0).toString(16).padStart(8, '0');
    return normalizeIpv6(
      `${a.toString(16)}:${b.toString(16)}:${c.toString(16)}:0:${iid.slice(0, 4)}:${iid.slice(4)}:0:${h.toString(16)}`,
    );
  }

  private wellKnown(name: string, family: 'v4' | 'v6'): string | undefined {
    const entry = Object.hasOwn(WELL_KNOWN, name.toLowerCase())
      ? WELL_KNOWN[name.toLowerCase()]
      : undefined;
    if (!entry) return undefined;
    const address = family === 'v4' ? entry.v4 : normalizeIpv6(entry.v6);
    this.known.set(address, name);
    return address;
  }

  /** The name a synthetic address was handed out for, if it is one of ours. */
  nameFor(address: string): string | undefined {
    const known = this.known.get(address.includes(':') ? normalizeIpv6(address) : address);
    if (known !== undefined) return known;
    const v4 = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(address);
    if (v4) {
      const block = this.blocks.v4.findIndex(
        ([a, b]) => a === Number(v4[1]) && b === Number(v4[2]),
      );
      if (block < 0) return undefined;
      return this.byHost.get(block * BLOCK + ((Number(v4[3]) << 8) | Number(v4[4])));
    }
    if (!address.includes(':')) return undefined;
    const groups = expand(normalizeIpv6(address));
    if (!groups) return undefined;
    const block = this.blocks.v6.findIndex(
      ([a, b, c]) => groups[0] === a && groups[1] === b && groups[2] === c,
    );
    if (block < 0) return undefined;
    const name = this.byHost.get(block * BLOCK + (groups[7] as number));
    // The whole address must be the one handed out, not only its last group.
    return name !== undefined && this.ipv6For(name) === normalizeIpv6(address) ? name : undefined;
  }
}

/** The eight groups of an IPv6 address, or undefined. */
function expand(addr: string): number[] | undefined {
  const halves = addr.split('::');
  if (halves.length > 2) return undefined;
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0;
  const all = [...head, ...Array<string>(Math.max(0, fill)).fill('0'), ...tail];
  if (all.length !== 8 || all.some((g) => !/^[0-9a-f]{1,4}$/i.test(g))) return undefined;
  return all.map((g) => parseInt(g, 16));
}
