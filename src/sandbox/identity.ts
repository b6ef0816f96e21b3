/**
 * What the sandbox looks like from inside: names that a developer's machine would have, chosen
 * per run, so the package cannot recognise the sandbox by a fixed hostname.
 */
import { randomInt } from 'node:crypto';

const OWNERS = [
  'alex',
  'sam',
  'jordan',
  'maria',
  'chen',
  'priya',
  'lukas',
  'emma',
  'diego',
  'noah',
  'yuki',
  'olivia',
];
const MACHINES = ['laptop', 'thinkpad', 'mbp', 'desktop', 'xps', 'workstation', 'dev'];

function pick<T>(list: readonly T[]): T {
  return list[randomInt(list.length)] as T;
}

export function randomHostname(): string {
  return `${pick(OWNERS)}-${pick(MACHINES)}`;
}
