/**
 * Staging a lockfile's tree, as locked: the lockfile (and the project's package.json, or one
 * written from the lockfile's root entry) is copied to a staging folder and reified there by
 * arborist with scripts ignored, which fetches every package at its locked version and checks
 * its locked integrity. Nothing runs on the host.
 */
import { createReadStream, createWriteStream, existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import {
  basename,
  dirname,
  isAbsolute,
  join,
  relative as relativePath,
  resolve as resolvePath,
} from 'node:path';
import { BlockList, isIP } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import Arborist, { type ArboristNode } from '@npmcli/arborist';
import npa from 'npm-package-arg';
import * as tar from 'tar';
import { INTERNAL_ADDRESSES } from '../core/addresses.js';
import { PhonehomeError } from '../core/errors.js';
import { formatId } from '../core/package-id.js';
import { specError } from './errors.js';
import { registryOrigins, type NpmConfig } from './npmrc.js';
import { describeTree, pacoteOpts, stagingDir, type TreePackageInfo } from './stage.js';
import { LOCKFILE_NAMES, readGraph, type LockFormat } from './formats.js';
import { npmLockFrom } from './npm-lock.js';

export type OmitKind = 'dev' | 'optional' | 'peer';

export interface LockedPackage extends TreePackageInfo {
  /** Names from the project down to this package (`app > a > b`), the shortest way in. */
  path: string[];
  dev: boolean;
  optional: boolean;
}

/** The locked tree fetched into the LockTree's staging folder (removed with the LockTree). */
export interface StagedTree {
  /** The lockfile read. */
  lockfile: string;
  project: { name: string; version: string };
  dir: string;
  packages: LockedPackage[];
  tar(): Readable;
}

const BUN_BINARY = {
  fix: 'Write the text lockfile next to it with `bun install --save-text-lockfile` (Bun 1.1.39 or later; the default since Bun 1.2) and run again.',
};

/**
 * The lockfile a path means: the file itself, or the one in a project folder (npm's first, then
 * pnpm's, Yarn's and Bun's: see LOCKFILE_NAMES).
 */
export function findLockfile(path: string): string {
  const p = resolvePath(path);
  if (!existsSync(p)) throw new PhonehomeError('ELOCKFILE', `Nothing at ${p}.`);
  if (statSync(p).isDirectory()) {
    for (const n of Object.keys(LOCKFILE_NAMES)) if (existsSync(join(p, n))) return join(p, n);
    if (existsSync(join(p, 'bun.lockb')))
      throw new PhonehomeError(
        'ELOCKFILE',
        `${p} has only Bun's binary lockfile (bun.lockb), which phonehome cannot read.`,
        BUN_BINARY,
      );
    throw new PhonehomeError(
      'ELOCKFILE',
      `${p} has no lockfile (${Object.keys(LOCKFILE_NAMES).join(', ')}).`,
    );
  }
  if (basename(p) === 'bun.lockb')
    throw new PhonehomeError(
      'ELOCKFILE',
      `${p} is Bun's binary lockfile, which phonehome cannot read.`,
      BUN_BINARY,
    );
  return p;
}

/**
 * pnpm's, Yarn's or Bun's lockfile as an npm lockfile, with the project's package.json reduced to
 * what the lockfile resolves (workspace and link dependencies are not packages to fetch).
 */
/**
 * What a lockfile does not keep, from the registry the user's npm configuration names: for Yarn
 * Berry, the tarball's integrity (Berry keeps a checksum of its own zip); for Yarn classic, the
 * platform fields of optional packages (npm skips those of other systems). Manifests only, no
 * tarball; at most 16 at once.
 */
async function fromRegistry(
  converted: { lock: LockJson; format: LockFormat; registryIntegrity: string[] },
  npmConfig: NpmConfig,
  signal?: AbortSignal,
): Promise<void> {
  const packages = converted.lock.packages ?? {};
  const wanted = Object.entries(packages).filter(
    ([location, e]) =>
      location !== '' &&
      (converted.registryIntegrity.includes(location) ||
        (converted.format === 'yarn-classic' && e.optional === true && !e.os && !e.cpu)),
  );
  if (!wanted.length) return;
  const { default: pacote } = await import('pacote');
  let next = 0;
  const worker = async () => {
    while (next < wanted.length) {
      signal?.throwIfAborted();
      const [location, e] = wanted[next++] as [string, Record<string, unknown>];
      const name =
        typeof e.name === 'string'
          ? e.name
          : location.slice(location.lastIndexOf('node_modules/') + 'node_modules/'.length);
      let m: Record<string, unknown>;
      try {
        m = (await pacote.manifest(`${name}@${String(e.version)}`, {
          ...pacoteOpts({ npmConfig }),
          Arborist,
        })) as unknown as Record<string, unknown>;
      } catch (err) {
        const mapped = specError(`${name}@${String(e.version)}`, err);
        throw new PhonehomeError(mapped.code, mapped.message, { cause: err });
      }
      const dist = (m.dist ?? {}) as Record<string, unknown>;
      if (converted.registryIntegrity.includes(location)) {
        const integrity = typeof m._integrity === 'string' ? m._integrity : dist.integrity;
        if (typeof integrity === 'string') e.integrity = integrity;
      }
      for (const k of ['os', 'cpu', 'libc'])
        if (Array.isArray(m[k]) && e[k] === undefined) e[k] = m[k];
    }
  };
  await Promise.all(Array.from({ length: Math.min(16, wanted.length) }, worker));
}

function fromOtherFormat(
  lockfile: string,
  projectJson: string,
  npmConfig: NpmConfig,
): {
  lock: LockJson;
  pkg: Record<string, unknown>;
  format: LockFormat;
  registryIntegrity: string[];
  sources: string[];
} {
  if (!existsSync(projectJson))
    throw new PhonehomeError(
      'ELOCKFILE',
      `${lockfile} has no package.json beside it; a ${basename(lockfile)} is read with its project's package.json.`,
      { fix: 'Point at the project folder that holds both.' },
    );
  let pkg: Record<string, unknown>;
  try {
    pkg = JSON.parse(readFileSync(projectJson, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new PhonehomeError(
      'ELOCKFILE',
      `${projectJson} is not valid JSON: ${(e as Error).message}`,
    );
  }
  const graph = readGraph(lockfile, pkg);
  const { lock, format, registryIntegrity, sources } = npmLockFrom(graph, pkg, npmConfig, lockfile);
  const kept = (section: string, names: Map<string, string>) => {
    const declared = pkg[section];
    if (!declared || typeof declared !== 'object') return {};
    return {
      [section]: Object.fromEntries(
        Object.entries(declared as Record<string, string>).filter(([n]) => names.has(n)),
      ),
    };
  };
  const reduced = {
    name: pkg.name ?? 'project',
    version: pkg.version ?? '0.0.0',
    ...kept('dependencies', graph.root.prod),
    ...kept('devDependencies', graph.root.dev),
    ...kept('optionalDependencies', graph.root.optional),
    ...(graph.workspaces.length ? { workspaces: graph.workspaces.map((w) => w.path) } : {}),
  };
  (lock.packages[''] as Record<string, unknown>) = { ...reduced };
  return { lock: lock as LockJson, pkg: reduced, format, registryIntegrity, sources };
}

interface LockJson {
  lockfileVersion?: number;
  name?: string;
  version?: string;
  packages?: Record<string, Record<string, unknown>>;
}

export function readLockfile(file: string): LockJson {
  const text = readFileSync(file, 'utf8');
  let lock: LockJson;
  try {
    lock = JSON.parse(text) as LockJson;
  } catch (e) {
    const at = /position (\d+)/.exec((e as Error).message);
    const before = text.slice(0, at ? Number(at[1]) : text.length).split('\n');
    throw new PhonehomeError(
      'ELOCKFILE',
      `${file} is not valid JSON (line ${before.length}): ${(e as Error).message}`,
      {
        fix: 'The lockfile is damaged or cut short; regenerate it with `npm install --package-lock-only`.',
      },
    );
  }
  if (!lock || typeof lock !== 'object' || Array.isArray(lock))
    throw new PhonehomeError('ELOCKFILE', `${file} is not a lockfile.`);
  if (lock.lockfileVersion === 1 || (lock.lockfileVersion === undefined && !lock.packages))
    throw new PhonehomeError(
      'ELOCKFILE',
      `${file} is a lockfileVersion 1 file (npm 6); it does not record every package's place in the tree.`,
      { fix: 'Regenerate it with npm 7 or later: `npm install --package-lock-only`.' },
    );
  if (!lock.packages || typeof lock.packages !== 'object' || !lock.packages[''])
    throw new PhonehomeError('ELOCKFILE', `${file} has no "packages" section with a root entry.`);
  return lock;
}

/** A package of the lockfile, as locked, before anything is fetched. */
export interface LockEntry {
  name: string;
  version: string;
  integrity: string | null;
  /** Where the lockfile says the tarball comes from (a registry or tarball URL, file:, git). */
  resolved: string | null;
  location: string;
  /** Names from the project down to this package (`app > a > b`), the shortest way in. */
  path: string[];
  dev: boolean;
  optional: boolean;
  /**
   * Whether npm installs it on the sandbox's platform (Linux, this machine's CPU, glibc), from
   * the lockfile's os, cpu and libc fields: platform packages of other systems are skipped.
   */
  installable: boolean;
  /**
   * What asks for it: each dependency edge into it, as its dependent's package.json writes it
   * (`^1.2.0`, `npm:other@^1`, `latest`), and whether the dependent is the project (or a
   * workspace of it). What a routine update may move it to (`watch`).
   */
  wantedBy?: { spec: string; name: string; direct: boolean }[];
}

/** npm's rule for os/cpu/libc lists: a match, or not excluded by a `!value` entry. */
function allows(list: unknown, value: string): boolean {
  if (!Array.isArray(list) || list.length === 0) return true;
  const items = list.map(String);
  if (items.includes(`!${value}`)) return false;
  const positive = items.filter((x) => !x.startsWith('!'));
  return positive.length === 0 || positive.includes(value);
}

export interface LockTree {
  lockfile: string;
  /** Which package manager wrote it. */
  format: LockFormat;
  /**
   * Packages whose integrity is the registry's, not the lockfile's (Yarn Berry keeps a checksum
   * of its own zip, not of the tarball), by name@version.
   */
  registryIntegrity: string[];
  /** Where tarballs come from when that is not what the lockfile names, in lines. */
  sources: string[];
  project: { name: string; version: string };
  entries: LockEntry[];
  /** Fetch every package as locked (integrity checked) into a staging folder. */
  stage(): Promise<StagedTree>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Read a lockfile's tree without fetching anything (arborist's virtual tree): enough to know every
 * package, its integrity and how it comes in, and to find stored results.
 */
export async function loadLockTree(
  path: string,
  opts: {
    npmConfig?: NpmConfig;
    omit?: OmitKind[];
    signal?: AbortSignal;
    /** Fetch tarball URLs and git repositories that are not the configured registries'. */
    allowRemoteSources?: boolean;
    /** Only what this workspace of a monorepo (by name or folder) brings in. */
    workspace?: string;
  } = {},
): Promise<LockTree> {
  const lockfile = findLockfile(path);
  const format = LOCKFILE_NAMES[basename(lockfile)] ?? 'npm';
  const projectJson = join(dirname(lockfile), 'package.json');
  // Another package manager's lockfile: read into its graph and laid out as an npm lockfile,
  // staged and verified as one from here on (see formats.ts, npm-lock.ts).
  const converted =
    format === 'npm' ? undefined : fromOtherFormat(lockfile, projectJson, opts.npmConfig ?? {});
  if (converted) await fromRegistry(converted, opts.npmConfig ?? {}, opts.signal);
  const lock = converted?.lock ?? readLockfile(lockfile);
  const { work, dir, cleanup } = await stagingDir(opts.signal);
  try {
    await mkdir(dir);
    const rootEntry = lock.packages?.[''] ?? {};
    // The project's own package.json when it is there; else the root entry the lockfile keeps.
    const pkg = converted
      ? { ...converted.pkg }
      : existsSync(projectJson)
        ? (JSON.parse(readFileSync(projectJson, 'utf8')) as Record<string, unknown>)
        : {
            name: lock.name ?? rootEntry.name ?? 'project',
            version: lock.version ?? rootEntry.version ?? '0.0.0',
            ...Object.fromEntries(
              ['dependencies', 'devDependencies', 'optionalDependencies', 'peerDependencies']
                .filter((k) => rootEntry[k])
                .map((k) => [k, rootEntry[k]]),
            ),
          };
    // Only what resolving needs: the project's own scripts never run.
    delete pkg.scripts;
    await writeFile(join(dir, 'package.json'), JSON.stringify(pkg, null, 2));
    // Each workspace's folder with a package.json of what the lockfile says it depends on (its
    // own code and scripts stay out: a workspace is the user's project, not a package to check).
    for (const [location, e] of Object.entries(lock.packages ?? {})) {
      if (location === '' || location.includes('node_modules/') || e.link) continue;
      const folder = resolvePath(dir, location);
      const rel = relativePath(dir, folder);
      if (rel.startsWith('..') || isAbsolute(rel))
        throw new PhonehomeError(
          'ELOCKFILE',
          `${lockfile} names a workspace outside the project: ${location}.`,
        );
      try {
        await mkdir(folder, { recursive: true });
        const manifest = Object.fromEntries(
          [
            'name',
            'version',
            'dependencies',
            'devDependencies',
            'optionalDependencies',
            'peerDependencies',
          ]
            .filter((k) => e[k] !== undefined)
            .map((k) => [k, e[k]]),
        );
        await writeFile(join(folder, 'package.json'), JSON.stringify(manifest, null, 2));
      } catch (e) {
        throw new PhonehomeError(
          'ELOCKFILE',
          `${lockfile} names a workspace at ${location}, where no folder can be: ${(e as Error).message}`,
          { cause: e },
        );
      }
    }
    await writeFile(
      join(
        dir,
        basename(lockfile) === 'npm-shrinkwrap.json' ? 'npm-shrinkwrap.json' : 'package-lock.json',
      ),
      converted ? JSON.stringify(converted.lock, null, 2) : readFileSync(lockfile),
    );
    const arbOpts = {
      ...pacoteOpts(opts.npmConfig ? { npmConfig: opts.npmConfig } : {}),
      path: dir,
      ignoreScripts: true,
      audit: false,
      fund: false,
      // The lockfile already says where every peer dependency is; resolving peers again (npm's
      // default) would move packages a lockfile made with --legacy-peer-deps put elsewhere.
      legacyPeerDeps: true,
    };
    let vroot: ArboristNode;
    try {
      vroot = await new Arborist(arbOpts).loadVirtual();
    } catch (e) {
      throw new PhonehomeError(
        'ELOCKFILE',
        `${lockfile} cannot be read as a tree: ${(e as Error).message}`,
        {
          cause: e,
        },
      );
    }
    // As npm ci: every dependency package.json declares must be in the lockfile, at a version
    // that satisfies it; otherwise npm would resolve afresh, which is not what the lockfile says.
    // A dist-tag (`"x": "latest"`) cannot be judged without the registry; npm ci takes the
    // lockfile's registry version for it, and so does this.
    const isTag = (name: string, spec: string) => {
      try {
        return npa.resolve(name, spec).type === 'tag';
      } catch {
        return false;
      }
    };
    // Only for a package from a registry: a tag never names a file or a URL's tarball.
    const origins = registryOrigins(opts.npmConfig ?? {});
    const fromRegistry = (n: ArboristNode) =>
      !n.resolved || origins.some((o) => n.resolved?.startsWith(o));
    const unmet = [...vroot.edgesOut.values()].filter(
      (e) =>
        !e.valid &&
        e.type !== 'peerOptional' &&
        !(e.to && isTag(e.name, e.spec) && fromRegistry(e.to)),
    );
    if (unmet.length)
      throw new PhonehomeError(
        'ELOCKFILE',
        `${lockfile} and its package.json disagree: ${unmet
          .slice(0, 5)
          .map((e) =>
            e.to
              ? `${e.name} wants ${e.spec}, the lockfile has ${e.to.version}`
              : `${e.name}@${e.spec} is not in the lockfile`,
          )
          .join('; ')}.`,
        {
          fix: 'Bring the lockfile up to date (`npm install --package-lock-only`) and audit again.',
        },
      );
    const omit = new Set(opts.omit ?? []);
    const kept = (n: ArboristNode) =>
      !n.isRoot &&
      !n.isLink &&
      !n.isWorkspace &&
      !(omit.has('dev') && n.dev) &&
      !(omit.has('optional') && n.optional) &&
      !(omit.has('peer') && n.peer);
    const paths = shortestPaths(vroot);
    const projectName = String(pkg.name ?? 'project');
    const only = opts.workspace ? workspaceClosure(vroot, opts.workspace, lockfile) : undefined;
    // Every package the tree fetches (reify fetches the whole lockfile, whatever --workspace
    // keeps to), and those this run checks.
    const everything: LockEntry[] = [...vroot.inventory.values()]
      .filter((n) => !n.isRoot && !n.isLink && !n.isWorkspace)
      .map((n) => ({
        name: n.packageName,
        version: n.version,
        integrity: n.integrity,
        // As the lockfile writes it (a file: path relative to the project), not as arborist resolved
        // it against the staging folder.
        resolved:
          typeof lock.packages?.[n.location]?.resolved === 'string'
            ? String(lock.packages?.[n.location]?.resolved)
            : n.resolved,
        location: n.location,
        path: [projectName, ...(paths.get(n.location) ?? [n.packageName])],
        dev: n.dev,
        optional: n.optional,
        wantedBy: [...n.edgesIn].map((e) => ({
          spec: e.spec,
          name: e.name,
          direct: !e.from || e.from.isRoot || e.from.isWorkspace,
        })),
        installable:
          allows(lock.packages?.[n.location]?.os, 'linux') &&
          allows(lock.packages?.[n.location]?.cpu, process.arch) &&
          allows(lock.packages?.[n.location]?.libc, 'glibc'),
      }));
    const byLocation = new Map([...vroot.inventory.values()].map((n) => [n.location, n]));
    const entries = everything.filter((e) => {
      const n = byLocation.get(e.location) as ArboristNode;
      return kept(n) && (!only || only.has(e.location));
    });
    for (const e of everything)
      if (!e.version)
        throw new PhonehomeError('ELOCKFILE', `${lockfile} has no version for ${e.location}.`);
    // A lockfile of a pull request is the author's: where it sends phonehome to fetch is checked
    // before anything else, for the whole tree (see refusedSources).
    const refuse = () => {
      const refused = refusedSources(
        everything,
        registryOrigins(opts.npmConfig ?? {}),
        dirname(lockfile),
        opts.allowRemoteSources ?? false,
      );
      if (refused.length)
        throw new PhonehomeError(
          'ELOCKFILE_SOURCE',
          `${lockfile} locks ${refused.length} package(s) to places phonehome does not fetch from without your consent: ${refused
            .slice(0, 5)
            .map((r) => `${r.entry.location} (${r.entry.resolved}: ${r.why})`)
            .join('; ')}.`,
        );
    };
    refuse();
    const stage = async (): Promise<StagedTree> => {
      refuse();
      let root: ArboristNode;
      try {
        root = await new Arborist(arbOpts).reify({ omit: [...omit], save: false });
      } catch (e) {
        const mapped = specError(`a package of ${lockfile}`, e);
        throw new PhonehomeError(
          mapped.code,
          `${mapped.message} ${(e as Error).message ?? ''}`.trim(),
          {
            ...(mapped.detail ? { detail: mapped.detail } : {}),
            cause: e,
          },
        );
      }
      // As locked, or not at all: a package.json that disagrees with its lockfile is re-resolved
      // by npm, which is not what the lockfile says.
      const differ = [...root.inventory.values()].filter((n) => {
        const locked = lock.packages?.[n.location];
        return (
          !n.isRoot && locked && typeof locked.version === 'string' && locked.version !== n.version
        );
      });
      if (differ.length)
        throw new PhonehomeError(
          'ELOCKFILE',
          `${lockfile} and its package.json disagree: ${differ
            .slice(0, 5)
            .map(
              (n) =>
                `${n.location} locked ${String(lock.packages?.[n.location]?.version)}, would be ${n.version}`,
            )
            .join('; ')}.`,
          {
            fix: 'Bring the lockfile up to date (`npm install --package-lock-only`) and audit again.',
          },
        );
      // Every package's content as locked: arborist may fetch a registry package by name and
      // version when its locked tarball is gone; a different integrity is then a different
      // tarball than the one locked, which is what tampering looks like.
      const tampered = [...root.inventory.values()].filter((n) => {
        const locked = lock.packages?.[n.location]?.integrity;
        return !n.isRoot && typeof locked === 'string' && n.integrity && n.integrity !== locked;
      });
      if (tampered.length)
        throw new PhonehomeError(
          'ESPEC_CORRUPT',
          `The registry's tarball does not match the lockfile's integrity for ${tampered
            .slice(0, 5)
            .map(
              (n) =>
                `${formatId(n.packageName, n.version)} (locked ${String(lock.packages?.[n.location]?.integrity).slice(0, 20)}…, got ${String(n.integrity).slice(0, 20)}…)`,
            )
            .join(', ')}.`,
          {
            fix: 'Find out why the tarball changed before trusting it; if the lockfile is wrong, regenerate it with `npm install --package-lock-only`.',
          },
        );
      // And the content is the package locked there (an integrity that names another cached
      // tarball would put another package in its place).
      // Read from the unpacked files: arborist's own record of a node is the lockfile's.
      const onDisk = (n: ArboristNode): { name?: string; version?: string } => {
        try {
          return JSON.parse(readFileSync(join(dir, n.location, 'package.json'), 'utf8')) as {
            name?: string;
            version?: string;
          };
        } catch {
          return {};
        }
      };
      const swapped = [...root.inventory.values()]
        .filter((n) => !n.isRoot && !n.isLink)
        .map((n) => ({ n, disk: onDisk(n) }))
        .filter(({ n, disk }) => {
          const locked = lock.packages?.[n.location];
          if (!locked || typeof locked.version !== 'string') return false;
          const name =
            typeof locked.name === 'string'
              ? locked.name
              : n.location.slice(n.location.lastIndexOf('node_modules/') + 'node_modules/'.length);
          return disk.name !== name || disk.version !== locked.version;
        });
      if (swapped.length)
        throw new PhonehomeError(
          'ESPEC_CORRUPT',
          `The content fetched for ${swapped
            .slice(0, 5)
            .map(
              ({ n, disk }) =>
                `${n.location} is ${formatId(String(disk.name), String(disk.version))}`,
            )
            .join(', ')}, not the package the lockfile names there.`,
          {
            fix: "Check the lockfile's integrity values; regenerate it with `npm install --package-lock-only` if it is wrong.",
          },
        );
      const packed = packedOnce(dir, join(work, 'tree.tar'));
      const described = await describeTree(root, dir, registryOrigins(opts.npmConfig ?? {}));
      const byLocation = new Map(entries.map((e) => [e.location, e]));
      const packages: LockedPackage[] = described.map((p) => {
        const e = byLocation.get(p.location);
        return {
          ...p,
          path: e?.path ?? [projectName, p.name],
          dev: e?.dev ?? false,
          optional: e?.optional ?? false,
        };
      });
      return {
        lockfile,
        project: { name: projectName, version: String(pkg.version ?? '0.0.0') },
        dir,
        packages,
        tar: packed,
      };
    };
    const byRegistry = new Set(converted?.registryIntegrity ?? []);
    return {
      lockfile,
      format: converted?.format ?? format,
      sources: converted?.sources ?? [],
      registryIntegrity: [
        ...new Set(
          entries.filter((e) => byRegistry.has(e.location)).map((e) => formatId(e.name, e.version)),
        ),
      ].sort(),
      project: { name: projectName, version: String(pkg.version ?? '0.0.0') },
      entries,
      stage,
      [Symbol.asyncDispose]: cleanup,
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

/** The shortest way from the project to each package, breadth first. */
/** The locations a workspace's dependencies reach (links followed), by its name or folder. */
function workspaceClosure(root: ArboristNode, wanted: string, lockfile: string): Set<string> {
  const workspaces = [...root.inventory.values()].filter((n) => n.isWorkspace);
  const start = workspaces.find((n) => n.packageName === wanted || n.location === wanted);
  if (!start)
    throw new PhonehomeError(
      'EUSAGE',
      `${lockfile} has no workspace named ${wanted}${workspaces.length ? ` (its workspaces: ${workspaces.map((w) => `${w.packageName} in ${w.location}`).join(', ')})` : '; it is not a monorepo'}.`,
      { fix: 'Give --workspace the name or folder of one of its workspaces, or leave it out.' },
    );
  const seen = new Set<string>();
  const todo = [start];
  while (todo.length) {
    const n = todo.pop() as ArboristNode;
    for (const edge of n.edgesOut.values()) {
      const to = edge.to?.isLink && edge.to.target ? edge.to.target : edge.to;
      if (!to || seen.has(to.location)) continue;
      seen.add(to.location);
      todo.push(to);
    }
  }
  return seen;
}

function shortestPaths(root: ArboristNode): Map<string, string[]> {
  const paths = new Map<string, string[]>([[root.location, []]]);
  const queue: ArboristNode[] = [root];
  while (queue.length) {
    const n = queue.shift() as ArboristNode;
    for (const edge of n.edgesOut.values()) {
      // A workspace is reached through its link; its dependencies' paths go through its name.
      const to = edge.to?.isLink && edge.to.target ? edge.to.target : edge.to;
      if (!to || paths.has(to.location)) continue;
      paths.set(to.location, [...(paths.get(n.location) ?? []), to.packageName]);
      queue.push(to);
    }
  }
  return paths;
}

const INTERNAL = INTERNAL_ADDRESSES;

/** The IPv6 forms that carry an IPv4 address (mapped, compatible, NAT64). */
const CARRIES_IPV4 = (() => {
  const block = new BlockList();
  block.addSubnet('::ffff:0:0', 96, 'ipv6');
  block.addSubnet('::', 96, 'ipv6');
  block.addSubnet('64:ff9b::', 96, 'ipv6');
  return block;
})();

/**
 * The IPv4 address an IPv6 literal carries, when it is one of the forms that reach it: mapped
 * (`::ffff:a.b.c.d`), compatible (`::a.b.c.d`), or NAT64 (`64:ff9b::a.b.c.d`).
 */
function embeddedIpv4(ipv6: string): string | undefined {
  if (!CARRIES_IPV4.check(ipv6, 'ipv6')) return undefined;
  // The last 32 bits, whichever way the literal wrote them.
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(ipv6)?.[1];
  if (dotted) return dotted;
  const groups = ipv6.split(':');
  const lo = Number.parseInt(groups.pop() || '0', 16);
  const hi = Number.parseInt(groups.pop() || '0', 16);
  return [hi >> 8, hi & 255, lo >> 8, lo & 255].join('.');
}

/** An address literal in INTERNAL (or an IPv6 form of an internal IPv4 address), or localhost. */
function internalAddress(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  const family = isIP(h);
  if (family === 4) return INTERNAL.check(h, 'ipv4');
  if (family !== 6) return false;
  const v4 = embeddedIpv4(h);
  return v4 !== undefined
    ? isIP(v4) === 4 && INTERNAL.check(v4, 'ipv4')
    : INTERNAL.check(h, 'ipv6');
}

/**
 * Where a lockfile may send phonehome, which fetches on the host: the registries the user's npm
 * configuration names, and `file:` paths inside the project. A tarball URL or git repository
 * elsewhere needs `allowRemote`; an internal address (loopback, link-local such as a cloud
 * metadata service, private ranges) is never fetched unless it is a configured registry.
 */
export function refusedSources(
  entries: readonly LockEntry[],
  registries: readonly string[],
  projectDir: string,
  allowRemote: boolean,
): { entry: LockEntry; why: string }[] {
  const out: { entry: LockEntry; why: string }[] = [];
  for (const entry of entries) {
    const r = entry.resolved;
    if (!r) continue;
    if (r.startsWith('file:')) {
      const spec = r.slice('file:'.length);
      // As npm reads a file: spec: `~` is the home folder, `/` the root, and percent escapes are
      // decoded; none of those is a path inside the project, whatever it looks like here.
      if (/^(~|\/\/|%)/.test(spec) || spec.includes('%') || isAbsolute(spec)) {
        out.push({ entry, why: 'a file outside the project' });
        continue;
      }
      const path = resolvePath(projectDir, spec);
      const rel = relativePath(projectDir, path);
      if (rel.startsWith('..') || isAbsolute(rel))
        out.push({ entry, why: 'a file outside the project' });
      continue;
    }
    let url: URL;
    try {
      url = new URL(r.replace(/^git\+/, ''));
    } catch {
      out.push({ entry, why: 'not a URL phonehome can check' });
      continue;
    }
    const base = `${url.origin}${url.pathname}`;
    // A registry serves tarballs; a git repository on a registry's host is still git, run here.
    const git = /^git[+:]/.test(r);
    if (!git && registries.some((reg) => base.startsWith(reg.endsWith('/') ? reg : `${reg}/`)))
      continue;
    if (url.protocol === 'file:') {
      if (!allowRemote) out.push({ entry, why: 'a git repository outside the registries' });
      continue;
    }
    if (internalAddress(url.hostname)) out.push({ entry, why: 'an internal address' });
    else if (!allowRemote)
      out.push({
        entry,
        why: r.startsWith('git')
          ? 'a git repository outside the registries'
          : 'a tarball URL outside the registries',
      });
  }
  return out;
}

/**
 * The staged tree as tar streams, packed once into a file of the staging folder (removed with
 * it) and read from there by every sandbox that asks: an audit's shards each packed the whole
 * tree again, seconds of the host's CPU apiece for a tree of a thousand packages. Packing starts
 * as soon as the tree is verified, while the host reads it (describeTree).
 */
function packedOnce(dir: string, file: string): () => Readable {
  // Started at once: the host reads the tree's files for what they could do meanwhile.
  const written = pipeline(
    tar.c({ cwd: dir, portable: true, follow: false }, ['.']) as unknown as Readable,
    createWriteStream(file),
  ).then(() => file);
  // A stage that fails meanwhile removes the folder: the error is the stage's, not this one's.
  written.catch(() => undefined);
  return () => {
    const ready = written;
    return Readable.from(
      (async function* () {
        for await (const chunk of createReadStream(await ready)) yield chunk as Buffer;
      })(),
    );
  };
}
