/**
 * A lockfile graph (formats.ts) laid out as an npm lockfile (lockfileVersion 3): each package at a
 * node_modules location from which Node's module resolution finds, for every dependency, exactly
 * the package the lockfile resolved it to. Packages go as high as they can (the root's
 * node_modules when no other version of the name is in the way), and under the package that
 * needs them when another version is; a location is never given to a second version, so nothing
 * placed earlier is shadowed. npm's own layout would hoist differently in places; which package
 * each dependency reaches is the same, and that is what a check runs.
 *
 * Pure: no I/O. Names and workspace folders that could not be folders of a project (`../x`,
 * `a/b/c`) are refused.
 */
import { PhonehomeError } from '../core/errors.js';
import type { NpmConfig } from './npmrc.js';
import { WORKSPACE_PATH, type LockFormat, type LockGraph, type GraphNode } from './formats.js';

export interface NpmLock {
  name: string;
  version: string;
  lockfileVersion: 3;
  requires: true;
  packages: Record<string, Record<string, unknown>>;
}

/** The registry npm would fetch a package from: its scope's, else the default one. */
export function registryFor(name: string, config: NpmConfig): string {
  const scope = name.startsWith('@') ? name.slice(0, name.indexOf('/')) : undefined;
  const url = String(
    (scope ? config[`${scope}:registry`] : undefined) ??
      config.registry ??
      'https://registry.npmjs.org/',
  );
  return url.endsWith('/') ? url : `${url}/`;
}

/** Yarn's default registry host serves the npm registry's tarballs under the same paths. */
const PUBLIC_REGISTRIES = ['https://registry.yarnpkg.com/', 'https://registry.npmjs.org/'];

/**
 * Where a package's tarball is fetched from: a registry package from the registry the user's npm
 * configuration names for it (as a Yarn or pnpm user behind a mirror expects); a tarball URL, git
 * repository or file as the lockfile says.
 */
export function tarballFor(n: GraphNode, config: NpmConfig): string | undefined {
  return sourceOf(n, config).url;
}

/**
 * Where a package's tarball is fetched from, and, when that is not what the lockfile names, why:
 * the lockfile names no tarball (pnpm, Yarn Berry), or names a public registry's host (Yarn
 * classic's registry.yarnpkg.com) that your configuration replaces.
 */
