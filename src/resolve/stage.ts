/**
 * Resolve and stage, on the host, without running package code: arborist builds the tree for the
 * spec and reifies it with scripts ignored into a staging directory (a small project that depends
 * on the spec), which then enters the sandbox as a tar stream.
 */
import { existsSync, rmSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, relative as relativePath, resolve as resolvePath } from 'node:path';
import type { Readable } from 'node:stream';
import Arborist, { type ArboristNode } from '@npmcli/arborist';
import pacote from 'pacote';
import * as tar from 'tar';
import { PhonehomeError } from '../core/errors.js';
import { formatId } from '../core/package-id.js';
import { SANDBOX_WORKDIR, type Capability } from '../core/terms.js';
import { packageEnv } from '../agent/lifecycle.js';
import { scanCapabilities } from './capabilities.js';
import { specError } from './errors.js';
import { stagingPrefix } from './staging-dirs.js';
import { fetchOptions, registryOrigins, type NpmConfig } from './npmrc.js';

/** The project the package is installed into inside the sandbox: looks like someone's app. */
export const PROJECT_NAME = 'web-app';

export interface StagedPackage {
  /** The package asked about. */
  name: string;
  version: string;
  integrity: string | null;
  spec: string;
  dir: string;
  /** Every package of the tree, dependencies first. */
  packages: TreePackageInfo[];
  /** The commands the package asked about declares (`bin`), by name. */
  bins: string[];
  tar(): Readable;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface TreePackageInfo {
  name: string;
  version: string;
  location: string;
  integrity: string | null;
  /** The install events npm will run for it (with the implicit node-gyp `install`). */
  installScripts: string[];
  /** The command of each install script, and a digest of the file it runs when it is `node <file>`. */
  scripts: Record<string, { command: string; digest?: string }>;
  /** What its files show it could do, read without running it. */
  capabilities: Capability[];
  /** Its `egress` declaration, as written (validated when the run is judged). */
  egress?: unknown;
  /** `name@version` of the packages it depends on directly. */
  dependencies: string[];
  /** The hosts of its homepage, repository and bugs URLs (see linksOf). */
  links?: string[];
  /**
   * Whether a registry vouches for its name and version: fetched from a configured registry, at
   * the tarball path of that very name and version, with an integrity. A tarball URL, a file or
   * git dependency, or a registry tarball whose package.json names another package are not:
   * curated knowledge about a package (known egress) applies only when this is true.
   */
  fromRegistry: boolean;
  /**
   * `name@version` of the package whose tarball ships it (bundleDependencies): npm runs a bundled
   * package's install scripts as part of rebuilding the package that bundles it, never by name.
   */
  bundledBy?: string;
  /**
   * What npm puts in its install scripts' environment about it (`npm_package_*`, see packageEnv
   * in src/agent/lifecycle.ts). Only for a package with install scripts.
   */
  scriptEnv?: Record<string, string>;
}

export interface StageOptions {
  /** Registries, credentials, proxy: see npmrc.ts. */
  npmConfig?: NpmConfig;
  cacheDir?: string;
  /** When aborted (Ctrl-C), the staging directory is removed at once. */
  signal?: AbortSignal;
}

export const INSTALL_EVENTS = ['preinstall', 'install', 'postinstall'] as const;

/** What arborist's `add` should see: local tarballs and folders become file: specs (folders packed first). */
async function addSpec(spec: string, work: string, opts: StageOptions): Promise<string> {
  const looksLocal = spec.startsWith('.') || spec.startsWith('/') || spec.startsWith('file:');
  const path = resolvePath(spec.replace(/^file:/, ''));
  if (!looksLocal && !existsSync(path)) return spec;
  if (!existsSync(path)) throw new PhonehomeError('ESPEC', `No file or folder at ${path}.`);
  if (statSync(path).isDirectory()) {
    // Packed the way `npm pack` would, with scripts (prepare) ignored: nothing runs on the host.
    const tgz = join(work, `${basename(path)}.tgz`);
    await pacote.tarball
      .file(`file:${path}`, tgz, { ignoreScripts: true, Arborist, ...pacoteOpts(opts) })
      .catch((e: unknown) => {
        const mapped = specError(spec, e);
        if (mapped.code !== 'ERESOLVE') throw mapped;
        throw new PhonehomeError(
          'ESPEC',
          `Could not pack the folder ${path}: ${(e as Error).message}`,
          { cause: e },
        );
      });
    return `file:${tgz}`;
  }
  return `file:${path}`;
}

export function pacoteOpts(opts: StageOptions): Record<string, unknown> {
  return {
    ...fetchOptions(opts.npmConfig ?? {}),
    ...(opts.cacheDir ? { cache: opts.cacheDir } : {}),
  };
}

/**
 * A staging folder (`<tmp>/phonehome-stage-<pid>-…/project`) removed by `cleanup`, or at once
 * when the signal aborts (the process exits right after: remove synchronously, or not at all).
 */
export async function stagingDir(
  signal?: AbortSignal,
): Promise<{ work: string; dir: string; cleanup: () => Promise<void> }> {
  const work = await mkdtemp(join(tmpdir(), stagingPrefix()));
  const onAbort = () => rmSync(work, { recursive: true, force: true });
  // Aborted while the folder was being made: an abort event will not come again.
  if (signal?.aborted) {
    onAbort();
    throw signal.reason;
  }
  signal?.addEventListener('abort', onAbort, { once: true });
  return {
    work,
    dir: join(work, 'project'),
    cleanup: async () => {
      signal?.removeEventListener('abort', onAbort);
      await rm(work, { recursive: true, force: true });
    },
  };
}

export async function stage(spec: string, opts: StageOptions = {}): Promise<StagedPackage> {
  if (!spec.trim()) throw new PhonehomeError('ESPEC', 'An empty package spec.');
  const { work, dir, cleanup } = await stagingDir(opts.signal);
  try {
    const add = await addSpec(spec, work, opts);
    await mkdir(dir);
    await writeFile(
      join(dir, 'package.json'),
      JSON.stringify({ name: PROJECT_NAME, version: '1.0.0', private: true }, null, 2) + '\n',
    );
    const arb = new Arborist({
      ...pacoteOpts(opts),
      path: dir,
      ignoreScripts: true,
      audit: false,
      fund: false,
    });
    let root: ArboristNode;
    try {
      root = await arb.reify({ add: [add], save: true });
    } catch (e) {
      throw specError(spec, e);
    }
    const direct = [...root.edgesOut.values()][0]?.to;
    if (!direct) throw new PhonehomeError('ESPEC', `Resolving ${spec} produced no package.`);
    const packages = await describeTree(root, dir, registryOrigins(opts.npmConfig ?? {}));
    await allowScripts(dir, packages);
    return {
      name: direct.packageName,
      version: direct.version,
      integrity: direct.integrity,
      spec,
      dir,
      packages,
      bins: binNames(direct.package.bin, direct.packageName),
      tar: () => tar.c({ cwd: dir, portable: true, follow: false }, ['.']) as unknown as Readable,
      [Symbol.asyncDispose]: cleanup,
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

/**
 * The project allows the install scripts that run, in npm 12's `allowScripts` (as `npm
 * install-scripts approve` writes it: `name@version` for a registry package, the resolved spec of
 * a file dependency): the scripts run as a project that allows them would run them, and one that
 * reads the project's package.json finds what npm would have needed.
 */
async function allowScripts(dir: string, packages: readonly TreePackageInfo[]): Promise<void> {
  const keys = packages
    .filter((p) => p.installScripts.length && !p.bundledBy)
    .map((p) => {
      const resolved = p.scriptEnv?.npm_package_resolved ?? '';
      return !p.fromRegistry && resolved.startsWith('file:')
        ? resolved
        : formatId(p.name, p.version);
    });
  if (!keys.length) return;
  const file = join(dir, 'package.json');
  const project = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  project.allowScripts = Object.fromEntries([...new Set(keys)].sort().map((k) => [k, true]));
  await writeFile(file, JSON.stringify(project, null, 2) + '\n');
}

/**
 * A digest of the file an install script runs (`node install.js`), so a changed script body is
 * seen between versions even when the command stays the same.
 */
async function scriptDigest(folder: string, command: string): Promise<string | undefined> {
  const file = /^node\s+([\w./@-]+\.[cm]?js)\b/.exec(command.trim())?.[1];
  if (!file) return undefined;
  const path = resolvePath(folder, file);
  if (!path.startsWith(`${folder}/`)) return undefined;
  try {
    return `sha256-${createHash('sha256')
      .update(await readFile(path))
      .digest('hex')
      .slice(0, 32)}`;
  } catch {
    return undefined;
  }
}

/**
 * Every package of a reified tree, read on the host: install scripts (with the implicit node-gyp
 * one), script digests, capabilities, declaration, direct dependencies. Dependencies first.
 */
export async function describeTree(
  root: ArboristNode,
  dir: string,
  registries: readonly string[],
): Promise<TreePackageInfo[]> {
  const nodes = [...root.inventory.values()].filter((n) => !n.isRoot && !n.isLink);
  const packages = await mapLimit(nodes, 16, async (n): Promise<TreePackageInfo> => {
    const folder = join(dir, n.location);
    // The package.json in the fetched tarball, not what a lockfile says of it: a lockfile (of a
    // pull request, or one laid out from another package manager's) may leave out that a package
    // has install scripts, or its declaration.
    const manifest = await readManifest(folder, n.package);
    const scripts = installScripts(manifest, folder);
    const commands = Object.fromEntries(
      scripts.map((ev) => [ev, manifest.scripts?.[ev] ?? 'node-gyp rebuild']),
    );
    return {
      name: n.packageName,
      version: n.version,
      location: n.location,
      integrity: n.integrity,
      installScripts: scripts,
      scripts: Object.fromEntries(
        await Promise.all(
          Object.entries(commands).map(async ([ev, command]) => {
            const digest = await scriptDigest(folder, command);
            return [ev, { command, ...(digest ? { digest } : {}) }] as const;
          }),
        ),
      ),
      capabilities: await scanCapabilities(folder, commands),
      ...(manifest.egress !== undefined ? { egress: manifest.egress } : {}),
      ...(linksOf(manifest).length ? { links: linksOf(manifest) } : {}),
      fromRegistry: vouchedFor(n, registries),
      ...(bundler(n) ? { bundledBy: bundler(n) } : {}),
      ...(scripts.length ? { scriptEnv: scriptEnv(n, manifest, dir) } : {}),
      dependencies: [...n.edgesOut.values()]
        .map((e) => e.to)
        .filter((t): t is ArboristNode => !!t && !t.isRoot)
        .map((t) => formatId(t.packageName, t.version))
        .sort(),
    };
  });
  // Deeper locations first: a dependency's scripts run before its dependents'.
  return packages.sort(
    (a, b) =>
      b.location.split('node_modules').length - a.location.split('node_modules').length ||
      a.location.localeCompare(b.location),
  );
}

/**
 * The hosts of the web addresses a package names for itself: `homepage`, `repository` (a git
 * URL's host too) and `bugs`. Shorthands like `user/repo` name a code host, never the package's
 * own domain, and are left out; at most 3, from values of at most 300 characters.
 */
export function linksOf(manifest: Record<string, unknown>): string[] {
  const url = (v: unknown): string | undefined => {
    const text =
      typeof v === 'string'
        ? v
        : v && typeof v === 'object' && typeof (v as { url?: unknown }).url === 'string'
          ? (v as { url: string }).url
          : undefined;
    if (!text || text.length > 300) return undefined;
    // git+https://host/…, git://host/…, git+ssh://git@host/…, git@host:user/repo
    const scp = /^[\w.-]+@([\w.-]+):/.exec(text);
    if (scp) return (scp[1] as string).toLowerCase();
    const m = /^(?:git\+)?(?:https?|git|ssh):\/\/(?:[^@/]+@)?([^/:?#]+)/i.exec(text);
    return m ? (m[1] as string).toLowerCase() : undefined;
  };
  const found = [url(manifest.homepage), url(manifest.repository), url(manifest.bugs)];
  return [...new Set(found.filter((u): u is string => u !== undefined))];
}

/** See TreePackageInfo.fromRegistry. */
export function vouchedFor(
  n: Pick<ArboristNode, 'packageName' | 'version' | 'resolved' | 'integrity' | 'inBundle'>,
  registries: readonly string[],
): boolean {
  if (!n.resolved || !n.integrity || n.inBundle) return false;
  let url: URL;
  try {
    url = new URL(n.resolved);
  } catch {
    return false;
  }
  // The tarball path of this very name and version right under a configured registry's base (a
  // path that merely ends like it, say under another scope, is not).
  const base = n.packageName.slice(n.packageName.lastIndexOf('/') + 1);
  const expected = `${n.packageName}/-/${base}-${n.version}.tgz`;
  let path: string;
  try {
    path = decodeURIComponent(url.pathname);
  } catch {
    return false;
  }
  return (
    url.search === '' &&
    registries.some((r) => {
      const reg = new URL(r);
      const root = reg.pathname.endsWith('/') ? reg.pathname : `${reg.pathname}/`;
      return reg.origin === url.origin && path === `${root}${expected}`;
    })
  );
}

/** `name@version` of the package whose tarball ships `n`, if a package's does. */
function bundler(n: ArboristNode): string | undefined {
  if (!n.inBundle) return undefined;
  let b = n.parent;
  while (b?.inBundle) b = b.parent;
  return b && !b.isRoot ? formatId(b.packageName, b.version) : undefined;
}

/** Map with at most `limit` calls in flight (file scans of a large tree would exhaust descriptors). */
async function mapLimit<T, R>(
  items: T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

type Manifest = Record<string, unknown> & { scripts?: Record<string, string> };

/**
 * A fetched package's own package.json (a regular file of at most 1 MB: a symlink is not followed
 * on the host), or what arborist knows when it cannot be read so.
 */
async function readManifest(folder: string, known: Manifest): Promise<Manifest> {
  try {
    const file = join(folder, 'package.json');
    const info = await lstat(file);
    if (!info.isFile() || info.size > 1024 * 1024) return known;
    const m = JSON.parse(await readFile(file, 'utf8')) as unknown;
    return m && typeof m === 'object' && !Array.isArray(m) ? (m as Manifest) : known;
  } catch {
    return known;
  }
}

/**
 * The fields npm's run-script turns into `npm_package_*` (a `bin` string as the object npm's
 * package.json normalising makes of it), and arborist's rebuild's view of the node.
 */
function scriptEnv(n: ArboristNode, manifest: Manifest, project: string): Record<string, string> {
  const m = manifest as Record<string, unknown>;
  const name = typeof m.name === 'string' ? m.name : n.packageName;
  const bin =
    typeof m.bin === 'string' ? { [name.replace(/^@[^/]+\//, '')]: m.bin } : (m.bin ?? undefined);
  return packageEnv(
    {
      name,
      version: typeof m.version === 'string' ? m.version : n.version,
      ...(m.config !== undefined ? { config: m.config } : {}),
      ...(m.engines !== undefined ? { engines: m.engines } : {}),
      ...(bin !== undefined ? { bin } : {}),
    },
    {
      // A file dependency as the project's lockfile writes it (relative to the project): the
      // host's staging path would name phonehome.
      resolved: n.resolved?.startsWith('file:')
        ? `file:${relativePath(project, n.resolved.slice('file:'.length))}`
        : n.resolved,
      integrity: n.integrity,
      optional: n.optional,
      dev: n.dev,
      peer: n.peer,
      devOptional: n.devOptional,
    },
    `${SANDBOX_WORKDIR}/${n.location}`,
  );
}

/** The install events npm runs for a package, with the implicit `node-gyp rebuild`. */
function installScripts(manifest: Manifest, folder: string): string[] {
  const scripts = INSTALL_EVENTS.filter((ev) => typeof manifest.scripts?.[ev] === 'string');
  // npm runs `node-gyp rebuild` as the install script when binding.gyp exists and the package
  // has neither an install nor a preinstall script of its own.
  const gyp =
    manifest.gypfile !== false &&
    !scripts.includes('install') &&
    !scripts.includes('preinstall') &&
    existsSync(join(folder, 'binding.gyp'));
  return gyp ? [...scripts, 'install'] : scripts;
}

/** The commands a package's `bin` field declares, by name. */
export function binNames(bin: unknown, packageName: string): string[] {
  if (typeof bin === 'string') return [packageName.replace(/^@[^/]+\//, '')];
  if (bin && typeof bin === 'object') return Object.keys(bin).sort();
  return [];
}
