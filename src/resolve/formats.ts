/**
 * Lockfiles of pnpm, Yarn (classic and Berry) and Bun, read without fetching anything and without
 * running their package manager, into one graph (package → the package each of its dependencies
 * resolves to), which npmLockFrom (npm-lock.ts) lays out as an npm lockfile (lockfileVersion 3).
 * The rest of phonehome then stages, verifies and runs that tree as it does an npm project's:
 * every package at its locked version, its locked integrity checked.
 *
 * Where each format records less than npm's: pnpm keeps no tarball URL for registry packages
 * (they come from your configured registry); Yarn classic names Yarn's own registry host, which
 * serves the npm registry's tarballs (they come from your configured registry too); Yarn Berry
 * keeps a checksum of its own zip, not the tarball's integrity (the registry's integrity is used,
 * and the report says so: `registryIntegrity`).
 *
 * Parsers: `yaml` (already a dependency) for pnpm-lock.yaml and Berry's yarn.lock, which are
 * YAML; `@yarnpkg/parsers` (Yarn's own, 250 KB, loaded only for a yarn.lock) for Yarn classic's
 * format, which is not; bun.lock is JSON with trailing commas, read here.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join, posix } from 'node:path';
import semver from 'semver';
import { parse as parseYaml } from 'yaml';
import { PhonehomeError } from '../core/errors.js';

export type LockFormat = 'npm' | 'pnpm' | 'yarn-classic' | 'yarn-berry' | 'bun';

/** One package of a lockfile, as locked. */
export interface GraphNode {
  /** The lockfile's own key for it (unique). */
  key: string;
  name: string;
  version: string;
  integrity?: string;
  /** Where the tarball comes from, when the lockfile says (else: the configured registry). */
  resolved?: string;
  /** The integrity is the registry's, not the lockfile's (Yarn Berry). */
  registryIntegrity?: boolean;
  /** Dependency name (as required) → key of the package it resolves to. */
  deps: Map<string, string>;
  /** Names among deps that are optional dependencies. */
  optional: Set<string>;
  os?: string[];
  cpu?: string[];
  libc?: string[];
}

/** Dependency name → key, by kind: what a project or a workspace asks for. */
export interface Importer {
  prod: Map<string, string>;
  dev: Map<string, string>;
  optional: Map<string, string>;
}

/** A workspace of a monorepo: its folder (relative to the project), name and dependencies. */
export interface Workspace extends Importer {
  path: string;
  name: string;
  version: string;
}

export interface LockGraph {
  format: LockFormat;
  /** The project itself (the monorepo's root). */
  root: Importer;
  workspaces: Workspace[];
  nodes: Map<string, GraphNode>;
}

const importer = (): Importer => ({ prod: new Map(), dev: new Map(), optional: new Map() });

/**
 * What a project (or workspace) asks for, section by section of its manifest (or importer):
 * `keyOf` says which lockfile entry a dependency resolves to, or nothing for one that is no
 * package to fetch (a workspace).
 */
function importerFrom(
  manifest: Record<string, unknown>,
  keyOf: (dep: string, spec: unknown) => string | undefined,
): Importer {
  const into = importer();
  for (const [section, map] of [
    ['dependencies', into.prod],
    ['devDependencies', into.dev],
    ['optionalDependencies', into.optional],
  ] as const)
    for (const [dep, spec] of Object.entries(asRecord(manifest[section]))) {
      const k = keyOf(dep, spec);
      if (k) map.set(dep, k);
    }
  return into;
}

/** Every key an importer and its packages reach, so that a key the lockfile lacks is found. */
function walk(
  file: string,
  importers: Importer[],
  nodeOf: (key: string) => GraphNode | undefined,
  regenerate: string,
  strict: boolean,
): void {
  const todo = importers.flatMap((i) => [
    ...i.prod.values(),
    ...i.dev.values(),
    ...i.optional.values(),
  ]);
  const seen = new Set<string>();
  while (todo.length) {
    const k = todo.pop() as string;
    if (seen.has(k)) continue;
    seen.add(k);
    const n = nodeOf(k);
    if (n) todo.push(...n.deps.values());
    else if (strict)
      fail(
        file,
        `names ${k} but has no entry for it; the lockfile is cut short or edited`,
        `Regenerate it with \`${regenerate}\`.`,
      );
  }
}

