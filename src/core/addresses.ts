/** Address ranges no package reaches on the internet, shared by what refuses or ignores them. */
import { BlockList, isIP } from 'node:net';

/**
 * Unspecified, loopback, link-local (cloud metadata services), private, shared (CGNAT),
 * multicast and unique-local ranges.
 */
export const INTERNAL_ADDRESSES = (() => {
  const list = new BlockList();
  for (const [net, bits] of [
    ['0.0.0.0', 8],
    ['10.0.0.0', 8],
    ['100.64.0.0', 10],
    ['127.0.0.0', 8],
    ['169.254.0.0', 16],
    ['172.16.0.0', 12],
    ['192.168.0.0', 16],
    ['224.0.0.0', 3],
  ] as const)
    list.addSubnet(net, bits, 'ipv4');
  for (const [net, bits] of [
    // The unspecified address (`[::]` reaches loopback on Linux) and loopback.
    ['::', 128],
    ['::1', 128],
    ['fe80::', 10],
    ['fc00::', 7],
    ['ff00::', 8],
  ] as const)
    list.addSubnet(net, bits, 'ipv6');
  return list;
})();

export function isInternalAddress(ip: string): boolean {
  const family = isIP(ip);
  return family !== 0 && INTERNAL_ADDRESSES.check(ip, family === 6 ? 'ipv6' : 'ipv4');
}
