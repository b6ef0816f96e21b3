/**
 * `gate`: what a pull request changed in the lockfile, and whether that change brings unexpected
 * egress. Added and changed packages are checked (upgrades against their base version, from the
 * store when it has them); unchanged packages are not run. For an upgrade, egress the base version
 * already had is shown but does not fail the gate: the question is what the change brings.
 */
import { formatId } from '../core/package-id.js';
import type { CheckOptions } from '../check/check.js';
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import semver from 'semver';
import { checkLocked, type LockedSubject, type SandboxProvider } from '../check/stored.js';
import { PhonehomeError } from '../core/errors.js';
import { compareFindings, verdictOf, worstVerdict, type CheckReport } from '../core/report.js';
import type { LoadedPolicy } from '../policy/load.js';
import {
  findLockfile,
  loadLockTree,
  type LockEntry,
  type LockTree,
  type StagedTree,
} from '../resolve/lockfile.js';
import { binNames } from '../resolve/stage.js';
import { LOCKFILE_NAMES } from '../resolve/formats.js';
import { closure, idOf, packageSummary } from '../run/summaries.js';
import type { NpmConfig } from '../resolve/npmrc.js';
import type { ResultStore } from '../store/store.js';
import { knownMaliciousRecords, notRunReport } from '../check/known-malicious.js';
import { SANDBOX_RESOLVERS } from '../sandbox/topology.js';

export type ChangeKind = 'added' | 'upgraded' | 'downgraded';

export interface LockChange {
  name: string;
  kind: ChangeKind;
  from?: string;
  to: string;
  /** How the head tree brings it in. */
  path: string[];
}

export interface LockChanges {
  changed: LockChange[];
  removed: { name: string; version: string }[];
  /**
   * The same name@version locked to another tarball (its integrity changed with no version
   * change): a lockfile edited to point a package at other content.
   */
  retargeted: { name: string; version: string; before: string; after: string; path: string[] }[];
}

/** What changed between two trees, by package name (a name may appear at several versions). */
export function lockChanges(base: LockEntry[], head: LockEntry[]): LockChanges {
  const versions = (entries: LockEntry[]) => {
    const m = new Map<string, Set<string>>();
    for (const e of entries) m.set(e.name, (m.get(e.name) ?? new Set()).add(e.version));
    return m;
  };
  const b = versions(base);
  const h = versions(head);
  const changed: LockChange[] = [];
  const seen = new Set<string>();
  for (const e of head) {
    const key = formatId(e.name, e.version);
    if (seen.has(key) || b.get(e.name)?.has(e.version)) continue;
    seen.add(key);
    const before = [...(b.get(e.name) ?? [])].filter((v) => semver.valid(v)).sort(semver.rcompare);
    if (!before.length) {
      changed.push({ name: e.name, kind: 'added', to: e.version, path: e.path });
      continue;
    }
    // Compared with the closest base version below it (an upgrade), else the lowest above it.
    const lower = before.find((v) => semver.valid(e.version) && semver.lt(v, e.version));
    const from = lower ?? (before[before.length - 1] as string);
    changed.push({
      name: e.name,
      kind: lower ? 'upgraded' : 'downgraded',
      from,
      to: e.version,
      path: e.path,
    });
  }
  // A version replaced by an upgrade or downgrade is part of that change, not a removal.
  const replaced = new Set(changed.flatMap((c) => (c.from ? [formatId(c.name, c.from)] : [])));
  const removed: { name: string; version: string }[] = [];
  for (const [name, vs] of b)
    for (const v of vs)
      if (!h.get(name)?.has(v) && !replaced.has(`${name}@${v}`)) removed.push({ name, version: v });
  // The same name@version locked to other content: another integrity, an integrity dropped (its
  // tarball is then not checked), another source with no integrity to pin it, or two copies of
  // it in the head tree that differ. Each is a package the pull request's author can swap.
  const content = (e: LockEntry) => e.integrity ?? `(no integrity) ${e.resolved ?? ''}`;
  const baseContent = new Map<string, LockEntry>();
  for (const e of base)
    if (!baseContent.has(formatId(e.name, e.version)))
      baseContent.set(formatId(e.name, e.version), e);
  const headFirst = new Map<string, LockEntry>();
  const retargeted: LockChanges['retargeted'] = [];
  const flagged = new Set<string>();
  const flag = (e: LockEntry, before: string, after: string) => {
    const key = formatId(e.name, e.version);
    if (flagged.has(key)) return;
    flagged.add(key);
    retargeted.push({ name: e.name, version: e.version, before, after, path: e.path });
  };
  for (const e of head) {
    // A bundled package comes inside its bundler's tarball (pinned by the bundler's integrity).
    if (!e.integrity && !e.resolved) continue;
    const key = formatId(e.name, e.version);
    const first = headFirst.get(key);
    if (!first) headFirst.set(key, e);
    else if (content(first) !== content(e)) flag(e, content(first), content(e));
    const b = baseContent.get(key);
    if (!b) continue;
    if (b.integrity && e.integrity && b.integrity !== e.integrity)
      flag(e, b.integrity, e.integrity);
    else if (b.integrity && !e.integrity) flag(e, b.integrity, content(e));
    else if (!e.integrity && (b.resolved ?? '') !== (e.resolved ?? ''))
      flag(e, content(b), content(e));
  }
  const order = (x: { name: string }, y: { name: string }) => x.name.localeCompare(y.name);
  return {
    changed: changed.sort(order),
    removed: removed.sort(order),
    retargeted: retargeted.sort(order),
  };
}

