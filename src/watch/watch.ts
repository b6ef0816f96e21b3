/**
 * `watch`: the versions a routine update of the project could bring, checked as they are
 * published. Each pass reads the lockfile (any format audit reads), follows the packument of every
 * registry package a newer version could replace (see PackumentFollower: conditional requests, a
 * back-off), and checks each new version the dependents' ranges admit against the version the
 * lockfile pins (check --against: a new install-time destination fails). Results go to the
 * result store (runs, as any check) and what was reported is kept there too, so a restart does
 * not check or report a version again.
 */
import npa from 'npm-package-arg';
import pickManifest from 'npm-pick-manifest';
import semver from 'semver';
import { checkLocked, type LockedSubject, type SandboxProvider } from '../check/stored.js';
import type { CheckOptions } from '../check/check.js';
import { knownMaliciousRecords, notRunReport } from '../check/known-malicious.js';
import { ExitCode, isPhonehomeError, PhonehomeError } from '../core/errors.js';
import { formatId } from '../core/package-id.js';
import { buildReport, compareFindings, verdictOf, type CheckReport } from '../core/report.js';
import { evaluate, type EvaluationContext } from '../policy/evaluate.js';
import { withMalicious, type LoadedPolicy } from '../policy/load.js';
import { loadLockTree, type LockEntry, type OmitKind } from '../resolve/lockfile.js';
import type { NpmConfig } from '../resolve/npmrc.js';
import { registryOrigins } from '../resolve/npmrc.js';
import { stage } from '../resolve/stage.js';
import { SANDBOX_RESOLVERS } from '../sandbox/topology.js';
import type { ResultStore, WatchedPackument } from '../store/store.js';
import { FETCH_CONCURRENCY, PackumentFollower, type FetchCounts } from './registry.js';

export const WATCH_SCHEMA_VERSION = 1;

export interface WatchOptions extends Pick<
  CheckOptions,
  'as' | 'tlsIntercept' | 'installTimeoutMs' | 'importTimeoutMs' | 'exerciseTimeoutMs' | 'settleMs'
> {
  sandbox: SandboxProvider;
  npmConfig: NpmConfig;
  /** The policy files; the store's known-malicious set is read again each pass. */
  policy: LoadedPolicy;
  store: ResultStore;
  noCache?: boolean;
  omit?: OmitKind[];
  workspace?: string;
  runKnownMalicious?: boolean;
  /** New versions checked per package per pass, newest first (default 3). */
  maxVersions?: number;
  log?: (line: string) => void;
  signal?: AbortSignal;
}

/** A package of the lockfile a routine update could move, and what may move it. */
export interface Followed {
  name: string;
  /** The version the lockfile pins. */
  version: string;
  integrity: string | null;
  /** What its dependents ask for (each edge's spec), and whether the project asks directly. */
  specs: string[];
  direct: boolean;
  /**
   * Whether npm installs it here (Linux): an optional package for another platform is followed
   * for known-malicious records only (they need no run), not run.
   */
  installable: boolean;
}

export interface WatchResult {
  name: string;
  from: string;
  to: string;
  direct: boolean;
  verdict: CheckReport['verdict'];
  /** Destinations the new version reached that the pinned one did not: `phase destination`. */
  newDestinations: string[];
  /** When the registry says the version was published. */
  publishedAt?: string;
  /** When the verdict was reached (now, or when it was first reported). */
  verdictAt: string;
  /** From publication to the verdict. */
  sincePublishedMs?: number;
  /** The version was reported by an earlier pass (or an earlier watch). */
  reportedBefore: boolean;
  /** Answered from the result store, not run. */
  fromStore: boolean;
  knownMalicious?: string[];
  report: CheckReport;
}

export interface PassSummary {
  lockfile: string;
  followed: number;
  fetch: FetchCounts;
  results: WatchResult[];
  /** Versions the environment kept from being checked (Docker, the registry): unknown, not passed. */
  errors: { name: string; from: string; to: string; message: string }[];
}