function readManifest(file: string): Record<string, unknown> | undefined {
  try {
    return asRecord(JSON.parse(readFileSync(file, 'utf8')));
  } catch {
    return undefined;
  }
}

/** A workspace's name and version from its package.json, when the folder is there. */
function workspaceManifest(projectDir: string, path: string): { name: string; version: string } {
  try {
    const pkg = JSON.parse(readFileSync(join(projectDir, path, 'package.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    return { name: String(pkg.name ?? path), version: String(pkg.version ?? '0.0.0') };
  } catch {
    return { name: path.split('/').pop() ?? path, version: '0.0.0' };
  }
}

/**
 * The folders a package.json's `workspaces` names (an array, or `{ packages: [...] }`): plain
 * folders and `dir/*` patterns, as npm, Yarn and Bun write them.
 */
export function workspaceFolders(projectDir: string, pkg: Record<string, unknown>): string[] {
  const raw = Array.isArray(pkg.workspaces) ? pkg.workspaces : asRecord(pkg.workspaces).packages;
  const out: string[] = [];
  for (const pattern of Array.isArray(raw) ? raw.map(String) : []) {
    const clean = pattern.replace(/^\.\//, '').replace(/\/$/, '');
    // Nothing outside the project is listed or read, whatever the pattern says.
    if (!WORKSPACE_PATH.test(clean.replace(/\/\*\*?$/, '')) && clean !== '*') continue;
    if (clean.endsWith('/*') || clean.endsWith('/**')) {
      const base = clean.replace(/\/\*\*?$/, '');
      let names: string[] = [];
      try {
        names = readdirSync(join(projectDir, base)).sort();
      } catch {
        continue;
      }
      for (const n of names)
        if (existsSync(join(projectDir, base, n, 'package.json'))) out.push(`${base}/${n}`);
    } else if (!clean.includes('*')) {
      if (existsSync(join(projectDir, clean, 'package.json'))) out.push(clean);
    }
  }
  return out;
}

/** The lockfile names phonehome reads, in the order a project folder is searched. */
export const LOCKFILE_NAMES: Record<string, LockFormat> = {
  'npm-shrinkwrap.json': 'npm',
  'package-lock.json': 'npm',
  'pnpm-lock.yaml': 'pnpm',
  'yarn.lock': 'yarn-classic',
  'bun.lock': 'bun',
};

/** What precedes a pnpm peer suffix (`1.0.0(react@18.0.0)` → `1.0.0`), in linear time. */
const beforeParen = (s: string) => {
  const i = s.indexOf('(');
  return i < 0 ? s : s.slice(0, i);
};

/** Bounds of what a lockfile may hold: past them it is refused, not read for minutes. */
const MAX_LOCKFILE_BYTES = 64 * 1024 * 1024;
const MAX_KEY_CHARS = 2048;

/**
 * A workspace folder as a lockfile or package.json may name it: relative, inside the project, no
 * `.`/`..` segments, no `node_modules`; checked before anything is read from it.
 */
export const WORKSPACE_PATH =
  /^(?!.*(?:^|\/)\.\.?(?:\/|$))(?!.*(?:^|\/)node_modules(?:\/|$))[A-Za-z0-9._@~-][A-Za-z0-9._@~/-]*$/;

const fail = (file: string, message: string, fix?: string, line?: number): never => {
  throw new PhonehomeError(
    'ELOCKFILE',
    `${file}${line ? `:${line}` : ''}: ${message}`,
    fix ? { fix } : {},
  );
};

/** A merge left half-done: Git's conflict markers at the start of a line. */
function conflictLine(text: string): number | undefined {
  const i = text.split('\n').findIndex((l) => /^(<{7}|={7}|>{7})( |$)/.test(l));
  return i < 0 ? undefined : i + 1;
}

function checkText(file: string, text: string, regenerate: string): void {
  const line = conflictLine(text);
  if (line)
    fail(
      file,
      'has merge conflict markers; it is half of two lockfiles',
      `Resolve the conflict (\`${regenerate}\` rewrites the lockfile from package.json) and run again.`,
      line,
    );
}

const asRecord = (v: unknown): Record<string, unknown> =>
  v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
const asArray = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const asStrings = (v: unknown): string[] | undefined =>
  Array.isArray(v) ? v.map(String) : typeof v === 'string' ? [v] : undefined;

function node(
  key: string,
  name: string,
  version: string,
  extra: Partial<GraphNode> = {},
): GraphNode {
  return { key, name, version, deps: new Map(), optional: new Set(), ...extra };
}

/** `name@version(peer@1)(other@2)` → name and version; `@scope/name@1.0.0` keeps its scope. */
function splitId(id: string): { name: string; version: string } {
  const bare = beforeParen(id.replace(/^\//, ''));
  const at = bare.lastIndexOf('@');
  if (at <= 0) return { name: bare, version: '' };
  return { name: bare.slice(0, at), version: bare.slice(at + 1) };
}

// ---- pnpm ----

/**
 * pnpm-lock.yaml, lockfile versions 6 (pnpm 8) and 9 (pnpm 9 and later): importers (or, in 6,
 * the root's own dependency sections), `packages` (resolution, platform fields) and, in 9,
 * `snapshots` (each package with its peers resolved, and what its dependencies resolve to).
 */
export function readPnpm(file: string, text: string, pkg?: Record<string, unknown>): LockGraph {
  checkText(file, text, 'pnpm install --lockfile-only');
  let doc: Record<string, unknown>;
  try {
    doc = asRecord(parseYaml(text, { maxAliasCount: 1000 }));
  } catch (e) {
    return fail(
      file,
      `is not valid YAML: ${(e as Error).message}`,
      'Regenerate it with `pnpm install --lockfile-only`.',
    );
  }
  const version = String(doc.lockfileVersion ?? '');
  const major = Number.parseInt(version, 10);
  if (major !== 6 && major !== 9)
    fail(
      file,
      `is lockfile version ${version || '(none)'}; phonehome reads pnpm lockfile versions 6 and 9`,
      'Regenerate it with pnpm 8 or later (`pnpm install --lockfile-only`).',
    );
  const packages = asRecord(doc.packages);
  const snapshots = major >= 9 ? asRecord(doc.snapshots) : packages;
  // In 9 every project of the lockfile is an importer (`.` the root); in 6, a single project's
  // dependency sections are at the top.
  const importers = asRecord(doc.importers);
  const projects: [string, Record<string, unknown>][] = Object.keys(importers).length
    ? Object.entries(importers).map(([k, v]) => [k, asRecord(v)])
    : [['.', doc]];
  // Checked before any of their package.json files is read.
  for (const [path] of projects)
    if (path !== '.' && !WORKSPACE_PATH.test(path))
      fail(
        file,
        `names a project folder "${path}", which is not a folder of this project`,
        'Regenerate it with `pnpm install --lockfile-only`; a hand-edited lockfile can name folders outside the project.',
      );
  const workspacePaths = new Set(projects.map(([path]) => path));
  const nodes = new Map<string, GraphNode>();
  /** A snapshot key from a dependency's name and its `version:` value. */
  const keyFor = (name: string, ref: string, from = '.'): string | undefined => {
    if (ref.length > MAX_KEY_CHARS) fail(file, `holds a version of ${ref.length} characters`);
    if (ref.startsWith('link:') || ref.startsWith('workspace:')) {
      // A link to another project of this lockfile is a workspace; any other link is a folder
      // phonehome does not fetch (refused, never skipped: its dependencies would go unchecked).
      const target = posix.normalize(posix.join(from, ref.replace(/^(link|workspace):/, '')));
      if (workspacePaths.has(target) || ref.startsWith('workspace:')) return undefined;
      return fail(
        file,
        `links ${name} to the folder ${ref.slice(5)}, which is not a workspace of this lockfile; phonehome does not check linked folders`,
        'Make it a workspace of the project, or depend on a published version or a tarball.',
      );
    }
    // An alias (`npm:real@1.0.0` in 6, `real@1.0.0` in 9) or a non-registry source keeps its id.
    const bare = beforeParen(ref);
    const id = /^(@[^/]+\/)?[^@/]+@/.test(bare) ? ref : `${name}@${ref}`;
    return major >= 9 ? id : `/${id}`;
  };
  const nodeOf = (key: string): GraphNode | undefined => {
    const existing = nodes.get(key);
    if (existing) return existing;
    const snap = asRecord(snapshots[key]);
    const baseKey = major >= 9 ? beforeParen(key) : key;
    const meta = asRecord(packages[baseKey]);
    // In 9 a package's dependencies are in its snapshot: without one it is not fully locked.
    if (!(key in snapshots) || (!Object.keys(meta).length && major < 9)) return undefined;
    const id = splitId(key);
    const resolution = asRecord(meta.resolution);
    if (typeof resolution.directory === 'string')
      fail(
        file,
        `locks ${key} to the folder ${resolution.directory}; phonehome does not check local folders`,
        'Depend on a published version or a tarball, or make the folder a workspace.',
      );
    for (const k of ['name', 'version'])
      if (meta[k] !== undefined && typeof meta[k] !== 'string')
        fail(file, `has a ${k} of ${key} that is not text`);
    const n = node(key, String(meta.name ?? id.name), String(meta.version ?? id.version), {
      ...(typeof resolution.integrity === 'string' ? { integrity: resolution.integrity } : {}),
      ...(typeof resolution.tarball === 'string' ? { resolved: resolution.tarball } : {}),
      ...(typeof resolution.repo === 'string'
        ? { resolved: `git+${resolution.repo}#${String(resolution.commit ?? '')}` }
        : {}),
      ...(asStrings(meta.os) ? { os: asStrings(meta.os) } : {}),
      ...(asStrings(meta.cpu) ? { cpu: asStrings(meta.cpu) } : {}),
      ...(asStrings(meta.libc) ? { libc: asStrings(meta.libc) } : {}),
    });
    nodes.set(key, n);
    for (const [section, optional] of [
      ['dependencies', false],
      ['optionalDependencies', true],
    ] as const)
      for (const [dep, ref] of Object.entries(asRecord(snap[section]))) {
        const k = keyFor(dep, String(ref));
        if (!k) continue;
        n.deps.set(dep, k);
        if (optional) n.optional.add(dep);
      }
    return n;
  };
  const importerOf = (project: Record<string, unknown>, path: string): Importer =>
    importerFrom(project, (dep, spec) =>
      keyFor(dep, typeof spec === 'string' ? spec : String(asRecord(spec).version ?? ''), path),
    );
  const projectDir = dirname(file);
  // As `pnpm install --frozen-lockfile`: each project's package.json must ask for what its
  // importer locked, with the same specifier.
  const outOfStep: string[] = [];
  for (const [path, project] of projects) {
    const manifest =
      path === '.' && pkg ? pkg : readManifest(join(projectDir, path, 'package.json'));
    if (!manifest) continue;
    for (const section of ['dependencies', 'devDependencies', 'optionalDependencies'] as const)
      for (const [dep, range] of Object.entries(asRecord(manifest[section]))) {
        const locked = asRecord(project[section])[dep];
        const specifier = asRecord(locked).specifier;
        if (locked === undefined)
          outOfStep.push(
            `${dep}@${String(range)} is not in the lockfile${path === '.' ? '' : ` (in ${path})`}`,
          );
        else if (specifier !== undefined && String(specifier) !== String(range))
          outOfStep.push(
            `${dep} is ${String(range)} in package.json, ${String(specifier)} in the lockfile${path === '.' ? '' : ` (in ${path})`}`,
          );
      }
  }
  if (outOfStep.length)
    fail(
      file,
      `and its package.json disagree: ${outOfStep.slice(0, 5).join('; ')}`,
      'Bring the lockfile up to date (`pnpm install --lockfile-only`) and run again.',
    );
  const graph: LockGraph = {
    format: 'pnpm',
    root: importerOf(asRecord(projects.find(([k]) => k === '.')?.[1]), '.'),
    workspaces: projects
      .filter(([k]) => k !== '.')
      .map(([path, project]) => ({
        path,
        ...workspaceManifest(projectDir, path),
        ...importerOf(project, path),
      })),
    nodes,
  };
  walk(file, [graph.root, ...graph.workspaces], nodeOf, 'pnpm install --lockfile-only', true);
  return graph;
}

// ---- Yarn ----

type YarnParse = (text: string) => Record<string, unknown>;
let parseSyml: YarnParse | undefined;
function syml(): YarnParse {
  // Loaded when a yarn.lock is read: most runs never need it.
  parseSyml ??= (createRequire(import.meta.url)('@yarnpkg/parsers') as { parseSyml: YarnParse })
    .parseSyml;
  return parseSyml;
}

/** The entries of a yarn.lock by each descriptor (`name@range`) its key lists. */
function byDescriptor(
  doc: Record<string, unknown>,
): Map<string, { key: string; entry: Record<string, unknown> }> {
  const out = new Map<string, { key: string; entry: Record<string, unknown> }>();
  for (const [key, value] of Object.entries(doc)) {
    if (key === '__metadata') continue;
    for (const d of key.split(',').map((s) => s.trim().replace(/^"|"$/g, '')))
      if (d) out.set(d, { key, entry: asRecord(value) });
  }
  return out;
}

const descriptorName = (d: string) => {
  const at = d.indexOf('@', d.startsWith('@') ? 1 : 0);
  return at < 0 ? d : d.slice(0, at);
};

/**
 * yarn.lock: Yarn classic (`# yarn lockfile v1`) or Berry (`__metadata`, version 6 and later).
 * The project's own dependencies come from its package.json (`pkg`), as Yarn reads them.
 */
export function readYarn(file: string, text: string, pkg: Record<string, unknown>): LockGraph {
  checkText(file, text, 'yarn install');
  // Yarn's own test of a classic lockfile (comment lines, then the header): only then is it read
  // with Yarn's classic parser; a Berry lockfile is YAML, read with alias expansion bounded.
  const classic = /^(#.*(\r?\n))*?#\s+yarn\s+lockfile\s+v1\r?\n/i.test(text);
  let doc: Record<string, unknown>;
  try {
    doc = classic
      ? syml()(text)
      : asRecord(parseYaml(text, { maxAliasCount: 100, uniqueKeys: true }));
  } catch (e) {
    return fail(
      file,
      `cannot be read: ${(e as Error).message}`,
      'Regenerate it with `yarn install`.',
    );
  }
  const berry = !classic && Object.hasOwn(doc, '__metadata');
  if (!classic && !berry)
    fail(
      file,
      'is neither a Yarn classic (v1) nor a Yarn Berry lockfile',
      'Regenerate it with `yarn install`.',
    );
  if (berry) {
    const v = Number(asRecord(doc.__metadata).version);
    if (!(v >= 4 && v <= 10))
      fail(
        file,
        `is a Yarn lockfile of format ${String(asRecord(doc.__metadata).version)}; phonehome reads Yarn classic and Berry formats 4 to 10`,
        'Regenerate it with Yarn 2 or later (`yarn install`), or update phonehome.',
      );
  }
  for (const [key, value] of Object.entries(doc)) {
    if (key.length > MAX_KEY_CHARS) fail(file, `has a key of ${key.length} characters`);
    const entry = asRecord(value);
    for (const k of ['version', 'resolution', 'resolved', 'integrity', 'checksum'])
      if (key !== '__metadata' && entry[k] !== undefined && typeof entry[k] !== 'string')
        fail(file, `has a ${k} of ${key.slice(0, 80)} that is not text`);
  }
  const entries = byDescriptor(doc);
  const nodes = new Map<string, GraphNode>();
  /** What `name` with `range` resolves to (Berry writes ranges as `npm:^1.0.0`). */
  const lookup = (name: string, range: string): string | undefined => {
    const wanted = berry && !/^[a-z]+:/.test(range) ? `npm:${range}` : range;
    const hit = entries.get(`${name}@${wanted}`) ?? entries.get(`${name}@${range}`);
    return hit?.key;
  };
  const nodeOf = (key: string): GraphNode | undefined => {
    const existing = nodes.get(key);
    if (existing) return existing;
    const entry = asRecord(Object.hasOwn(doc, key) ? doc[key] : undefined);
    const first = key.split(',')[0]?.trim().replace(/^"|"$/g, '') ?? key;
    const resolution = typeof entry.resolution === 'string' ? entry.resolution : first;
    const name = descriptorName(resolution);
    if (berry && /@workspace:/.test(resolution)) return undefined;
    // A folder or a link (or, in classic, a file: dependency) is not fetched, and its own
    // dependencies would go unchecked: refused, never skipped.
    if (/@(link|portal|file):/.test(resolution) || /^file:/.test(String(entry.resolved ?? '')))
      fail(
        file,
        `locks ${name} to a local folder (${resolution.slice(name.length + 1)}); phonehome does not check local folders`,
        'Depend on a published version or a tarball, or make the folder a workspace.',
      );
    const version = String(entry.version ?? '');
    const n = node(key, name, version, {
      ...(!berry && typeof entry.integrity === 'string' ? { integrity: entry.integrity } : {}),
      ...(!berry && typeof entry.integrity !== 'string' && typeof entry.resolved === 'string'
        ? sha1FromUrl(entry.resolved)
        : {}),
      ...(!berry && typeof entry.resolved === 'string' ? { resolved: entry.resolved } : {}),
      ...(berry ? berryExtras(resolution, entry) : {}),
    });
    nodes.set(key, n);
    for (const [section, optional] of [
      ['dependencies', false],
      ['optionalDependencies', true],
    ] as const)
      for (const [dep, range] of Object.entries(asRecord(entry[section]))) {
        // Berry adds node-gyp to every package that builds native code; npm does not.
        if (berry && dep === 'node-gyp' && range === 'npm:latest') continue;
        const k = lookup(dep, String(range));
        // Yarn resolves what its lockfile lacks afresh, which phonehome would never see.
        if (!k)
          return fail(
            file,
            `has no entry for ${dep}@${String(range)}, which ${name} depends on; the lockfile is cut short or edited`,
            'Regenerate it with `yarn install`.',
          );
        n.deps.set(dep, k);
        if (optional) n.optional.add(dep);
      }
    for (const [dep, meta] of Object.entries(asRecord(entry.dependenciesMeta)))
      if (asRecord(meta).optional === true || asRecord(meta).optional === 'true')
        n.optional.add(dep);
    return n;
  };
  const missing: string[] = [];
  const importerOf = (manifest: Record<string, unknown>, where: string): Importer =>
    importerFrom(manifest, (dep, spec) => {
      const range = String(spec);
      if (/^workspace:/.test(range)) return undefined;
      // A dependency on a workspace of the same monorepo is that folder, not a package: when
      // the workspace's version is what it asks for, as Yarn decides.
      const ws = workspaceVersions.get(dep);
      if (!berry && ws !== undefined && semver.satisfies(ws, range)) return undefined;
      const k = lookup(dep, range);
      if (!k) missing.push(`${dep}@${range}${where}`);
      return k;
    });
  const projectDir = dirname(file);
  const folders = workspaceFolders(projectDir, pkg);
  const manifests = folders.map((path) => {
    let m: Record<string, unknown> = {};
    try {
      m = asRecord(JSON.parse(readFileSync(join(projectDir, path, 'package.json'), 'utf8')));
    } catch {
      // named in workspaces but unreadable: no dependencies of its own
    }
    return { path, m };
  });
  const workspaceVersions = new Map(
    manifests.map(({ m }) => [String(m.name ?? ''), String(m.version ?? '0.0.0')]),
  );
  // Berry keeps each workspace's dependencies in its lockfile entry; classic only in package.json.
  const berryWorkspace = (path: string) =>
    Object.entries(doc).find(([k]) => k.includes(`@workspace:${path}`))?.[1];
  const graph: LockGraph = {
    format: berry ? 'yarn-berry' : 'yarn-classic',
    root: importerOf(pkg, ''),
    workspaces: manifests.map(({ path, m }) => ({
      path,
      name: String(m.name ?? path),
      version: String(m.version ?? '0.0.0'),
      ...importerOf(berry ? { ...m, ...asRecord(berryWorkspace(path)) } : m, ` (in ${path})`),
    })),
    nodes,
  };
  if (missing.length)
    fail(
      file,
      `and its package.json disagree: ${missing.slice(0, 5).join(', ')} ${missing.length === 1 ? 'is' : 'are'} not in the lockfile`,
      'Bring the lockfile up to date (`yarn install`) and run again.',
    );
  walk(file, [graph.root, ...graph.workspaces], nodeOf, 'yarn install', false);
  return graph;
}

/** Yarn classic's `resolved` URL ends in `#<sha1>` of the tarball: an integrity when none is kept. */
function sha1FromUrl(url: string): Partial<GraphNode> {
  const m = /#([0-9a-f]{40})$/.exec(url);
  return m?.[1] ? { integrity: `sha1-${Buffer.from(m[1], 'hex').toString('base64')}` } : {};
}

/** Berry: the source from `resolution`, the platform from `conditions`. */
function berryExtras(resolution: string, entry: Record<string, unknown>): Partial<GraphNode> {
  const out: Partial<GraphNode> = {};
  const source = resolution.slice(descriptorName(resolution).length + 1);
  if (source.startsWith('npm:')) out.registryIntegrity = true;
  else if (/^https?:/.test(source)) out.resolved = source;
  else out.resolved = source;
  const conditions = typeof entry.conditions === 'string' ? entry.conditions : '';
  for (const part of conditions.split('&').map((s) => s.trim())) {
    const m = /^(os|cpu|libc)=(.+)$/.exec(part);
    if (m?.[1] && m[2]) (out as Record<string, string[]>)[m[1]] = [m[2]];
  }
  return out;
}

// ---- Bun ----

/** JSON with trailing commas (bun.lock): the commas before a closing bracket removed, outside strings. */
function parseJsonc(text: string): unknown {
  let out = '';
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (inString) {
      out += c;
      if (c === '\\') out += text[++i] ?? '';
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    if (c === ',') {
      let j = i + 1;
      while (j < text.length && /\s/.test(text[j] as string)) j++;
      if (text[j] === '}' || text[j] === ']') continue;
    }
    out += c;
  }
  return JSON.parse(out);
}

/**
 * bun.lock (text, lockfileVersion 0 to 2): `workspaces[""]` holds the project's dependencies;
 * `packages` maps a path of names (`debug/ms`: ms as debug needs it) to
 * `[name@version, registry, {dependencies, optionalDependencies, os, cpu}, integrity]`; a
 * dependency resolves as Node resolves a module, from the nearest path up.
 */
export function readBun(file: string, text: string, pkg?: Record<string, unknown>): LockGraph {
  checkText(file, text, 'bun install');
  let doc: Record<string, unknown>;
  try {
    doc = asRecord(parseJsonc(text));
  } catch (e) {
    return fail(
      file,
      `is not valid JSON: ${(e as Error).message}`,
      'Regenerate it with `bun install`.',
    );
  }
  const v = Number(doc.lockfileVersion);
  if (!(v >= 0 && v <= 2))
    fail(
      file,
      `is bun lockfile version ${String(doc.lockfileVersion)}; phonehome reads versions 0 to 2`,
      'Update phonehome, or regenerate the lockfile with a Bun it knows.',
    );
  const packages = asRecord(doc.packages);
  const project = asRecord(asRecord(doc.workspaces)['']);
  const nodes = new Map<string, GraphNode>();
  const resolveFrom = (path: string, dep: string): string | undefined => {
    const parts = path ? path.split('/') : [];
    // Scoped names take two segments of the path.
    const segments: string[] = [];
    for (let i = 0; i < parts.length; i++)
      segments.push(
        parts[i]?.startsWith('@') ? `${parts[i]}/${parts[++i] ?? ''}` : (parts[i] as string),
      );
    for (let n = segments.length; n >= 0; n--) {
      const key = [...segments.slice(0, n), dep].join('/');
      if (Object.hasOwn(packages, key)) return key;
    }
    return undefined;
  };
  const nodeOf = (key: string): GraphNode | undefined => {
    const existing = nodes.get(key);
    if (existing) return existing;
    const tuple = Object.hasOwn(packages, key) ? packages[key] : undefined;
    if (!Array.isArray(tuple) || String(tuple[0] ?? '').includes('@workspace:')) return undefined;
    if (
      typeof tuple[0] !== 'string' ||
      key.length > MAX_KEY_CHARS ||
      tuple[0].length > MAX_KEY_CHARS
    )
      return fail(file, `has an entry ${key.slice(0, 80)} that is not a package`);
    if (/@(file|link|portal):/.test(tuple[0]))
      return fail(
        file,
        `locks ${key} to a local folder (${tuple[0]}); phonehome does not check local folders`,
        'Depend on a published version or a tarball, or make the folder a workspace.',
      );
    const { name, version } = splitId(tuple[0]);
    const registry = typeof tuple[1] === 'string' ? tuple[1] : '';
    const meta = asRecord(tuple[2]);
    const integrity = typeof tuple[3] === 'string' ? tuple[3] : undefined;
    const n = node(key, name, version, {
      ...(integrity ? { integrity } : {}),
      ...(registry && /^https?:/.test(registry) && registry.endsWith('.tgz')
        ? { resolved: registry }
        : {}),
      ...(asStrings(meta.os) ? { os: asStrings(meta.os) } : {}),
      ...(asStrings(meta.cpu) ? { cpu: asStrings(meta.cpu) } : {}),
    });
    nodes.set(key, n);
    for (const [section, optional] of [
      ['dependencies', false],
      ['optionalDependencies', true],
    ] as const)
      for (const [dep, range] of Object.entries(asRecord(meta[section]))) {
        const k = resolveFrom(key, dep);
        // Bun resolves what its lockfile lacks afresh, which phonehome would never see; and a
        // nested entry taken out leaves the dependency to a hoisted copy of another version.
        const found = k ? splitId(String(asArray(packages[k])[0] ?? '')).version : undefined;
        const wanted = typeof range === 'string' && semver.validRange(range) ? range : undefined;
        if (!k || (wanted && found && semver.valid(found) && !semver.satisfies(found, wanted)))
          return fail(
            file,
            `has no entry for ${dep}@${String(range)}, which ${key} depends on; the lockfile is cut short or edited`,
            'Regenerate it with `bun install`.',
          );
        n.deps.set(dep, k);
        if (optional) n.optional.add(dep);
      }
    return n;
  };
  const importerOf = (manifest: Record<string, unknown>, path: string): Importer =>
    importerFrom(manifest, (dep, spec) => {
      if (/^workspace:/.test(String(spec))) return undefined;
      // A workspace's own copy (`<workspace name>/<dep>`) first, then the hoisted one.
      const own = `${String(manifest.name ?? '')}/${dep}`;
      const k = Object.hasOwn(packages, own) && path ? own : resolveFrom('', dep);
      if (!k)
        return fail(
          file,
          `names ${dep} for ${path || 'the project'} but has no entry for it`,
          'Regenerate it with `bun install`.',
        );
      return String(asArray(packages[k])[0] ?? '').includes('@workspace:') ? undefined : k;
    });
  const projects = asRecord(doc.workspaces);
  const outOfStep = ['dependencies', 'devDependencies', 'optionalDependencies'].flatMap((section) =>
    Object.entries(asRecord(pkg?.[section]))
      .filter(([dep, range]) => asRecord(project[section])[dep] !== range)
      .map(([dep, range]) =>
        asRecord(project[section])[dep] === undefined
          ? `${dep}@${String(range)} is not in the lockfile`
          : `${dep} is ${String(range)} in package.json, ${String(asRecord(project[section])[dep])} in the lockfile`,
      ),
  );
  if (outOfStep.length)
    fail(
      file,
      `and its package.json disagree: ${outOfStep.slice(0, 5).join('; ')}`,
      'Bring the lockfile up to date (`bun install`) and run again.',
    );
  const graph: LockGraph = {
    format: 'bun',
    root: importerOf(project, ''),
    workspaces: Object.entries(projects)
      .filter(([path]) => {
        if (path !== '' && !WORKSPACE_PATH.test(path))
          fail(
            file,
            `names a workspace folder "${path}", which is not a folder of this project`,
            'Regenerate it with `bun install`.',
          );
        return path !== '';
      })
      .map(([path, m]) => ({
        path,
        name: String(asRecord(m).name ?? path),
        version: String(asRecord(m).version ?? '0.0.0'),
        ...importerOf(asRecord(m), path),
      })),
    nodes,
  };
  walk(file, [graph.root, ...graph.workspaces], nodeOf, 'bun install', false);
  return graph;
}

/** Read a non-npm lockfile into a graph. */
export function readGraph(file: string, pkg: Record<string, unknown>): LockGraph {
  const name = basename(file);
  if (statSync(file).size > MAX_LOCKFILE_BYTES)
    fail(file, `is larger than ${MAX_LOCKFILE_BYTES / 1024 / 1024} MB; phonehome does not read it`);
  const text = readFileSync(file, 'utf8');
  if (name === 'pnpm-lock.yaml') return readPnpm(file, text, pkg);
  if (name === 'yarn.lock') return readYarn(file, text, pkg);
  if (name === 'bun.lock') return readBun(file, text, pkg);
  return fail(file, 'is not a lockfile phonehome reads');
}