/** A lockfile path, a project folder, or a git ref (its package-lock.json next to the cwd). */
export function lockSource(
  ref: string,
  cwd = process.cwd(),
): { label: string; dir: string; uri: string; cleanup: () => void } {
  const p = resolve(cwd, ref);
  if (existsSync(p)) {
    const file = findLockfile(p);
    return {
      label: relative(cwd, file) || file,
      dir: statSync(p).isDirectory() ? p : file,
      uri: relative(cwd, file) || file,
      cleanup: () => undefined,
    };
  }
  try {
    execFileSync('git', ['rev-parse', '--verify', '--quiet', `${ref}^{commit}`], {
      cwd,
      stdio: 'ignore',
    });
  } catch {
    throw new PhonehomeError(
      'EUSAGE',
      `"${ref}" is neither a lockfile, a folder, nor a git ref here.`,
      {
        fix: 'Pass a path to a package-lock.json or project folder, or a commit, branch or tag of this repository.',
      },
    );
  }
  const dir = mkdtempSync(join(tmpdir(), 'phonehome-gate-'));
  try {
    let found: string | undefined;
    for (const name of Object.keys(LOCKFILE_NAMES)) {
      const text = gitShow(`${ref}:./${name}`, cwd);
      if (text === undefined) continue;
      writeFileSync(join(dir, name), text);
      found = name;
      break;
    }
    if (!found)
      throw new PhonehomeError(
        'ELOCKFILE',
        `No lockfile at git ref ${ref} (${Object.keys(LOCKFILE_NAMES).join(', ')} here).`,
        {
          fix: 'Pass --base/--head as a lockfile path or a git ref where the lockfile exists.',
        },
      );
    const pkg = gitShow(`${ref}:./package.json`, cwd);
    if (pkg !== undefined) writeFileSync(join(dir, 'package.json'), pkg);
    // A monorepo's workspaces, as they were at that ref: their package.json files name them and,
    // for Yarn classic, hold their dependencies.
    for (const path of workspaceManifests(ref, cwd)) {
      const text = gitShow(`${ref}:./${path}`, cwd);
      if (text === undefined) continue;
      mkdirSync(join(dir, dirname(path)), { recursive: true });
      writeFileSync(join(dir, path), text);
    }
    return {
      label: ref,
      dir,
      uri: found,
      cleanup: () => rmSync(dir, { recursive: true, force: true }),
    };
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

/**
 * The line where a package's entry starts in a lockfile: npm's `"node_modules/…/<name>": {` with
 * that version; pnpm's `<name>@<version>:` key; Yarn's entry whose key names it and whose
 * version is that one; Bun's `"<name>": ["<name>@<version>"`.
 */
export function entryLine(text: string, name: string, version: string): number | undefined {
  const lines = text.split('\n');
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  // pnpm (9: `name@1.0.0:`, 6: `/name@1.0.0:`, with peers in parentheses) and Bun.
  const keyed = new RegExp(
    `^\\s+(?:'?/?${esc(name)}@${esc(version)}(?:\\(.*\\))?'?:|"[^"]*": \\["${esc(name)}@${esc(version)}")`,
  );
  for (let i = 0; i < lines.length; i++) if (keyed.test(lines[i] as string)) return i + 1;
  // Yarn: a key line naming the package, then its version within a few lines.
  const yarnKey = new RegExp(`^"?${esc(name)}@`);
  for (let i = 0; i < lines.length; i++) {
    if (!yarnKey.test(lines[i] as string)) continue;
    const next = lines.slice(i + 1, i + 4).join('\n');
    if (new RegExp(`^\\s+version:? "?${esc(version)}"?$`, 'm').test(next)) return i + 1;
  }
  const key = `node_modules/${name}":`;
  for (let i = 0; i < lines.length; i++) {
    if (!(lines[i] as string).trimEnd().endsWith(`${key} {`)) continue;
    for (let j = i + 1; j < Math.min(lines.length, i + 8); j++) {
      const l = lines[j] as string;
      if (l.trim().startsWith('}')) break;
      if (l.includes(`"version": "${version}"`)) return i + 1;
    }
  }
  return undefined;
}

/**
 * The package.json files below the project folder at a git ref (not under node_modules, at most
 * four folders down, at most 500): where a monorepo keeps its workspaces.
 */
function workspaceManifests(ref: string, cwd: string): string[] {
  let listing = '';
  try {
    listing = execFileSync('git', ['ls-tree', '-r', '--name-only', '--full-name', ref, '--', '.'], {
      cwd,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch {
    return [];
  }
  const prefix = (() => {
    try {
      return execFileSync('git', ['rev-parse', '--show-prefix'], { cwd, encoding: 'utf8' }).trim();
    } catch {
      return '';
    }
  })();
  return listing
    .split('\n')
    .filter((p) => p.startsWith(prefix))
    .map((p) => p.slice(prefix.length))
    .filter(
      (p) =>
        p.endsWith('/package.json') &&
        !p.split('/').includes('node_modules') &&
        p.split('/').length <= 5 &&
        !p.split('/').some((s) => s === '..' || s === ''),
    )
    .slice(0, 500);
}

function gitShow(spec: string, cwd: string): string | undefined {
  try {
    return execFileSync('git', ['show', spec], {
      cwd,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      maxBuffer: 256 * 1024 * 1024,
    });
  } catch {
    return undefined;
  }
}

/** The merge base of HEAD with the default branch (origin's HEAD, else main or master). */
export function defaultBase(cwd = process.cwd()): string {
  const git = (...args: string[]) => {
    try {
      return execFileSync('git', args, {
        cwd,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      }).trim();
    } catch {
      return undefined;
    }
  };
  const branch =
    git('rev-parse', '--abbrev-ref', 'origin/HEAD') ??
    ['origin/main', 'origin/master', 'main', 'master'].find(
      (b) => git('rev-parse', '--verify', '--quiet', b) !== undefined,
    );
  const base = branch ? git('merge-base', 'HEAD', branch) : undefined;
  if (!base)
    throw new PhonehomeError(
      'EUSAGE',
      'No --base given and no default branch to take the merge base with.',
      {
        fix: 'Pass --base <git-ref or lockfile>, e.g. --base origin/main.',
      },
    );
  return base;
}

export interface GatePackage extends LockChange {
  /** A record of the imported known-malicious set names it: flagged without a run. */
  knownMalicious?: boolean;
  /** Line of the head lockfile where the package's entry starts (for SARIF), when found. */
  line?: number;
  verdict: CheckReport['verdict'];
  report: CheckReport;
  fromStore: boolean;
}

export const GATE_SCHEMA_VERSION = 1;

export interface GateReport {
  schemaVersion: number;
  kind: 'gate';
  base: string;
  head: string;
  /** Packages whose locked tarball changed with no version change: the gate fails on any. */
  retargeted: LockChanges['retargeted'];
  /** Optional packages for other platforms that the change adds; npm does not install them here. */
  notInstalled: string[];
  /** The head lockfile as a path from the working directory (what SARIF results point at). */
  lockfile: string;
  packages: GatePackage[];
  removed: { name: string; version: string }[];
  verdict: CheckReport['verdict'];
  policy: { sources: string[]; hash: string };
}

export interface GateOptions extends Pick<
  CheckOptions,
  'as' | 'tlsIntercept' | 'installTimeoutMs' | 'importTimeoutMs' | 'exerciseTimeoutMs' | 'settleMs'
> {
  npmConfig?: NpmConfig;
  policy: LoadedPolicy;
  /** Fetch tarball URLs and git repositories the lockfile names outside the registries. */
  allowRemoteSources?: boolean;
  store?: ResultStore;
  noCache?: boolean;
  /** Only what this workspace of a monorepo brings in (in both trees). */
  workspace?: string;
  /** Run versions a known-malicious record names too (they are flagged either way). */
  runKnownMalicious?: boolean;
  log?: (line: string) => void;
  signal?: AbortSignal;
}

/** The identity, TLS reading and time limits of the options, without undefined values. */
function limitsOf(o: GateOptions): Partial<CheckOptions> {
  const keys = [
    'as',
    'tlsIntercept',
    'installTimeoutMs',
    'importTimeoutMs',
    'exerciseTimeoutMs',
    'settleMs',
  ] as const;
  return Object.fromEntries(keys.filter((k) => o[k] !== undefined).map((k) => [k, o[k]]));
}

/**
 * For an upgrade, egress the base version already had (and no rule allows) is shown as inherited,
 * not held against the change; new destinations, indicators and bait leaks stand.
 */
function forChange(report: CheckReport, change: LockChange): CheckReport {
  if (change.kind === 'added' || !report.comparison) return report;
  const fresh = new Set(
    report.comparison.destinations.added.map((d) => `${d.phase}\0${d.destination}`),
  );
  const findings = report.findings
    .map((f) =>
      f.id === 'egress-not-allowed' && !fresh.has(`${f.phase}\0${f.destination}`)
        ? {
            ...f,
            severity: 'info' as const,
            message: `${f.message} (already in ${change.name}@${change.from}; not new in this change)`,
          }
        : f,
    )
    .sort(compareFindings);
  return { ...report, findings, verdict: verdictOf(findings) };
}

/**
 * A package of a lockfile as it pins it: staged from the locked tree (its resolved tarball,
 * integrity checked) with the sub-tree the lockfile gives it, and loaded where it sits.
 */
function lockedSubject(
  tree: LockTree,
  staged: () => Promise<StagedTree>,
  entry: LockEntry,
): LockedSubject {
  const id = formatId(entry.name, entry.version);
  const spec = `${id} (${relative(process.cwd(), tree.lockfile) || tree.lockfile})`;
  // A git dependency has no integrity, but its resolved URL names a commit: content-addressed too.
  const integrity =
    entry.integrity ??
    (entry.resolved && /^git\+.*#[0-9a-f]{40}$/.test(entry.resolved) ? entry.resolved : null);
  return {
    name: entry.name,
    version: entry.version,
    integrity,
    spec,
    stage: async () => {
      const t = await staged();
      const summaries = new Map(t.packages.map((p) => [idOf(p), packageSummary(p)]));
      const inClosure = new Set(closure(id, summaries).map((p) => p.id));
      const manifest = (() => {
        try {
          return JSON.parse(readFileSync(join(t.dir, entry.location, 'package.json'), 'utf8')) as {
            bin?: unknown;
          };
        } catch {
          return {};
        }
      })();
      const bins = binNames(manifest.bin, entry.name);
      return {
        name: entry.name,
        version: entry.version,
        integrity,
        spec,
        location: entry.location,
        packages: t.packages.filter((p) => inClosure.has(idOf(p))),
        bins,
        tar: () => t.tar(),
      };
    },
  };
}

/**
 * The package checked is the registry's name@version; the lockfile must name that same tarball,
 * or what would be installed is not what was checked.
 */
function lockedContent(report: CheckReport, locked: string | null): CheckReport {
  const checked = report.subject.integrity;
  if (!locked || !checked || locked === checked) return report;
  const findings = [
    ...report.findings,
    {
      id: 'lockfile-integrity-mismatch',
      severity: 'critical' as const,
      package: formatId(report.subject.name, report.subject.version),
      message: `the lockfile locks ${report.subject.name}@${report.subject.version} to ${locked.slice(0, 24)}…, but the registry's tarball is ${checked.slice(0, 24)}…: what npm would install is not what was checked`,
      rule: 'lockfile',
    },
  ].sort(compareFindings);
  return { ...report, findings, verdict: verdictOf(findings) };
}

export async function gate(
  sandbox: SandboxProvider,
  base: string,
  head: string,
  opts: GateOptions,
): Promise<GateReport> {
  const b = lockSource(base);
  let h: ReturnType<typeof lockSource>;
  try {
    h = lockSource(head);
  } catch (e) {
    b.cleanup();
    throw e;
  }
  const onAbort = () => {
    b.cleanup();
    h.cleanup();
  };
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    // With the signal: on Ctrl-C the process exits at once, and the staging folders go with it.
    const treeOpts = {
      ...(opts.npmConfig ? { npmConfig: opts.npmConfig } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.allowRemoteSources ? { allowRemoteSources: true } : {}),
      ...(opts.workspace ? { workspace: opts.workspace } : {}),
    };
    await using baseTree = await loadLockTree(b.dir, treeOpts);
    await using headTree = await loadLockTree(h.dir, treeOpts);
    for (const t of [baseTree, headTree]) {
      for (const l of t.sources) opts.log?.(`[gate] ${t.lockfile}: tarballs: ${l}`);
      if (t.registryIntegrity.length)
        opts.log?.(
          `[gate] ${t.lockfile}: integrity of ${t.registryIntegrity.length} package(s) from the registry (${t.format} keeps a checksum of its own zip, not the tarball's integrity)`,
        );
    }
    const all = lockChanges(baseTree.entries, headTree.entries);
    // Optional packages for other platforms are listed, not run: npm does not install them here.
    const here = new Set(
      headTree.entries
        .filter((e) => e.installable || !e.optional)
        .map((e) => formatId(e.name, e.version)),
    );
    const changes = {
      ...all,
      changed: all.changed.filter((c) => here.has(formatId(c.name, c.to))),
    };
    const notInstalled = all.changed
      .filter((c) => !here.has(formatId(c.name, c.to)))
      .map((c) => formatId(c.name, c.to));
    const lockText = readFileSync(headTree.lockfile, 'utf8');
    opts.log?.(
      `[gate] ${changes.changed.length} package(s) added or changed, ${changes.removed.length} removed`,
    );
    const packages: GatePackage[] = [];
    // Each tree is fetched once, as locked, and only when a package of it has to run.
    const stageOnce = (tree: LockTree) => {
      let staged: Promise<StagedTree> | undefined;
      return () => (staged ??= tree.stage());
    };
    const headStage = stageOnce(headTree);
    const baseStage = stageOnce(baseTree);
    // A version a known-malicious record names: flagged as the record says, not fetched or run.
    const flagged = (
      c: LockChange,
      entry: LockEntry,
      records: ReturnType<typeof knownMaliciousRecords>,
    ): GatePackage => {
      const report = notRunReport(
        {
          name: c.name,
          version: c.to,
          integrity: entry.integrity,
          spec: `${formatId(c.name, c.to)} (${relative(process.cwd(), headTree.lockfile) || headTree.lockfile})`,
        },
        records,
        { ...opts.policy, resolvers: SANDBOX_RESOLVERS },
      );
      const line = entryLine(lockText, c.name, c.to);
      return {
        ...c,
        ...(line ? { line } : {}),
        verdict: report.verdict,
        report,
        fromStore: false,
        knownMalicious: true,
      };
    };
    for (const c of changes.changed) {
      opts.signal?.throwIfAborted();
      const entry = headTree.entries.find(
        (e) => e.name === c.name && e.version === c.to && (e.installable || !e.optional),
      ) as LockEntry;
      const baseEntry =
        c.from && c.kind === 'upgraded'
          ? baseTree.entries.find((e) => e.name === c.name && e.version === c.from)
          : undefined;
      const records = knownMaliciousRecords(opts.policy, c.name, c.to);
      if (records.length && !opts.runKnownMalicious) {
        packages.push(flagged(c, entry, records));
        opts.log?.(
          `[gate] ${formatId(c.name, c.to)}: known malicious (${records.map((r) => r.id).join(', ')}); not run`,
        );
        continue;
      }
      const r = await checkLocked(
        sandbox,
        lockedSubject(headTree, headStage, entry),
        baseEntry ? lockedSubject(baseTree, baseStage, baseEntry) : undefined,
        {
          ...limitsOf(opts),
          policy: opts.policy,
          ...(opts.npmConfig ? { npmConfig: opts.npmConfig } : {}),
          ...(opts.store ? { store: opts.store } : {}),
          ...(opts.noCache ? { noCache: true } : {}),
          ...(opts.log ? { log: opts.log } : {}),
          ...(opts.signal ? { signal: opts.signal } : {}),
        },
      );
      const report = lockedContent(forChange(r.report, c), entry.integrity);
      const line = entryLine(lockText, c.name, c.to);
      packages.push({
        ...c,
        ...(line ? { line } : {}),
        verdict: report.verdict,
        report,
        fromStore: !!r.fromStore,
      });
    }
    // A package for another platform is not run here, but a record needs no run: the developers
    // on that platform install it.
    for (const c of all.changed.filter((x) => !here.has(formatId(x.name, x.to)))) {
      const records = knownMaliciousRecords(opts.policy, c.name, c.to);
      const entry = headTree.entries.find((e) => e.name === c.name && e.version === c.to);
      if (!records.length || !entry) continue;
      packages.push(flagged(c, entry, records));
    }
    const verdict = all.retargeted.length ? 'fail' : worstVerdict(packages.map((p) => p.verdict));
    return {
      schemaVersion: GATE_SCHEMA_VERSION,
      kind: 'gate',
      base: b.label,
      head: h.label,
      lockfile: h.uri,
      retargeted: all.retargeted,
      notInstalled,
      packages,
      removed: changes.removed,
      verdict,
      policy: { sources: opts.policy.policy.sources, hash: opts.policy.policy.hash },
    };
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    b.cleanup();
    h.cleanup();
  }
}