/** The lockfile's registry packages a newer version could replace, one per name@version. */
export function followedPackages(entries: LockEntry[], config: NpmConfig): Followed[] {
  const origins = registryOrigins(config);
  const byId = new Map<string, Followed>();
  for (const e of entries) {
    // Registry packages only: a git, file or tarball-URL dependency has no versions to follow.
    if (e.resolved && !origins.some((o) => e.resolved?.startsWith(o))) continue;
    if (!semver.valid(e.version)) continue;
    const id = formatId(e.name, e.version);
    const f = byId.get(id) ?? {
      name: e.name,
      version: e.version,
      integrity: e.integrity,
      specs: [],
      direct: false,
      installable: false,
    };
    if (e.installable || !e.optional) f.installable = true;
    for (const w of e.wantedBy ?? []) {
      f.specs.push(w.spec);
      if (w.direct) f.direct = true;
    }
    byId.set(id, f);
  }
  return [...byId.values()].filter((f) => f.specs.length > 0);
}

/**
 * A dependency spec as npm reads it, compiled once: whether a version satisfies it (a range or
 * version, an alias's range `npm:other@^1`, or a dist-tag: the version the tag points at).
 * Anything else (git, a file, a URL) is never moved by an update: nothing satisfies it.
 */
export function compileSpec(
  name: string,
  spec: string,
): (version: string, distTags?: Record<string, string>) => boolean {
  let parsed: ReturnType<typeof npa.resolve>;
  try {
    parsed = npa.resolve(name, spec);
  } catch {
    return () => false;
  }
  const target = parsed.type === 'alias' ? parsed.subSpec : parsed;
  if (!target) return () => false;
  if (target.type === 'tag') {
    const tag = target.fetchSpec ?? '';
    return (v, tags = {}) => tags[tag] === v;
  }
  if (target.type !== 'range' && target.type !== 'version') return () => false;
  const range = semver.validRange(target.fetchSpec ?? '*');
  if (!range) return () => false;
  return (v) => semver.satisfies(v, range);
}

export function specAdmits(
  name: string,
  spec: string,
  version: string,
  distTags: Record<string, string> = {},
): boolean {
  return compileSpec(name, spec)(version, distTags);
}

/**
 * The versions newer than the pinned one that a spec asking for it admits (npm may give each
 * dependent its own copy, so one spec is enough), newest first; deprecated versions only when
 * nothing else is newer (npm's own preference).
 */
export function candidates(f: Followed, p: WatchedPackument): string[] {
  const specs = f.specs.map((s) => compileSpec(f.name, s));
  const newer = Object.keys(p.versions)
    .filter((v) => semver.valid(v) && semver.gt(v, f.version))
    .filter((v) => specs.some((admits) => admits(v, p.distTags)))
    .sort(semver.rcompare);
  const live = newer.filter((v) => !p.versions[v]?.deprecated);
  return live.length ? live : newer;
}

/**
 * What npm itself would install for each spec now (npm-pick-manifest: the `latest` tag when it
 * satisfies the range, else the newest that does, versions whose `engines` exclude this Node
 * passed over), when it is not the pinned version. Always checked: whatever else is published
 * around it, and wherever a dist-tag is moved.
 */
