/**
 * `audit`: every package of a lockfile, at its locked version and integrity, with the least work
 * that is still faithful:
 * - the tree is staged once, as locked (arborist, scripts ignored);
 * - packages already in the result store (same integrity, same sandbox) are not run again;
 * - the rest are split into shards, each run in a fresh sandbox behind a fresh gateway, a bounded
 *   number at once; in a shard, only packages with install scripts (or binding.gyp) run them, a
 *   step per package and event, so the step window charges each attempt to its package; every
 *   package is then loaded in a process of its own, one after another through one batch driver
 *   per shard (the step
 *   driver kills whatever outlives a step, so loads in one sandbox cannot overlap; parallelism
 *   comes from sandboxes);
 * - each package's result is stored as soon as its shard ends, so an interrupted audit resumes.
 * The exercise phase is not run in an audit (see docs/audit.md).
 */
import { createHash } from 'node:crypto';
import { cpus, freemem } from 'node:os';
import {
  buildReport,
  worstVerdict,
  type CheckReport,
  type PackageSummary,
  type PhaseResult,
} from '../core/report.js';
import { PhonehomeError } from '../core/errors.js';
import { buildImages } from '../images/build.js';
import { phonehomeVersion } from '../paths.js';
import { evaluate } from '../policy/evaluate.js';
import type { LoadedPolicy } from '../policy/load.js';
import {
  loadLockTree,
  type LockEntry,
  type LockedPackage,
  type OmitKind,
  type StagedTree,
} from '../resolve/lockfile.js';
import { answers, preparePool, type PoolMember } from '../sandbox/pool.js';
import type { SandboxEngine } from '../sandbox/sandbox.js';
import { SANDBOX_RESOLVERS, SANDBOX_WORKDIR } from '../sandbox/topology.js';
import type { ResultStore, RunKey } from '../store/store.js';
import { Claims, keyText } from '../store/claims.js';
import type { StepOutput } from '../agent/step.js';
import { HARNESS_INPUT_VAR } from '../agent/harness.js';
import { harnessNames, type CheckOptions } from '../check/check.js';
import { CHECK_DEFAULTS } from '../check/defaults.js';
import { sandboxVersion, type SandboxProvider } from '../check/stored.js';
import { attribute, phaseAt } from '../core/report.js';
import { boundFindings, summaryEvents, type SummarisedAttempts } from '../core/bounds.js';
import { findBaitLeaks } from '../core/bait.js';
import type { CaptureEvent } from '../core/terms.js';
import {
  HARNESS_SOURCE,
  installSteps,
  parseHarness,
  runSteps,
  startProject,
  type Step,
} from '../run/steps.js';
import { closure, idOf, packageSummary } from '../run/summaries.js';
import { knownMaliciousRecords, notRunReport } from '../check/known-malicious.js';

/** As for check (npm config, identity, time limits, log, signal), and what an audit adds. */
export interface AuditOptions extends Pick<
  CheckOptions,
  | 'npmConfig'
  | 'as'
  | 'tlsIntercept'
  | 'installTimeoutMs'
  | 'importTimeoutMs'
  | 'settleMs'
  | 'log'
  | 'signal'
> {
  policy: LoadedPolicy;
  /** Fetch tarball URLs and git repositories the lockfile names outside the registries. */
  allowRemoteSources?: boolean;
  store?: ResultStore;
  noCache?: boolean;
  /** Run versions a known-malicious record names too (they are flagged either way). */
  runKnownMalicious?: boolean;
  omit?: OmitKind[];
  /** Only what this workspace of a monorepo brings in. */
  workspace?: string;
  /** Sandboxes at once. */
  concurrency?: number;
  /** Packages per sandbox (default: 40, more for large trees, at most 150). */
  shardSize?: number;
  /** Only part `index` (1-based) of `count` parts of the tree (CI jobs that share a store). */
  part?: { index: number; count: number };
  /** Run nothing: the report from the store alone (what is not there is listed as not run). */
  reportOnly?: boolean;
  onProgress?: (p: AuditProgress) => void;
  /**
   * An engine of the pool was given up on. Its connections may hang for ever: the caller ends the
   * process once the report is out rather than wait for them.
   */
  onEngineLost?: (name: string) => void;
}

