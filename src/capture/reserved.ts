/**
 * Names a real resolver answers NXDOMAIN for, so the capture's DNS does too: names under a TLD
 * that does not exist (a lookup of a random name under a made-up TLD is a common sandbox test)
 * and the special-use names of RFC 6761, RFC 6762, RFC 7686, RFC 8375 and RFC 9476. Pure.
 *
 * `example` is the one exception: phonehome's own fixtures and documentation use it for every
 * destination, and it keeps resolving (a tell that is named in docs/check.md).
 */
import { domainToASCII } from 'node:url';

/** Special-use TLDs no public resolver answers for. */
const SPECIAL_USE = new Set(['test', 'invalid', 'localhost', 'local', 'onion', 'alt', 'internal']);

/** Where Debian's publicsuffix package keeps the Public Suffix List (ICANN TLDs included). */
export const PUBLIC_SUFFIX_LIST = '/usr/share/publicsuffix/public_suffix_list.dat';

/** The top-level domains the Public Suffix List names (the last label of each rule). */
export function tldsFrom(list: string): Set<string> {
  const tlds = new Set<string>();
  for (const raw of list.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('//')) continue;
    const rule = line.split(/\s/)[0]?.replace(/^[!*.]+/, '') ?? '';
    // Internationalised TLDs are listed in Unicode; queries carry them in punycode.
    const label = rule.slice(rule.lastIndexOf('.') + 1);
    const tld = (/^[\x21-\x7e]+$/.test(label) ? label : domainToASCII(label)).toLowerCase();
    if (/^[a-z0-9-]+$/.test(tld)) tlds.add(tld);
  }
  return tlds;
}

/** The rules of the Public Suffix List, in ASCII (`*.` and `!` rules kept as written). */
export function suffixRulesFrom(list: string): Set<string> {
  const rules = new Set<string>();
  for (const raw of list.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('//')) continue;
    const rule = line.split(/\s/)[0] ?? '';
    const bang = rule.startsWith('!') ? '!' : '';
    const star = rule.replace(/^!/, '').startsWith('*.') ? '*.' : '';
    const bare = rule.replace(/^!/, '').replace(/^\*\./, '');
    const ascii = (/^[\x21-\x7e]+$/.test(bare) ? bare : domainToASCII(bare)).toLowerCase();
    if (ascii) rules.add(`${bang}${star}${ascii}`);
  }
  return rules;
}

/**
 * The registrable domain of `name` (its public suffix and one label more) by the list's rules, or
 * by its last two labels without them; undefined for a public suffix itself.
 */
export function registrableDomain(name: string, rules?: ReadonlySet<string>): string | undefined {
  const labels = name.toLowerCase().replace(/\.$/, '').split('.').filter(Boolean);
  if (labels.length < 2) return undefined;
  // The longest matching rule names the suffix; an exception rule takes one label off a wildcard.
  let suffix = 1;
  if (rules)
    for (let i = 0; i < labels.length; i++) {
      const rest = labels.slice(i).join('.');
      if (rules.has(`!${rest}`)) {
        suffix = labels.length - i - 1;
        break;
      }
      if (i > 0 && rules.has(`*.${labels.slice(i).join('.')}`)) {
        suffix = labels.length - i + 1;
        break;
      }
      if (rules.has(rest)) {
        suffix = labels.length - i;
        break;
      }
    }
  if (labels.length <= suffix) return undefined;
  return labels.slice(labels.length - suffix - 1).join('.');
}

/**
 * Whether a query for `qname` gets NXDOMAIN. Without a TLD list only the special-use names do.
 * Reverse lookups (`*.arpa`, other than home.arpa) are answered elsewhere.
 */
export function isNxdomain(qname: string, tlds: ReadonlySet<string> | undefined): boolean {
  const name = qname.toLowerCase().replace(/\.$/, '');
  if (!name) return false;
  const labels = name.split('.');
  const tld = labels[labels.length - 1] as string;
  if (tld === 'arpa') return name === 'home.arpa' || name.endsWith('.home.arpa');
  if (tld === 'example') return false;
  if (SPECIAL_USE.has(tld)) return true;
  // Anything else needs a TLD that exists (a TLD on its own is answered, without an address).
  if (!tlds) return false;
  return !tlds.has(tld);
}