export function npmPicks(
  f: Followed,
  p: WatchedPackument,
  nodeVersion = process.version,
): string[] {
  const doc = {
    name: f.name,
    'dist-tags': p.distTags ?? {},
    versions: Object.fromEntries(
      Object.entries(p.versions).map(([v, m]) => [
        v,
        {
          name: f.name,
          version: v,
          ...(m.deprecated ? { deprecated: 'deprecated' } : {}),
          ...(m.engines ? { engines: { node: m.engines } } : {}),
        },
      ]),
    ),
  };
  const picks = new Set<string>();
  for (const spec of f.specs) {
    let parsed: ReturnType<typeof npa.resolve>;
    try {
      parsed = npa.resolve(f.name, spec);
    } catch {
      continue;
    }
    const target = parsed.type === 'alias' ? parsed.subSpec : parsed;
    if (!target || !['range', 'version', 'tag'].includes(target.type)) continue;
    try {
      // Whatever npm picks, newer or not (a `latest` tag moved down, a prerelease tagged latest
      // under `*`), unless it is what the lockfile has.
      const v = pickManifest(doc, target.fetchSpec ?? 'latest', { nodeVersion }).version;
      if (semver.valid(v) && v !== f.version) picks.add(v);
    } catch {
      // Nothing satisfies the spec (ETARGET): nothing for an update to bring.
    }
  }
  return [...picks];
}

/** A version that could not be checked for a reason of its own: a high finding, never a pass. */
function uncheckable(
  subject: CheckReport['subject'],
  e: PhonehomeError,
  judge: EvaluationContext,
): CheckReport {
  const report = buildReport({
    subject,
    phases: (['install', 'import', 'exercise'] as const).map((name) => ({
      name,
      status: 'failed' as const,
      durationMs: 0,
      note: `${e.code}: ${e.message}`,
    })),
    windows: [],
    events: [],
  });
  const judged = evaluate(report, judge);
  const findings = [
    ...judged.findings,
    {
      id: 'check-failed',
      severity: 'high' as const,
      package: formatId(subject.name, subject.version),
      message: `${formatId(subject.name, subject.version)} could not be checked (${e.code}: ${e.message}); a version phonehome cannot check is not a pass`,
      rule: 'watch',
    },
  ].sort(compareFindings);
  return { ...judged, findings, verdict: verdictOf(findings) };
}

/** At most this many versions of one package per pass, however many appeared. */
export const NEW_VERSIONS_CAP = 25;

/**
 * Which admitted versions a pass checks: the newest `newest` (what an update would bring), and
 * every version that appeared since the previous pass, so a bad release cannot hide behind
 * honest ones published right after it; at most NEW_VERSIONS_CAP, newest first. Without an
 * earlier pass (the first watch of a project) only the newest.
 */
export function toCheck(
  admitted: readonly string[],
  seenBefore: ReadonlySet<string> | undefined,
  newest: number,
  pending: (version: string) => boolean = () => false,
  always: readonly string[] = [],
): string[] {
  const fresh = admitted.filter((v) => (seenBefore && !seenBefore.has(v)) || pending(v));
  const picked = new Set([...admitted.slice(0, newest), ...fresh]);
  const rest = admitted
    .filter((v) => picked.has(v) && !always.includes(v))
    .slice(0, Math.max(newest, NEW_VERSIONS_CAP));
  // What npm would install comes first, whatever the cap.
  return [...always, ...rest];
}

/** A registry version as a subject: found in the store by its integrity, staged when it runs. */
function registrySubject(
  name: string,
  version: string,
  integrity: string | null,
  o: { npmConfig: NpmConfig; signal?: AbortSignal },
): LockedSubject {
  const id = formatId(name, version);
  return {
    name,
    version,
    integrity,
    spec: id,
    stage: async () => {
      const staged = await stage(id, {
        npmConfig: o.npmConfig,
        ...(o.signal ? { signal: o.signal } : {}),
      });
      if (integrity && staged.integrity && staged.integrity !== integrity) {
        await staged[Symbol.asyncDispose]();
        throw new PhonehomeError(
          'ESPEC_CORRUPT',
          `The registry's tarball of ${id} (${staged.integrity.slice(0, 20)}…) is not the one its packument names (${integrity.slice(0, 20)}…).`,
          { fix: 'Find out why the tarball changed before trusting it.' },
        );
      }
      return staged;
    },
  };
}