export interface AuditProgress {
  total: number;
  done: number;
  fromStore: number;
  running: number;
}

export interface AuditPackage {
  id: string;
  /**
   * checked: run now or taken from the store; not-installed: npm would not install it here (an
   * optional dependency for another platform); not-run: it should have run and did not;
   * known-malicious: a record of the imported set names it, so it was flagged without a run.
   */
  status: 'checked' | 'not-installed' | 'not-run' | 'known-malicious';
  /** From the project down to the package. */
  path: string[];
  dev: boolean;
  optional: boolean;
  fromStore: boolean;
  installScripts: string[];
  verdict: CheckReport['verdict'];
  report?: CheckReport;
}

export const AUDIT_SCHEMA_VERSION = 1;

export interface AuditReport {
  schemaVersion: number;
  kind: 'audit';
  lockfile: string;
  /** Which package manager wrote the lockfile: npm, pnpm, yarn-classic, yarn-berry, bun. */
  lockfileFormat?: string;
  /**
   * Packages whose integrity came from the registry, not the lockfile (Yarn Berry's lockfile
   * keeps a checksum of Yarn's own zip of the package, not the tarball's integrity).
   */
  registryIntegrity?: string[];
  /** Where tarballs came from when that is not what the lockfile names (see LockTree.sources). */
  sources?: string[];
  project: { name: string; version: string };
  /** This report covers one part of the tree (`audit --shard K/N`). */
  part?: { index: number; count: number };
  summary: {
    /** Distinct name@version in the lockfile (after --omit). */
    packages: number;
    checked: number;
    /** Optional dependencies npm would not install on this platform. */
    notInstalled: number;
    /** Packages that should have run and did not (never silent: the verdict is at least warn). */
    notRun: number;
    /** Versions a known-malicious record names, flagged without a run (unless run on request). */
    knownMalicious?: number;
    fromStore: number;
    withInstallScripts: number;
    withEgress: number;
    findings: Record<string, number>;
    /** Attempts seen in a shard that no process could be tied to (see docs/audit.md). */
    unattributed: number;
    /** Bait secrets in such attempts: a theft by some package of the shard. */
    unattributedLeaks: string[];
  };
  packages: AuditPackage[];
  verdict: CheckReport['verdict'];
  policy: { sources: string[]; hash: string };
}

/** Sandboxes at once: one per core, as memory allows (about 1.5 GB each), at most four. */
export function defaultConcurrency(): number {
  const byMemory = Math.floor(freemem() / (1.5 * 1024 ** 3));
  return Math.max(1, Math.min(4, cpus().length, byMemory));
}

/**
 * `sandbox` is asked for only when something has to run (never with `reportOnly`); several are
 * one pool of engines (src/sandbox/pool.ts).
 */
