/**
 * Which earlier version a package is compared with (`--against previous`), from the registry's
 * packument.
 */
import semver from 'semver';
import { PhonehomeError } from '../core/errors.js';
import { fetchOptions, type NpmConfig } from './npmrc.js';

export interface Packument {
  name: string;
  versions: Record<string, { deprecated?: string | boolean } | undefined>;
}

/**
 * The version before `current` in semver order. Pre-releases count only when `current` is one.
 * Unpublished versions are not in the packument's `versions`, so they never count. Deprecated
 * versions are passed over (a deprecated release is often the broken or compromised one) unless
 * every earlier version is deprecated, in which case the newest of them is used.
 */
export function previousVersion(p: Packument, current: string): string | undefined {
  const cur = semver.parse(current);
  if (!cur) return undefined;
  const pre = cur.prerelease.length > 0;
  const earlier = Object.keys(p.versions)
    .filter((v) => semver.valid(v) && semver.lt(v, cur))
    .filter((v) => pre || semver.prerelease(v) === null)
    .sort(semver.rcompare);
  const live = earlier.find((v) => !p.versions[v]?.deprecated);
  return live ?? earlier[0];
}

export async function fetchPackument(name: string, npmConfig: NpmConfig = {}): Promise<Packument> {
  const { default: pacote } = await import('pacote');
  try {
    return (await pacote.packument(name, { ...fetchOptions(npmConfig) })) as unknown as Packument;
  } catch (e) {
    throw new PhonehomeError('ESPEC_NOT_FOUND', `Could not read the versions of ${name}.`, {
      detail: (e as Error).message,
      cause: e,
    });
  }
}