export class Watcher {
  readonly follower: PackumentFollower;
  /** Versions a pass could not check for a reason of the environment: the next pass tries again. */
  private readonly retry = new Set<string>();
  constructor(
    readonly project: string,
    readonly opts: WatchOptions,
  ) {
    this.follower = new PackumentFollower(opts.npmConfig);
  }

  /**
   * One pass. `all`: every candidate is judged and returned, the ones reported before too (from
   * the store: nothing runs again); otherwise only versions not reported before.
   */
  async pass(all: boolean, onResult?: (r: WatchResult) => void): Promise<PassSummary> {
    const o = this.opts;
    const log = o.log ?? (() => undefined);
    await using tree = await loadLockTree(this.project, {
      npmConfig: o.npmConfig,
      ...(o.omit ? { omit: o.omit } : {}),
      ...(o.workspace ? { workspace: o.workspace } : {}),
      ...(o.signal ? { signal: o.signal } : {}),
    });
    const followed = followedPackages(tree.entries, o.npmConfig);
    const names = [...new Set(followed.map((f) => f.name))].sort();
    const counts: FetchCounts = {
      requests: 0,
      notModified: 0,
      changed: 0,
      failed: 0,
      backingOff: 0,
    };
    const packuments = new Map<string, WatchedPackument>();
    // What the previous pass (or watch) had seen of each packument: a version that appeared since
    // is checked whatever else appeared with it (see toCheck).
    const seenBefore = new Map<string, Set<string>>();
    let next = 0;
    const worker = async () => {
      while (next < names.length) {
        const name = names[next++] as string;
        o.signal?.throwIfAborted();
        const registry = this.follower.registryOf(name);
        const last = await o.store.watchedPackument(registry, name);
        if (this.follower.waiting(name)) {
          counts.backingOff++;
          if (last) packuments.set(name, last);
          continue;
        }
        if (last) seenBefore.set(name, new Set(Object.keys(last.versions)));
        counts.requests++;
        const out = await this.follower.fetch(name, last, o.signal);
        if (out.kind === 'changed') {
          counts.changed++;
          await o.store.saveWatchedPackument(registry, name, out.packument);
          packuments.set(name, out.packument);
        } else if (out.kind === 'not-modified') {
          counts.notModified++;
          if (last) packuments.set(name, last);
        } else {
          counts.failed++;
          log(
            `[watch] ${name}: the registry did not answer (${out.status ?? 'no status'}: ${out.message}); asked again after a back-off`,
          );
          if (last) packuments.set(name, last);
        }
      }
    };
    await Promise.all(
      Array.from({ length: Math.min(FETCH_CONCURRENCY, Math.max(1, names.length)) }, worker),
    );
    const results: WatchResult[] = [];
    const errors: PassSummary['errors'] = [];
    // The known-malicious set as the store has it now: one imported while watch runs counts from
    // the next pass, for versions reported before too.
    const policy = await withMalicious(o.policy, o.store);
    const judge = { ...policy, resolvers: SANDBOX_RESOLVERS };
    for (const f of followed) {
      const p = packuments.get(f.name);
      if (!p) continue;
      const admitted = candidates(f, p);
      const picked = toCheck(
        admitted,
        seenBefore.get(f.name),
        o.maxVersions ?? 3,
        (v) => this.retry.has(formatId(f.name, v)),
        npmPicks(f, p),
      );
      if (picked.length < admitted.length && picked.length >= NEW_VERSIONS_CAP)
        log(
          `[watch] ${f.name}: ${admitted.length} newer versions admitted; checking the ${picked.length} newest (the rest are older than what an update would bring)`,
        );
      for (const to of picked) {
        o.signal?.throwIfAborted();
        const meta = p.versions[to] ?? {};
        const reported = await o.store.watchReported(f.name, to, f.version);
        // A version published again with another tarball (registries other than npm's allow it)
        // is a new thing to check.
        const before =
          reported &&
          (!reported.integrity || !meta.integrity || reported.integrity === meta.integrity)
            ? reported
            : undefined;
        if (reported && !before)
          log(
            `[watch] ${formatId(f.name, to)}: its tarball changed since it was reported; checking it again`,
          );
        const records = knownMaliciousRecords(judge, f.name, to);
        // A version reported before is judged again only when a record now names it (no run).
        if (before && !all && !(records.length && before.verdict !== 'fail')) continue;
        if (!f.installable && !records.length) continue;
        const subject = {
          name: f.name,
          version: to,
          integrity: meta.integrity ?? null,
          spec: formatId(f.name, to),
        };
        let report: CheckReport;
        let fromStore = false;
        if (records.length && (!o.runKnownMalicious || !f.installable)) {
          report = notRunReport(subject, records, judge);
        } else {
          if (!before) log(`[watch] checking ${formatId(f.name, to)} against ${f.version}`);
          try {
            const r = await checkLocked(
              o.sandbox,
              registrySubject(f.name, to, meta.integrity ?? null, o),
              registrySubject(f.name, f.version, f.integrity, o),
              {
                policy,
                npmConfig: o.npmConfig,
                store: o.store,
                ...(o.noCache && !before ? { noCache: true } : {}),
                ...(o.as ? { as: o.as } : {}),
                ...(o.tlsIntercept === false ? { tlsIntercept: false } : {}),
                ...(o.installTimeoutMs ? { installTimeoutMs: o.installTimeoutMs } : {}),
                ...(o.importTimeoutMs ? { importTimeoutMs: o.importTimeoutMs } : {}),
                ...(o.exerciseTimeoutMs ? { exerciseTimeoutMs: o.exerciseTimeoutMs } : {}),
                ...(o.settleMs ? { settleMs: o.settleMs } : {}),
                log,
                ...(o.signal ? { signal: o.signal } : {}),
              },
            );
            report = r.report;
            fromStore = !!r.fromStore;
            this.retry.delete(formatId(f.name, to));
          } catch (e) {
            if (o.signal?.aborted) throw e;
            // The environment (Docker, the registry, the store): tried again next pass; in a
            // single pass, listed as not checked while the pass goes on.
            if (!isPhonehomeError(e) || e.exitCode !== ExitCode.usage) {
              const message = e instanceof Error ? e.message : String(e);
              this.retry.add(formatId(f.name, to));
              errors.push({ name: f.name, from: f.version, to, message });
              log(
                `[watch] ${formatId(f.name, to)} could not be checked (${message}); ${all ? 'the pass goes on' : 'trying again next pass'}`,
              );
              continue;
            }
            // The version itself (a corrupt tarball, a tarball that is not the one its
            // packument names, a manifest npm cannot install): never a pass.
            report = uncheckable(subject, e, judge);
          }
        }
        const verdictAt = before?.reportedAt ?? new Date().toISOString();
        const published = meta.time ? Date.parse(meta.time) : NaN;
        const result: WatchResult = {
          name: f.name,
          from: f.version,
          to,
          direct: f.direct,
          verdict: report.verdict,
          newDestinations: (report.comparison?.destinations.added ?? []).map(
            (d) => `${d.phase} ${d.destination}`,
          ),
          ...(meta.time ? { publishedAt: meta.time } : {}),
          verdictAt,
          ...(Number.isFinite(published)
            ? { sincePublishedMs: Math.max(0, Date.parse(verdictAt) - published) }
            : {}),
          reportedBefore: !!before,
          fromStore,
          ...(records.length ? { knownMalicious: records.map((r) => r.id) } : {}),
          report,
        };
        if (!before || before.verdict !== report.verdict)
          await o.store.saveWatchReported({
            name: f.name,
            version: to,
            against: f.version,
            integrity: meta.integrity ?? null,
            verdict: report.verdict,
          });
        results.push(result);
        onResult?.(result);
      }
    }
    return { lockfile: tree.lockfile, followed: followed.length, fetch: counts, results, errors };
  }
}
