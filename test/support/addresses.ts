/** Address ranges the tests hold synthetic DNS answers against. */
import { BlockList } from 'node:net';

/**
 * Every special-purpose IPv4 range a synthetic address must stay out of (RFC 6890 and its
 * successors): private, shared, loopback, link-local, documentation, benchmarking, multicast and
 * reserved; `extra` adds more (/prefix pairs).
 */
export function specialPurposeV4(extra: readonly (readonly [string, number])[] = []): BlockList {
  const list = new BlockList();
  for (const [net, prefix] of [
    ['0.0.0.0', 8],
    ['10.0.0.0', 8],
    ['100.64.0.0', 10],
    ['127.0.0.0', 8],
    ['169.254.0.0', 16],
    ['172.16.0.0', 12],
    ['192.0.0.0', 24],
    ['192.0.2.0', 24],
    ['192.88.99.0', 24],
    ['192.168.0.0', 16],
    ['198.18.0.0', 15],
    ['198.51.100.0', 24],
    ['203.0.113.0', 24],
    ['224.0.0.0', 3],
    ...extra,
  ] as const)
    list.addSubnet(net, prefix, 'ipv4');
  return list;
}
