/**
 * `check` with the result store and comparisons: a package whose tarball (integrity) was already
 * checked in the same sandbox is answered from the store and judged again by the current policy;
 * `--against` compares with an earlier version, itself from the store or run.
 */
import { createHash } from 'node:crypto';
import semver from 'semver';
import { diffReports } from '../core/compare.js';
import { PhonehomeError } from '../core/errors.js';
import type { CheckReport } from '../core/report.js';
import { imageRefs, resolveVersions } from '../images/inputs.js';
import { phonehomeVersion } from '../paths.js';
import { evaluate, judgeChanges } from '../policy/evaluate.js';
import { loadPolicy } from '../policy/load.js';
import { resolveSubject } from '../resolve/subject.js';
import { fetchPackument, previousVersion } from '../resolve/versions.js';
import type { ImageStore, SandboxEngine } from '../sandbox/sandbox.js';
import { sandboxSeccompProfile } from '../sandbox/seccomp.js';
import { SANDBOX_RESOLVERS } from '../sandbox/topology.js';
import type { ResultStore, StoredRun } from '../store/store.js';
import { Claims } from '../store/claims.js';
import type { CheckOptions, StagedSubject } from './check.js';
import { CHECK_DEFAULTS } from './defaults.js';

/** The sandbox, set up only when something has to run. */
export type SandboxProvider = () => Promise<{ engine: SandboxEngine; images: ImageStore }>;

export interface StoredCheckOptions extends CheckOptions {
  /** Where results are kept; without one nothing is reused or kept. */
  store?: ResultStore;
  /** Run even when the store has a result for this tarball and sandbox. */
  noCache?: boolean;
  /** A version of the same package to compare with, or `previous`. */
  against?: string;
}

export interface StoredCheckResult {
  report: CheckReport;
  /** The stored run that answered, when the package was not run. */
  fromStore?: StoredRun;
  /** How the earlier version was obtained, with --against. */
  baseline?: { version: string; fromStore?: StoredRun };
}

/**
 * What a result depends on besides the package: phonehome's version and the sandbox images
 * (their tags are hashes of every input, the agent programs included).
 */
export function sandboxVersion(opts: CheckOptions = {}): string {
  const refs = imageRefs(resolveVersions());
  const tag = (ref: string) => ref.slice(ref.lastIndexOf(':') + 1);
  // How it ran matters as much as where: a shorter timeout or settle window sees less.
  const o = { ...CHECK_DEFAULTS, ...opts };
  const how = createHash('sha256')
    .update(
      JSON.stringify([
        o.installTimeoutMs,
        o.importTimeoutMs,
        o.exerciseTimeoutMs,
        o.binTimeoutMs,
        o.settleMs,
        opts.as ?? 'laptop',
        opts.tlsIntercept ?? true,
        sandboxSeccompProfile().sha256,
      ]),
    )
    .digest('hex')
    .slice(0, 12);
  return `phonehome@${phonehomeVersion()} runner:${tag(refs.runner)} gateway:${tag(refs.gateway)} options:${how}`;
}

export async function checkStored(
  sandbox: SandboxProvider,
  spec: string,
  opts: StoredCheckOptions = {},
): Promise<StoredCheckResult> {
  const policy = opts.policy ?? loadPolicy();
  const o = { ...opts, policy };
  if (opts.against && opts.against !== 'previous' && !semver.valid(opts.against))
    throw new PhonehomeError(
      'EUSAGE',
      `--against wants a version of the same package (1.2.3) or "previous", not "${opts.against}".`,
    );
  const subject = await one(sandbox, spec, o);
  if (!opts.against) return subject;
  const { name, version } = subject.report.subject;
  let base = opts.against;
  if (base === 'previous') {
    const packument = await fetchPackument(name, opts.npmConfig);
    const prev = previousVersion(packument, version);
    if (!prev)
      throw new PhonehomeError('ESPEC_NOT_FOUND', `${name} has no version before ${version}.`, {
        fix: 'Name the version to compare with: --against <version>.',
      });
    base = prev;
  }
  if (base === version)
    throw new PhonehomeError('EUSAGE', `--against ${base} is the version being checked.`);
  if (semver.valid(version) && semver.gt(base, version))
    throw new PhonehomeError(
      'EUSAGE',
      `--against ${base} is newer than ${name}@${version}; compare with an earlier version (a downgrade: phonehome diff ${name}@${version} ${name}@${base}).`,
    );
  opts.log?.(`[check] comparing ${name}@${version} with ${name}@${base}`);
  const baseline = await one(sandbox, `${name}@${base}`, o);
  if (baseline.report.subject.name !== name)
    throw new PhonehomeError(
      'EUSAGE',
      `--against resolved to ${baseline.report.subject.name}, not ${name}.`,
    );
  return compared(subject, baseline, policy);
}