export async function audit(
  sandbox: SandboxProvider | SandboxProvider[],
  path: string,
  opts: AuditOptions,
): Promise<AuditReport> {
  const log = opts.log ?? (() => undefined);
  const o = { ...CHECK_DEFAULTS, ...opts };
  await using tree = await loadLockTree(path, {
    ...(opts.npmConfig ? { npmConfig: opts.npmConfig } : {}),
    ...(opts.allowRemoteSources ? { allowRemoteSources: true } : {}),
    ...(opts.omit ? { omit: opts.omit } : {}),
    ...(opts.workspace ? { workspace: opts.workspace } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  const version = `${sandboxVersion({ ...o, ...(opts.as ? { as: opts.as } : {}) })} audit`;
  const judge = { ...opts.policy, resolvers: SANDBOX_RESOLVERS };
  // By location: two copies of one name@version may be two tarballs (a git copy and a registry
  // copy, or a tampered one), and each answers for itself.
  const results = new Map<string, AuditPackage>();
  const entry = (
    p: Pick<LockEntry, 'name' | 'version' | 'path' | 'dev' | 'optional'>,
    report: CheckReport,
    fromStore: boolean,
  ): AuditPackage => ({
    id: idOf(p),
    status: 'checked',
    path: p.path,
    dev: p.dev,
    optional: p.optional,
    fromStore,
    installScripts: report.packages?.find((x) => x.id === idOf(p))?.installScripts ?? [],
    verdict: report.verdict,
    report,
  });
  const missing = new Set<string>();
  const lockedIntegrity = new Map(tree.entries.map((e) => [e.location, e.integrity]));
  let installed: Set<string> | undefined;
  const entries = opts.part
    ? tree.entries.filter(
        (e) =>
          partOf(idOf(e), (opts.part as { count: number }).count) ===
          (opts.part as { index: number }).index,
      )
    : tree.entries;
  for (const p of entries) {
    // A package npm would not install on this platform is listed as such, not run.
    // Before the platform test: a record needs no run, and a compromised binary package for
    // another platform is what the developers on that platform install.
    const records = knownMaliciousRecords(judge, p.name, p.version);
    if (records.length && !opts.runKnownMalicious) {
      const report = notRunReport(
        {
          name: p.name,
          version: p.version,
          integrity: p.integrity,
          spec: `${idOf(p)} (${tree.lockfile})`,
        },
        records,
        judge,
      );
      results.set(p.location, { ...entry(p, report, false), status: 'known-malicious' });
      continue;
    }
    if (!p.installable && p.optional) continue;
    const hit =
      !opts.noCache && p.integrity
        ? await opts.store?.find({
            name: p.name,
            version: p.version,
            integrity: p.integrity,
            sandbox: version,
          })
        : undefined;
    if (hit) results.set(p.location, entry(p, evaluate(hit.report, judge), true));
    else missing.add(p.location);
  }
  // Progress counts copies (what runs); the log line counts name@versions (what is reported).
  const considered = entries.filter((e) => e.installable || !e.optional);
  const total = new Set(considered.map(idOf)).size;
  const fromStore = results.size;
  let running = 0;
  const progress = () =>
    opts.onProgress?.({ total: considered.length, done: results.size, fromStore, running });
  const toRun = new Set(entries.filter((e) => missing.has(e.location)).map(idOf)).size;
  log(
    `[audit] ${total} package(s)${opts.part ? ` in part ${opts.part.index}/${opts.part.count}` : ''}: ${total - toRun} from the result store or known, ${opts.reportOnly ? `${toRun} not in it (not run: --report-only)` : `${toRun} to run`}`,
  );
  progress();

  let unattributed = 0;
  const unattributedLeaks: string[] = [];
  // The tree is fetched and the images made ready once, when something has to run.
  let ready:
    | Promise<{
        members: PoolMember[];
        staged: StagedTree;
        refs: { runner: string; gateway: string };
      }>
    | undefined;
  const providers = Array.isArray(sandbox) ? sandbox : [sandbox];
  const prepare = () =>
    (ready ??= (async () => {
      log(`[audit] fetching the locked tree of ${tree.lockfile}`);
      const sandboxes = await Promise.all(providers.map((p) => p()));
      const staged = await tree.stage();
      installed = new Set(staged.packages.map((p) => p.location));
      if (sandboxes.length === 1) {
        const { engine, images } = sandboxes[0] as Awaited<ReturnType<SandboxProvider>>;
        const { refs } = await buildImages(images, { log });
        const slots = Math.max(1, opts.concurrency ?? defaultConcurrency());
        return { members: [{ engine, images, slots }], staged, refs };
      }
      const pool = await preparePool(sandboxes, {
        ...(opts.concurrency ? { concurrency: opts.concurrency } : {}),
        log,
      });
      return { ...pool, staged };
    })());
  const runLocations = async (locations: Set<string>): Promise<void> => {
    if (!locations.size) return;
    const { members, staged, refs } = await prepare();
    const todo = staged.packages.filter((p) => locations.has(p.location));
    // Every shard unpacks the whole tree into its sandbox, so a large tree gets larger shards
    // (three per sandbox): fewer unpacks, at the price of coarser resuming after a Ctrl-C.
    const k0 = members.reduce((n, m) => n + m.slots, 0);
    const size = opts.shardSize ?? Math.min(250, Math.max(40, Math.ceil(todo.length / (k0 * 3))));
    // Packages with install scripts spread over shards, so no sandbox gets all the slow ones.
    const ordered = [
      ...todo.filter((p) => p.installScripts.length),
      ...todo.filter((p) => !p.installScripts.length),
    ];
    // As many shards as a whole number of rounds of the sandboxes: a last shard alone would run
    // while the other slots stand idle (nine shards on two slots: a ninth of the audit on one core).
    const rounds = Math.ceil(ordered.length / size);
    const count = opts.shardSize ? rounds : Math.min(ordered.length, Math.ceil(rounds / k0) * k0);
    const shards: LockedPackage[][] = Array.from({ length: count }, () => []);
    const idsIn = shards.map(() => new Map<string, string | null>());
    // Copies of one name@version from two tarballs never share a sandbox: its steps and report
    // are by name@version, and one copy's conduct must not be charged to the other. Copies of
    // one tarball (the same integrity, at several places of the tree) may: they are one package,
    // each loaded from its own place. (A tree of a thousand packages holds twenty copies of one;
    // each in a sandbox of its own cost a sandbox start apiece.)
    const clash = (k: number, p: LockedPackage) => {
      const seen = idsIn[k]?.get(idOf(p));
      return seen !== undefined && (seen === null || seen !== p.integrity);
    };
    ordered.forEach((p, i) => {
      let k = i % count;
      for (let tried = 0; clash(k, p); tried++) {
        if (tried >= shards.length) {
          shards.push([]);
          idsIn.push(new Map());
          k = shards.length - 1;
          break;
        }
        k = (k + 1) % shards.length;
      }
      shards[k]?.push(p);
      idsIn[k]?.set(idOf(p), p.integrity);
    });
    // One queue for every engine's slots. A shard whose engine stops answering goes back in it
    // for the others: nothing of it was stored, so nothing runs twice in the store. A worker with
    // an empty queue waits while shards are out, since one may come back.
    const queue = [...shards];
    let out = 0;
    let wake: () => void = () => undefined;
    let changed = new Promise<void>((r) => (wake = r));
    const notify = () => {
      wake();
      changed = new Promise<void>((r) => (wake = r));
    };
    const pooled = members.length > 1;
    // A shard is given to another engine once: a second loss fails the audit rather than give a
    // package that knocks engines out one more try.
    const requeued = new Set<LockedPackage[]>();
    let halted = false;
    const worker = async (m: PoolMember) => {
      for (;;) {
        if (m.failed || halted) return;
        const shard = queue.shift();
        if (!shard) {
          if (!out) return;
          await changed;
          continue;
        }
        out++;
        running += shard.length;
        progress();
        let result: ShardResult;
        // In a pool, an engine that stops answering while a shard runs on it (a remote machine
        // gone, whose connections hang rather than fail) is given up on: its shard is stopped
        // and goes to the others.
        const lost = new AbortController();
        const watch = pooled ? watchEngine(m.engine, lost) : undefined;
        try {
          const signal = opts.signal ? AbortSignal.any([opts.signal, lost.signal]) : lost.signal;
          const shardRun = runShard(m.engine, refs, staged, shard, { ...o, ...opts, signal });
          shardRun.catch(() => undefined);
          result = await (watch ? Promise.race([shardRun, watch.gone]) : shardRun);
        } catch (e) {
          running -= shard.length;
          // `out` counts this shard until it is back in the queue: a worker that finds the queue
          // empty meanwhile waits for it instead of ending.
          const lostEngine =
            pooled && !opts.signal?.aborted && (lost.signal.aborted || !(await answers(m.engine)));
          if (lostEngine) {
            m.failed = (e as Error).message;
            opts.onEngineLost?.(m.engine.name);
          }
          if (lostEngine && !requeued.has(shard)) {
            requeued.add(shard);
            queue.unshift(shard);
            out--;
            log(
              `[engines] ${m.engine.name} stopped answering (${m.failed}): its shard of ${shard.length} package(s) goes to the other engines`,
            );
            notify();
            return;
          }
          out--;
          halted = true;
          notify();
          if (lostEngine)
            throw new PhonehomeError(
              'EDOCKER_UNREACHABLE',
              `A second engine (${m.engine.name}) stopped answering while it ran the same shard of ${shard.length} package(s); it is not given a third.`,
              { cause: e },
            );
          throw e;
        } finally {
          watch?.stop();
        }
        running -= shard.length;
        unattributed += result.unattributed;
        unattributedLeaks.push(...result.unattributedLeaks);
        for (const p of shard) {
          const found = result.reports.get(idOf(p));
          if (!found) continue;
          // Keyed on the lockfile's integrity, which is what the next audit looks up.
          const locked = lockedIntegrity.get(p.location) ?? p.integrity;
          const report = { ...found, subject: { ...found.subject, integrity: locked } };
          await opts.store?.save(report, {
            sandbox: version,
            phonehomeVersion: phonehomeVersion(),
            durationMs: result.ms / shard.length,
          });
          results.set(p.location, entry(p, report, false));
        }
        out--;
        notify();
        progress();
      }
    };
    // Every worker ended (the others stop taking shards once one fails) before the first
    // failure is thrown: nothing goes on running behind an audit that has already failed.
    const ended = await Promise.allSettled(
      members.flatMap((m) =>
        Array.from({ length: Math.max(1, Math.min(m.slots, shards.length)) }, () => worker(m)),
      ),
    );
    const failure = ended.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failure) throw failure.reason;
    if (queue.length)
      throw new PhonehomeError(
        'EDOCKER_UNREACHABLE',
        `Every engine of the pool stopped answering (${members.map((m) => `${m.engine.name}: ${m.failed}`).join('; ')}); ${queue.reduce((n, s) => n + s.length, 0)} package(s) were not run.`,
      );
  };

  if (missing.size && !opts.reportOnly) {
    // Keys another phonehome may be running at the same moment (same store): claimed first.
    await using claims = opts.store && !opts.noCache ? new Claims(opts.store, o) : undefined;
    const byKey = new Map<string, { key: RunKey; entries: LockEntry[] }>();
    const direct = new Set<string>();
    for (const e of entries) {
      if (!missing.has(e.location)) continue;
      if (!claims || !e.integrity) {
        direct.add(e.location);
        continue;
      }
      const key = { name: e.name, version: e.version, integrity: e.integrity, sandbox: version };
      const slot = byKey.get(keyText(key)) ?? { key, entries: [] };
      slot.entries.push(e);
      byKey.set(keyText(key), slot);
    }
    const locationsOf = (keys: RunKey[]) =>
      new Set(keys.flatMap((k) => byKey.get(keyText(k))?.entries.map((e) => e.location) ?? []));
    const stored = (k: RunKey, hit: { report: CheckReport }) => {
      for (const e of byKey.get(keyText(k))?.entries ?? [])
        results.set(e.location, entry(e, evaluate(hit.report, judge), true));
      progress();
    };
    const taken = claims
      ? await claims.take([...byKey.values()].map((v) => v.key))
      : { mine: [], others: [] };
    // Another process may have stored a result and let its claim go between the first look and
    // this claim: looked up again, so it does not run twice.
    let mine: RunKey[] = [];
    for (const k of taken.mine) {
      const hit = await opts.store?.find(k);
      if (hit) {
        stored(k, hit);
        await claims?.release([k]);
      } else mine.push(k);
    }
    let others = taken.others;
    let locations = new Set([...direct, ...locationsOf(mine)]);
    for (;;) {
      await runLocations(locations);
      if (claims && mine.length) await claims.release(mine);
      if (!claims || !others.length) break;
      log(
        `[audit] ${others.length} package(s) are being run by another phonehome on this store: waiting for their results`,
      );
      const next = await claims.await(others, stored);
      mine = next.run;
      others = next.waiting;
      locations = locationsOf(mine);
      if (!mine.length && !others.length) break;
    }
  }

  // One line per name@version, none dropped. Of its copies, the worst result speaks for all; a
  // copy without a result makes the line not-run unless another copy failed.
  const packages: AuditPackage[] = [];
  const copies = new Map<string, LockEntry[]>();
  for (const e of entries) {
    const list = copies.get(idOf(e));
    if (list) list.push(e);
    else copies.set(idOf(e), [e]);
  }
  const rank = { pass: 0, warn: 1, fail: 2 } as const;
  for (const [id, list] of copies) {
    const skippedCopy = (e: LockEntry) =>
      e.optional && (!e.installable || (installed !== undefined && !installed.has(e.location)));
    const done = list
      .map((e) => results.get(e.location))
      .filter((r): r is AuditPackage => r !== undefined)
      .sort((a, b) => rank[b.verdict] - rank[a.verdict]);
    const unrun = list.filter((e) => !results.has(e.location) && !skippedCopy(e));
    const worstDone = done[0];
    if (worstDone && (worstDone.verdict === 'fail' || !unrun.length)) packages.push(worstDone);
    else {
      const e = unrun[0] ?? (list[0] as LockEntry);
      const skipped = !unrun.length;
      packages.push({
        id,
        status: skipped ? 'not-installed' : 'not-run',
        path: e.path,
        dev: e.dev,
        optional: e.optional,
        fromStore: false,
        installScripts: [],
        verdict: skipped ? 'pass' : 'warn',
      });
    }
  }
  const findings: Record<string, number> = {};
  for (const p of packages)
    for (const f of p.report?.findings ?? [])
      findings[f.severity] = (findings[f.severity] ?? 0) + 1;
  const worst = worstVerdict(packages.map((p) => p.verdict));
  return {
    schemaVersion: AUDIT_SCHEMA_VERSION,
    kind: 'audit',
    lockfile: tree.lockfile,
    lockfileFormat: tree.format,
    ...(tree.registryIntegrity.length ? { registryIntegrity: tree.registryIntegrity } : {}),
    ...(tree.sources.length ? { sources: tree.sources } : {}),
    project: tree.project,
    ...(opts.part ? { part: opts.part } : {}),
    summary: {
      packages: packages.length,
      checked: packages.filter((p) => p.status === 'checked').length,
      notInstalled: packages.filter((p) => p.status === 'not-installed').length,
      notRun: packages.filter((p) => p.status === 'not-run').length,
      knownMalicious: packages.filter((p) => p.status === 'known-malicious').length,
      fromStore: packages.filter((p) => p.fromStore).length,
      withInstallScripts: packages.filter((p) => p.installScripts.length).length,
      withEgress: packages.filter((p) => (p.report?.events.length ?? 0) > 0).length,
      findings,
      unattributed,
      unattributedLeaks,
    },
    packages,
    verdict: unattributedLeaks.length
      ? 'fail'
      : unattributed > 0 && worst === 'pass'
        ? 'warn'
        : worst,
    policy: { sources: opts.policy.policy.sources, hash: opts.policy.policy.hash },
  };
}

/** Poll an engine while a shard runs on it: `gone` rejects (and `lost` aborts) after two misses. */
function watchEngine(
  engine: SandboxEngine,
  lost: AbortController,
): { gone: Promise<never>; stop: () => void } {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const gone = new Promise<never>((_, reject) => {
    let misses = 0;
    const tick = async () => {
      if (stopped) return;
      misses = (await answers(engine, 10_000)) ? 0 : misses + 1;
      if (stopped) return;
      if (misses >= 2) {
        const e = new PhonehomeError(
          'EDOCKER_UNREACHABLE',
          `The engine ${engine.name} has not answered for a minute.`,
        );
        lost.abort(e);
        reject(e);
      } else timer = setTimeout(() => void tick(), ENGINE_POLL_MS);
    };
    timer = setTimeout(() => void tick(), ENGINE_POLL_MS);
  });
  gone.catch(() => undefined);
  return {
    gone,
    stop: () => {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

/** How often an engine of a pool is asked whether it still answers while it runs a shard. */
const ENGINE_POLL_MS = 25_000;

interface ShardResult {
  reports: Map<string, CheckReport>;
  unattributed: number;
  /** Bait secrets seen in attempts no process could be tied to. */
  unattributedLeaks: string[];
  ms: number;
}

/**
 * One sandbox: each of the shard's packages that has install scripts runs them (a step per event),
 * then each package loaded in a step of its own; every attempt is charged to the package of the
 * step (and window) it happened in.
 */
async function runShard(
  engine: SandboxEngine,
  refs: { runner: string; gateway: string },
  staged: StagedTree,
  shard: LockedPackage[],
  o: AuditOptions & typeof CHECK_DEFAULTS,
): Promise<ShardResult> {
  const started = performance.now();
  await using run = engine.newRun();
  const topo = await startProject(run, refs, staged.tar(), o.as, o);
  const identity = topo.identity;
  const batch = (steps: Step[]) =>
    runSteps(topo, steps, { settleMs: o.settleMs, ...(o.signal ? { signal: o.signal } : {}) });
  // A bundled package's scripts run with its bundler; when the bundler is not in this shard, the
  // step is charged to the bundled package that is.
  const inShard = new Set(shard.map(idOf));
  const installs = await batch(
    installSteps(shard, o.installTimeoutMs, (owner, scripted) =>
      inShard.has(owner) ? owner : idOf(scripted[0] as LockedPackage),
    ),
  );
  // Each package's install steps (one per event it has a script for), in order.
  const installOf = new Map<string, StepOutput[]>();
  installs.windows.forEach((w, i) => {
    const out = installs.outputs[i];
    if (out) installOf.set(w.package, [...(installOf.get(w.package) ?? []), out]);
  });

  // Load each package in a process of its own; require() first, import() when the package cannot
  // be required.
  const target = (p: LockedPackage) =>
    p.location === `node_modules/${p.name}` ? p.name : `${SANDBOX_WORKDIR}/${p.location}`;
  const load = (p: LockedPackage, mode: 'require' | 'import'): Step => ({
    label: `${mode} of ${idOf(p)}`,
    phase: 'import',
    package: idOf(p),
    cmd: 'node',
    args: ['--input-type=module', '-e', HARNESS_SOURCE, mode],
    env: { [HARNESS_INPUT_VAR]: JSON.stringify({ mode, name: target(p) }) },
    harness: true,
    timeoutMs: o.importTimeoutMs,
    own: [p.location],
  });
  const requires = await batch(shard.map((p) => load(p, 'require')));
  const retry = shard.filter((p, i) => {
    const out = requires.outputs[i];
    const err = out && parseHarness(out)?.loadError;
    return err && /REQUIRE_ESM|REQUIRE_ASYNC|PATH_NOT_EXPORTED/.test(err) && target(p) === p.name;
  });
  const imports = retry.length ? await batch(retry.map((p) => load(p, 'import'))) : undefined;
  const loaded = new Map<string, { out: StepOutput; mode: string }>();
  shard.forEach((p, i) => {
    const out = requires.outputs[i];
    if (out) loaded.set(idOf(p), { out, mode: 'require' });
  });
  retry.forEach((p, i) => {
    const out = imports?.outputs[i];
    if (out) loaded.set(idOf(p), { out, mode: 'import' });
  });
  const windows = [...installs.windows, ...requires.windows, ...(imports?.windows ?? [])];
  const tampering = [...installs.tampering, ...requires.tampering, ...(imports?.tampering ?? [])];
  const conduct = [...installs.conduct, ...requires.conduct, ...(imports?.conduct ?? [])];

  const log = await topo.events();
  // Each attempt to the package of the step it happened in; what no step holds is the shard's.
  const orphans: CaptureEvent[] = [];
  const byPackage = new Map<string, CaptureEvent[]>();
  const summarisedBy = new Map<string, SummarisedAttempts[]>();
  const charge = <T>(into: Map<string, T[]>, item: T, event: CaptureEvent) => {
    const who = attribute(event, windows, '');
    if (who.outside || !who.package || !inShard.has(who.package)) orphans.push(event);
    else {
      const list = into.get(who.package) ?? [];
      list.push(item);
      into.set(who.package, list);
    }
  };
  for (const e of log.events) if (e.kind !== 'observer') charge(byPackage, e, e);
  for (const sum of summaryEvents(log)) charge(summarisedBy, sum, sum.event);
  // What the capture could not keep cannot be told apart by package: every report of the shard
  // carries it.
  const captureFindings = boundFindings(log, (t) => phaseAt(t, windows));
  const summaries = new Map(
    staged.packages.map((p): [string, PackageSummary] => [idOf(p), packageSummary(p)]),
  );
  const reports = new Map<string, CheckReport>();
  for (const p of shard) {
    const id = idOf(p);
    if (reports.has(id)) continue;
    const steps = installOf.get(id) ?? (p.bundledBy ? installOf.get(p.bundledBy) : undefined);
    // The step that ran out of time or failed says how the phase went; else the last.
    const inst = steps?.find((o) => o.timedOut || o.code !== 0) ?? steps?.[steps.length - 1];
    const installPhase: PhaseResult = !p.installScripts.length
      ? { name: 'install', status: 'skipped', durationMs: 0, note: 'no install scripts' }
      : inst && steps?.[0]
        ? {
            name: 'install',
            status: inst.timedOut ? 'timeout' : inst.code === 0 ? 'completed' : 'failed',
            durationMs: Math.round(
              (steps[steps.length - 1] as StepOutput).settledAt - steps[0].start,
            ),
            exitCode: inst.timedOut ? null : inst.code,
            ...(inst.code !== 0 && !inst.timedOut
              ? {
                  note: `install scripts of ${id}: ${inst.error ?? `exit ${inst.code ?? inst.signal}`}`,
                }
              : {}),
          }
        : { name: 'install', status: 'failed', durationMs: 0, note: 'no result could be believed' };
    const l = loaded.get(id);
    const loadError = l ? parseHarness(l.out)?.loadError : undefined;
    const importPhase: PhaseResult = l
      ? {
          name: 'import',
          status: l.out.timedOut ? 'timeout' : 'completed',
          durationMs: Math.round(l.out.settledAt - l.out.start),
          ...(loadError ? { note: `${l.mode}() not possible (${loadError})` } : {}),
        }
      : { name: 'import', status: 'failed', durationMs: 0, note: 'no result could be believed' };
    const report = buildReport({
      subject: {
        name: p.name,
        version: p.version,
        integrity: p.integrity,
        spec: `${id} (${staged.lockfile})`,
      },
      phases: [
        installPhase,
        importPhase,
        { name: 'exercise', status: 'skipped', durationMs: 0, note: 'not run in an audit' },
      ],
      windows: windows.filter((w) => w.package === id),
      events: byPackage.get(id) ?? [],
      summaries: summarisedBy.get(id) ?? [],
      captureFindings,
      processNames: harnessNames(['require', 'import']),
      bait: identity.bait,
      // The shard's results stand or fall together: one forged line casts doubt on every step.
      tampering,
      conduct: conduct.filter((c) => c.package === id),
    });
    report.packages = closure(id, summaries);
    reports.set(id, evaluate(report, { ...o.policy, resolvers: SANDBOX_RESOLVERS }));
  }
  const unattributedLeaks = findBaitLeaks(orphans, identity.bait).map(
    (l) => `${l.bait.label} (${l.encoding}, ${l.channel})`,
  );
  return {
    reports,
    unattributed: orphans.length,
    unattributedLeaks,
    ms: performance.now() - started,
  };
}

/**
 * Which of `count` parts a package falls in (1-based): by a hash of its name@version, so every
 * job of a split audit, on any machine, puts it in the same part, and copies of one name@version
 * stay together.
 */
export function partOf(id: string, count: number): number {
  return (createHash('sha256').update(id).digest().readUInt32BE(0) % count) + 1;
}
