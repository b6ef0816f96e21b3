/**
 * Kernel counters of the gateway's network namespace that say what the capture never saw:
 * datagrams dropped because a UDP socket's receive buffer was full, and packets conntrack could
 * not track (without an entry a redirect has no original destination). Read at each flush.
 */
import { readFile } from 'node:fs/promises';

/** `Udp: RcvbufErrors` + `Udp6RcvbufErrors` of this network namespace. */
export async function udpReceiveErrors(
  snmp = '/proc/net/snmp',
  snmp6 = '/proc/net/snmp6',
): Promise<number> {
  let total = 0;
  try {
    const lines = (await readFile(snmp, 'utf8')).split('\n').filter((l) => l.startsWith('Udp: '));
    const names = lines[0]?.trim().split(/\s+/) ?? [];
    const values = lines[1]?.trim().split(/\s+/) ?? [];
    const i = names.indexOf('RcvbufErrors');
    if (i > 0) total += Number(values[i]) || 0;
  } catch {
    // not readable: counted as none
  }
  try {
    const m = /^Udp6RcvbufErrors\s+(\d+)/m.exec(await readFile(snmp6, 'utf8'));
    if (m) total += Number(m[1]);
  } catch {
    // IPv6 off
  }
  return total;
}

/** Packets conntrack could not track (insert_failed + drop + early_drop, every CPU). */
export async function conntrackDrops(path = '/proc/net/stat/nf_conntrack'): Promise<number> {
  try {
    const [head = '', ...rows] = (await readFile(path, 'utf8')).trim().split('\n');
    const names = head.trim().split(/\s+/);
    const cols = ['insert_failed', 'drop', 'early_drop'].map((n) => names.indexOf(n));
    let total = 0;
    for (const row of rows) {
      const values = row.trim().split(/\s+/);
      for (const c of cols) if (c >= 0) total += parseInt(values[c] ?? '0', 16) || 0;
    }
    return total;
  } catch {
    return 0;
  }
}
