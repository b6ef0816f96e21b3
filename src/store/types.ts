/**
 * What every result store offers, whatever keeps it (SQLite on one machine, PostgreSQL for a
 * team): reports keyed by name, version, tarball integrity and sandbox version; claims so that a
 * tarball asked for by two processes at once runs once; the imported known-malicious set and what
 * `watch` has seen. Stored reports are judged again by the caller's current policy.
 */
import type { CheckReport } from '../core/report.js';
import { recordAffects, type MaliciousRecord } from '../intel/osv.js';

export interface StoredRun {
  id: number;
  name: string;
  version: string;
  integrity: string | null;
  sandbox: string;
  policyHash: string | null;
  spec: string;
  verdict: string;
  createdAt: string;
  phonehomeVersion: string | null;
  durationMs: number | null;
}

export interface RunKey {
  name: string;
  version: string;
  integrity: string;
  sandbox: string;
}

export interface SaveMeta {
  sandbox: string;
  phonehomeVersion: string;
  durationMs: number;
}

/** A stored run as `store export` writes it: the run and its report's JSON text. */
export type ExportedRun = Omit<StoredRun, 'id'> & { report: string };

export interface WatchReported {
  name: string;
  version: string;
  against: string;
  integrity: string | null;
  verdict: string;
}

export interface ResultStore {
  readonly kind: 'sqlite' | 'postgres';
  /** Where the store is, fit to print (a URL without its password). */
  readonly location: string;
  /** The schema version the store is at. */
  schema(): Promise<number>;
  save(report: CheckReport, meta: SaveMeta): Promise<number>;
  /** The newest stored report for exactly this tarball in this sandbox. */
  find(key: RunKey): Promise<{ run: StoredRun; report: CheckReport } | undefined>;
  /** Stored runs of a package, newest first. */
  history(name: string, limit?: number): Promise<StoredRun[]>;
  report(id: number): Promise<CheckReport | undefined>;
  /**
   * Replace the imported set of known-malicious records with these (one transaction: a reader sees
   * the old set or the new one).
   */
  replaceMalicious(
    records: Iterable<MaliciousRecord>,
    meta: { source: string; importedAt: string },
  ): Promise<{ records: number; newestModified: string | null }>;
  /** The imported set of known-malicious records, or undefined when none was imported. */
  maliciousSet(): Promise<MaliciousSet | undefined>;
  /** What `watch` last read of a packument: its validators and the versions it listed. */
  watchedPackument(registry: string, name: string): Promise<WatchedPackument | undefined>;
  saveWatchedPackument(registry: string, name: string, p: WatchedPackument): Promise<void>;
  /** Whether `watch` has reported this version, checked against that one. */
  watchReported(
    name: string,
    version: string,
    against: string,
  ): Promise<{ verdict: string; reportedAt: string; integrity: string | null } | undefined>;
  saveWatchReported(r: WatchReported): Promise<void>;
  count(): Promise<number>;
  /**
   * Claim these tarballs for `owner` for `leaseMs` (by the store's clock), or renew its claims:
   * for each key, whether `owner` holds it now. A claim held by another owner is taken only once
   * its lease has run out (its holder crashed or hangs).
   */
  claim(keys: RunKey[], owner: string, leaseMs: number): Promise<boolean[]>;
  /** Give up `owner`'s claims on these keys (a claim of another owner is left alone). */
  release(keys: RunKey[], owner: string): Promise<void>;
  /** Every stored run, oldest first. */
  exportRuns(): AsyncIterable<ExportedRun>;
  /**
   * Keep runs read from an export, in one transaction (all or nothing): each one whose tarball
   * (name, version, integrity, sandbox) the store has no run for. How many were added.
   */
  importRuns(runs: AsyncIterable<ExportedRun>): Promise<number>;
  close(): Promise<void>;
}

/** The imported known-malicious records, read from the store as they are asked for. */
export interface MaliciousSet {
  source: string;
  importedAt: string;
  records: number;
  newestModified: string | null;
  /** Every record of this package. */
  recordsOf(name: string): MaliciousRecord[];
  /** The records that name this version of this package. */
  affecting(name: string, version: string): MaliciousRecord[];
  /** The records that list indicators of compromise (their ids, packages and IOCs). */
  withIocs: Pick<MaliciousRecord, 'id' | 'name' | 'iocs'>[];
}

export interface WatchedPackument {
  etag: string | null;
  lastModified: string | null;
  /** Each version: its tarball's integrity, when it was published, whether it is deprecated. */
  versions: Record<
    string,
    {
      integrity?: string;
      time?: string;
      deprecated?: boolean;
      /** engines.node */ engines?: string;
    }
  >;
  distTags?: Record<string, string>;
  fetchedAt: string;
}

/** A `runs` row as both stores return it. */
export interface Row {
  id: number | string;
  name: string;
  version: string;
  integrity: string | null;
  sandbox: string;
  policy_hash: string | null;
  spec: string;
  verdict: string;
  created_at: string;
  phonehome_version: string | null;
  duration_ms: number | string | null;
}

export const toRun = (r: Row): StoredRun => ({
  id: Number(r.id),
  name: r.name,
  version: r.version,
  integrity: r.integrity,
  sandbox: r.sandbox,
  policyHash: r.policy_hash,
  spec: r.spec,
  verdict: r.verdict,
  createdAt: r.created_at,
  phonehomeVersion: r.phonehome_version,
  durationMs: r.duration_ms === null ? null : Number(r.duration_ms),
});

/** A MaliciousSet over a store's import record and a way to read one package's records. */
export function maliciousSetOf(
  info: { source: string; imported_at: string; records: number; newest_modified: string | null },
  read: (name: string) => MaliciousRecord[],
  withIocs: MaliciousSet['withIocs'],
): MaliciousSet {
  const cache = new Map<string, MaliciousRecord[]>();
  const recordsOf = (name: string): MaliciousRecord[] => {
    let list = cache.get(name);
    if (!list) cache.set(name, (list = read(name)));
    return list;
  };
  return {
    source: info.source,
    importedAt: info.imported_at,
    records: Number(info.records),
    newestModified: info.newest_modified,
    recordsOf,
    affecting: (name, version) => recordsOf(name).filter((r) => recordAffects(r, version)),
    withIocs,
  };
}

/** An exported run's columns in the order of the stores' INSERT into runs. */
export const runValues = (run: ExportedRun): unknown[] => [
  run.name,
  run.version,
  run.integrity,
  run.sandbox,
  run.policyHash,
  run.spec,
  run.verdict,
  run.report,
  run.createdAt,
  run.phonehomeVersion,
  run.durationMs,
];