function sourceOf(n: GraphNode, config: NpmConfig): { url: string; instead?: string } {
  const registry = registryFor(n.name, config);
  const unscoped = n.name.slice(n.name.lastIndexOf('/') + 1);
  const own = `${registry}${n.name}/-/${unscoped}-${n.version}.tgz`;
  if (!n.resolved) return { url: own, instead: 'no tarball URL' };
  const url = n.resolved.replace(/#[0-9a-f]{40}$/, '');
  const pub = PUBLIC_REGISTRIES.find((r) => url.startsWith(r));
  if (pub)
    return {
      url: `${registry}${url.slice(pub.length)}`,
      ...(pub !== registry ? { instead: pub } : {}),
    };
  return { url };
}

/** Ancestors of a location, nearest first, ending with the root (''). */
function levels(location: string): string[] {
  const out: string[] = [];
  let cur = location;
  while (cur) {
    out.push(cur);
    const i = cur.lastIndexOf('/node_modules/');
    cur = i < 0 ? '' : cur.slice(0, i);
  }
  out.push('');
  return out;
}

const child = (level: string, name: string) =>
  level ? `${level}/node_modules/${name}` : `node_modules/${name}`;

/** Keys reachable from `start` over the edges `follow` keeps. */
function reach(
  graph: LockGraph,
  start: Iterable<string>,
  follow: (n: GraphNode, dep: string) => boolean,
  same: (key: string) => string,
): Set<string> {
  const seen = new Set<string>();
  const todo = [...start];
  while (todo.length) {
    const k = todo.pop() as string;
    if (seen.has(k)) continue;
    seen.add(k);
    const n = graph.nodes.get(k);
    if (!n) continue;
    for (const [dep, to] of n.deps) if (follow(n, dep)) todo.push(same(to));
  }
  return seen;
}

/**
 * What may become a folder name under node_modules: a package name as npm allows it (an optional
 * scope, then one segment; never `.`, `..`, a slash or a backslash of its own). A lockfile of a
 * pull request is the author's, and each name here becomes a path of the staging folder.
 */
const FOLDER_NAME = /^(?:@[a-z0-9~-][a-z0-9._~-]*\/)?[a-z0-9~-][a-z0-9._~-]*$/i;

/** Files of the staging folder a workspace folder must not be. */
const RESERVED = ['package.json', 'package-lock.json', 'npm-shrinkwrap.json', 'node_modules'];

function checkNames(graph: LockGraph, file: string): void {
  const bad = (what: string): never => {
    throw new PhonehomeError(
      'ELOCKFILE',
      `${file} names ${what}, which cannot be a folder of a project.`,
      {
        fix: 'Regenerate the lockfile with its package manager; a hand-edited or hostile lockfile can name paths outside the project.',
      },
    );
  };
  for (const n of graph.nodes.values()) {
    if (!FOLDER_NAME.test(n.name) || n.name.length > 214) bad(`a package "${n.name}"`);
    for (const dep of n.deps.keys()) if (!FOLDER_NAME.test(dep)) bad(`a dependency "${dep}"`);
  }
  for (const i of [graph.root, ...graph.workspaces])
    for (const m of [i.prod, i.dev, i.optional])
      for (const dep of m.keys()) if (!FOLDER_NAME.test(dep)) bad(`a dependency "${dep}"`);
  for (const w of graph.workspaces) {
    if (!WORKSPACE_PATH.test(w.path) || RESERVED.includes(w.path))
      bad(`a workspace folder "${w.path}"`);
    if (!FOLDER_NAME.test(w.name)) bad(`a workspace "${w.name}"`);
  }
}

export function npmLockFrom(
  graph: LockGraph,
  pkg: Record<string, unknown>,
  config: NpmConfig,
  file = 'the lockfile',
): { lock: NpmLock; format: LockFormat; registryIntegrity: string[]; sources: string[] } {
  checkNames(graph, file);
  // How many tarballs come from somewhere else than the lockfile says, by registry and reason.
  const elsewhere = new Map<string, number>();
  const { root, nodes } = graph;
  // The same package under two keys (Yarn classic lists one version under several entries at
  // times): one package.
  const canon = new Map<string, string>();
  const byContent = new Map<string, string>();
  for (const [key, n] of nodes) {
    // One package only when everything about it is the same, its dependencies included: two
    // entries that differ there are two packages, each checked.
    const id = JSON.stringify([
      n.name,
      n.version,
      n.integrity ?? '',
      n.resolved ?? '',
      [...n.deps].sort(),
      [...n.optional].sort(),
    ]);
    const first = byContent.get(id);
    if (first) canon.set(key, first);
    else byContent.set(id, key);
  }
  const same = (key: string) => canon.get(key) ?? key;
  const importers = [root, ...graph.workspaces];
  // dev: reached only through devDependencies; optional: only through optional edges.
  const prod = reach(
    graph,
    importers.flatMap((i) => [...i.prod.values(), ...i.optional.values()]).map(same),
    () => true,
    same,
  );
  const required = reach(
    graph,
    importers.flatMap((i) => [...i.prod.values(), ...i.dev.values()]).map(same),
    (n, dep) => !n.optional.has(dep),
    same,
  );
  const placed = new Map<string, string>();
  const packages: Record<string, Record<string, unknown>> = {};
  const queue: { location: string; key: string }[] = [];
  const place = (from: string, name: string, anyKey: string): void => {
    const key = same(anyKey);
    const chain = levels(from);
    let target: string | undefined;
    for (const level of chain) {
      const loc = child(level, name);
      const have = placed.get(loc);
      if (have === key) return;
      if (have !== undefined) {
        // Another version is in the way up there: right under the package that needs it.
        target = child(chain[0] as string, name);
        break;
      }
    }
    target ??= child('', name);
    if (placed.has(target)) return;
    placed.set(target, key);
    queue.push({ location: target, key });
  };
  for (const [name, key] of [...root.prod, ...root.optional, ...root.dev]) place('', name, key);
  // Workspaces as npm writes them: the folder, and a link to it from the root's node_modules;
  // their dependencies resolve from the folder up.
  for (const w of graph.workspaces) {
    const specs = (m: Map<string, string>) =>
      Object.fromEntries([...m].map(([dep, k]) => [dep, nodes.get(same(k))?.version ?? '*']));
    packages[w.path] = {
      name: w.name,
      version: w.version,
      ...(w.prod.size ? { dependencies: specs(w.prod) } : {}),
      ...(w.dev.size ? { devDependencies: specs(w.dev) } : {}),
      ...(w.optional.size ? { optionalDependencies: specs(w.optional) } : {}),
    };
    packages[child('', w.name)] = { resolved: w.path, link: true };
    placed.set(child('', w.name), `workspace:${w.path}`);
  }
  for (const w of graph.workspaces)
    for (const [name, key] of [...w.prod, ...w.optional, ...w.dev]) place(w.path, name, key);
  const registryIntegrity: string[] = [];
  for (let i = 0; i < queue.length; i++) {
    const { location, key } = queue[i] as { location: string; key: string };
    const n = nodes.get(key);
    if (!n) continue;
    const folderName = location.slice(
      location.lastIndexOf('node_modules/') + 'node_modules/'.length,
    );
    const deps: Record<string, string> = {};
    const optionalDeps: Record<string, string> = {};
    for (const [dep, to] of n.deps) {
      const target = nodes.get(same(to));
      if (!target) continue;
      (n.optional.has(dep) ? optionalDeps : deps)[dep] = target.version;
      place(location, dep, to);
    }
    const source = sourceOf(n, config);
    const resolved = source.url;
    if (source.instead) {
      const why = `${registryFor(n.name, config)}\0${source.instead}`;
      elsewhere.set(why, (elsewhere.get(why) ?? 0) + 1);
    }
    if (n.registryIntegrity) registryIntegrity.push(location);
    packages[location] = {
      ...(folderName !== n.name ? { name: n.name } : {}),
      version: n.version,
      ...(resolved ? { resolved } : {}),
      ...(n.integrity ? { integrity: n.integrity } : {}),
      ...(prod.has(key) ? {} : { dev: true }),
      ...(required.has(key) ? {} : { optional: true }),
      ...(Object.keys(deps).length ? { dependencies: deps } : {}),
      ...(Object.keys(optionalDeps).length ? { optionalDependencies: optionalDeps } : {}),
      ...(n.os ? { os: n.os } : {}),
      ...(n.cpu ? { cpu: n.cpu } : {}),
      ...(n.libc ? { libc: n.libc } : {}),
    };
  }
  const pick = (k: string) =>
    pkg[k] && typeof pkg[k] === 'object' ? { [k]: pkg[k] as Record<string, string> } : {};
  const name = String(pkg.name ?? 'project');
  const version = String(pkg.version ?? '0.0.0');
  const sources = [...elsewhere].map(([why, count]) => {
    const [registry, instead] = why.split('\0') as [string, string];
    return instead === 'no tarball URL'
      ? `${count} package(s) from ${registry} (your npm configuration's registry; the lockfile names no tarball URL)`
      : `${count} package(s) from ${registry} (your npm configuration's registry) instead of ${instead}, which the lockfile names`;
  });
  return {
    format: graph.format,
    registryIntegrity,
    sources,
    lock: {
      name,
      version,
      lockfileVersion: 3,
      requires: true,
      packages: {
        '': {
          name,
          version,
          ...pick('dependencies'),
          ...pick('devDependencies'),
          ...pick('optionalDependencies'),
          ...(graph.workspaces.length ? { workspaces: graph.workspaces.map((w) => w.path) } : {}),
        },
        ...Object.fromEntries(Object.entries(packages).sort(([a], [b]) => a.localeCompare(b))),
      },
    },
  };
}