/** The subject judged against an earlier version of it (what the change brings). */
function compared(
  subject: StoredCheckResult,
  baseline: StoredCheckResult,
  policy: NonNullable<CheckOptions['policy']>,
): StoredCheckResult {
  const diff = diffReports(baseline.report, subject.report);
  return {
    report: judgeChanges(subject.report, diff, policy.policy),
    ...(subject.fromStore ? { fromStore: subject.fromStore } : {}),
    baseline: {
      version: baseline.report.subject.version,
      ...(baseline.fromStore ? { fromStore: baseline.fromStore } : {}),
    },
  };
}

/**
 * A package exactly as a lockfile pins it (its resolved tarball and integrity, and the sub-tree
 * the lockfile gives it): found in the store by that integrity, staged only when it must run.
 */
export interface LockedSubject {
  name: string;
  version: string;
  integrity: string | null;
  /** How the report names it (`name@version (lockfile)`). */
  spec: string;
  stage(): Promise<StagedSubject>;
}

/** check of a locked package, from the store when it can be, against a locked base version. */
export async function checkLocked(
  sandbox: SandboxProvider,
  subject: LockedSubject,
  base: LockedSubject | undefined,
  opts: StoredCheckOptions = {},
): Promise<StoredCheckResult> {
  const policy = opts.policy ?? loadPolicy();
  const o = { ...opts, policy };
  const head = await one(sandbox, subject, o);
  if (!base) return head;
  opts.log?.(
    `[check] comparing ${subject.name}@${subject.version} with ${base.name}@${base.version}`,
  );
  return compared(head, await one(sandbox, base, o), policy);
}

/** One package: from the store when it has this tarball in this sandbox, else a run (kept). */
async function one(
  sandbox: SandboxProvider,
  what: string | LockedSubject,
  opts: StoredCheckOptions & { policy: NonNullable<CheckOptions['policy']> },
): Promise<StoredCheckResult> {
  const store = opts.store;
  const version = sandboxVersion(opts);
  const spec = typeof what === 'string' ? what : what.spec;
  const served = (hit: { run: StoredRun; report: CheckReport }, name: string, v: string) => {
    opts.log?.(
      `[check] ${name}@${v}: served from the result store (run ${hit.run.id} of ${hit.run.createdAt}); --no-cache runs it again`,
    );
    const { comparison: _, ...plain } = hit.report;
    const report = evaluate(
      { ...plain, subject: { ...plain.subject, spec } },
      { ...opts.policy, resolvers: SANDBOX_RESOLVERS },
    );
    return { report, fromStore: hit.run };
  };
  // Claimed while it runs, so another phonehome on the same store waits for this result.
  await using claims = store && !opts.noCache ? new Claims(store, opts) : undefined;
  if (store && claims) {
    const subject =
      typeof what === 'string'
        ? await resolveSubject(what, { ...(opts.npmConfig ? { npmConfig: opts.npmConfig } : {}) })
        : what.integrity
          ? { name: what.name, version: what.version, integrity: what.integrity }
          : undefined;
    if (subject) {
      const key = { ...subject, sandbox: version };
      const hit = await store.find(key);
      if (hit) return served(hit, subject.name, subject.version);
      const { mine, others } = await claims.take([key]);
      // Stored by another between the look and the claim: served, not run twice.
      const late = mine.length ? await store.find(key) : undefined;
      if (late) {
        await claims.release(mine);
        return served(late, subject.name, subject.version);
      }
      if (others.length) {
        opts.log?.(
          `[check] ${subject.name}@${subject.version}: another phonehome on this store is running it; waiting for its result`,
        );
        let found: { run: StoredRun; report: CheckReport } | undefined;
        await claims.await(others, (_, h) => (found = h));
        if (found) return served(found, subject.name, subject.version);
      }
    }
  }
  const started = performance.now();
  const [{ engine, images }, { check, checkStaged }] = await Promise.all([
    sandbox(),
    import('./check.js'),
  ]);
  let report: CheckReport;
  if (typeof what === 'string') report = await check(engine, images, what, opts);
  else {
    const staged: StagedSubject & Partial<AsyncDisposable> = await what.stage();
    try {
      report = await checkStaged(engine, images, staged, opts);
    } finally {
      // A subject staged on its own (not from a locked tree, which removes its own folder).
      await staged[Symbol.asyncDispose]?.();
    }
  }
  await store?.save(report, {
    sandbox: version,
    phonehomeVersion: phonehomeVersion(),
    durationMs: performance.now() - started,
  });
  return { report };
}
