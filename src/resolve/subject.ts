/**
 * What a registry spec resolves to (name, version, tarball integrity), from the packument alone,
 * without fetching the tree: enough to find a stored result. pacote is loaded only here and only
 * when asked, so a check answered from the store stays quick.
 */
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { specError } from './errors.js';
import { fetchOptions, type NpmConfig } from './npmrc.js';

export interface ResolvedSubject {
  name: string;
  version: string;
  integrity: string;
}

/**
 * Undefined for local folders, tarballs and other non-registry specs, whose content the registry
 * does not pin. npm's own registry client is used directly rather than pacote: it is a third of
 * the start-up cost, which is most of the time of a check answered from the store.
 */
export async function resolveSubject(
  spec: string,
  opts: { npmConfig?: NpmConfig } = {},
): Promise<ResolvedSubject | undefined> {
  const looksLocal = spec.startsWith('.') || spec.startsWith('/') || spec.startsWith('file:');
  if (looksLocal || existsSync(resolvePath(spec))) return undefined;
  const [{ default: npa }, { default: npmFetch }, { default: pickManifest }] = await Promise.all([
    import('npm-package-arg'),
    import('npm-registry-fetch'),
    import('npm-pick-manifest'),
  ]);
  try {
    const parsed = npa(spec);
    if (!parsed.registry || !parsed.name || !parsed.escapedName || parsed.type === 'alias')
      return undefined;
    // A published name@version never changes on the registry, so an exact version may be read
    // from npm's cache; a range or tag must ask the registry what it points at now.
    const exact = parsed.type === 'version';
    const packument = await npmFetch.json(`/${parsed.escapedName}`, {
      ...fetchOptions(opts.npmConfig ?? {}),
      // npm's cache, where pacote (and npm) keep packuments; npm-registry-fetch has no default.
      cache: join(homedir(), '.npm', '_cacache'),
      spec: parsed,
      headers: {
        accept: 'application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*',
      },
      ...(exact ? { preferOffline: true } : {}),
    });
    const m = pickManifest(packument, parsed.fetchSpec ?? 'latest');
    const integrity = m.dist?.integrity;
    return integrity ? { name: m.name, version: m.version, integrity } : undefined;
  } catch (e) {
    throw specError(spec, e);
  }
}
