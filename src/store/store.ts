/**
 * The result store: every check's report, kept in SQLite so that a later check of the same
 * package (same tarball integrity, same sandbox) is answered without a run, and so versions can be
 * compared. One file, safe for several phonehome processes at once (WAL, busy timeout, each write
 * one transaction); the schema is versioned and migrated forward on open.
 */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { PhonehomeError } from '../core/errors.js';
import type { CheckReport } from '../core/report.js';
import { recordAffects, type MaliciousRecord } from '../intel/osv.js';
import { cacheDir } from '../paths.js';

/** Each entry moves the schema from version i to i + 1; never edit a released one, add another. */
export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE runs (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     name TEXT NOT NULL,
     version TEXT NOT NULL,
     integrity TEXT,
     sandbox TEXT NOT NULL,
     policy_hash TEXT,
     spec TEXT NOT NULL,
     verdict TEXT NOT NULL,
     report TEXT NOT NULL,
     created_at TEXT NOT NULL
   );
   CREATE INDEX runs_by_package ON runs (name, version, integrity, sandbox);`,
  // 2: the phonehome version that made a run, and a per-run duration, for `history`.
  `ALTER TABLE runs ADD COLUMN phonehome_version TEXT;
   ALTER TABLE runs ADD COLUMN duration_ms INTEGER;`,
  // 3: an imported set of known-malicious package records (one set, replaced on import), and
  // what `watch` has seen of the registry and reported.
  `CREATE TABLE malicious_records (
     id TEXT NOT NULL,
     name TEXT NOT NULL,
     modified TEXT NOT NULL,
     has_iocs INTEGER NOT NULL,
     record TEXT NOT NULL,
     PRIMARY KEY (id, name)
   );
   CREATE INDEX malicious_by_name ON malicious_records (name);
   CREATE TABLE malicious_import (
     only INTEGER PRIMARY KEY CHECK (only = 1),
     source TEXT NOT NULL,
     imported_at TEXT NOT NULL,
     records INTEGER NOT NULL,
     newest_modified TEXT
   );
   CREATE TABLE watch_packuments (
     registry TEXT NOT NULL,
     name TEXT NOT NULL,
     etag TEXT,
     last_modified TEXT,
     versions TEXT NOT NULL,
     fetched_at TEXT NOT NULL,
     PRIMARY KEY (registry, name)
   );
   CREATE TABLE watch_reported (
     name TEXT NOT NULL,
     version TEXT NOT NULL,
     against TEXT NOT NULL,
     integrity TEXT,
     verdict TEXT NOT NULL,
     reported_at TEXT NOT NULL,
     PRIMARY KEY (name, version, against)
   );`,
];
export const STORE_SCHEMA_VERSION = MIGRATIONS.length;

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

export function defaultStorePath(): string {
  return join(cacheDir(), 'results.sqlite');
}

interface Row {
  id: number;
  name: string;
  version: string;
  integrity: string | null;
  sandbox: string;
  policy_hash: string | null;
  spec: string;
  verdict: string;
  created_at: string;
  phonehome_version: string | null;
  duration_ms: number | null;
}

const toRun = (r: Row): StoredRun => ({
  id: r.id,
  name: r.name,
  version: r.version,
  integrity: r.integrity,
  sandbox: r.sandbox,
  policyHash: r.policy_hash,
  spec: r.spec,
  verdict: r.verdict,
  createdAt: r.created_at,
  phonehomeVersion: r.phonehome_version,
  durationMs: r.duration_ms,
});

export class ResultStore {
  readonly path: string;
  private readonly db: Database.Database;

  private constructor(path: string, db: Database.Database) {
    this.path = path;
    this.db = db;
  }

  static open(path: string = defaultStorePath()): ResultStore {
    if (path !== ':memory:' && existsSync(path) && statSync(path).isDirectory())
      throw new PhonehomeError('ESTORE', `The result store ${path} is a directory.`, {
        fix: 'Pass --store with a file path (it is created if missing).',
      });
    let db: Database.Database;
    try {
      if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
      db = new Database(path, { timeout: 10_000 });
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
    } catch (e) {
      throw storeError(path, e);
    }
    const store = new ResultStore(path, db);
    store.migrate();
    return store;
  }

  /**
   * For reading only (`history`): nothing is created or migrated, and a read-only file is fine.
   * Undefined when there is no store at that path.
   */
  static openReadOnly(path: string = defaultStorePath()): ResultStore | undefined {
    if (!existsSync(path)) return undefined;
    if (statSync(path).isDirectory())
      throw new PhonehomeError('ESTORE', `The result store ${path} is a directory.`, {
        fix: 'Pass --store with the store file.',
      });
    let db: Database.Database;
    try {
      db = new Database(path, { readonly: true, fileMustExist: true, timeout: 10_000 });
    } catch (e) {
      throw storeError(path, e);
    }
    const store = new ResultStore(path, db);
    const at = store.schemaVersion;
    if (at > STORE_SCHEMA_VERSION || at < 1) {
      db.close();
      throw new PhonehomeError(
        'ESTORE',
        at < 1
          ? `${path} is not a phonehome result store.`
          : `The result store ${path} was written by a newer phonehome (schema ${at}).`,
        { fix: 'Pass --store with the store file, or upgrade phonehome.' },
      );
    }
    if (at < STORE_SCHEMA_VERSION) {
      // Older than this phonehome: readable only through a migration, which needs writing.
      db.close();
      return ResultStore.open(path);
    }
    return store;
  }

  /** The schema version of the file (0: empty). */
  get schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  private migrate(): void {
    // IMMEDIATE takes the write lock before reading the version: two processes opening a new
    // store at once cannot both run the same migration.
    const step = this.db.transaction(() => {
      const at = this.schemaVersion;
      if (at > STORE_SCHEMA_VERSION)
        throw new PhonehomeError(
          'ESTORE',
          `The result store ${this.path} was written by a newer phonehome (schema ${at}, this one knows ${STORE_SCHEMA_VERSION}).`,
          { fix: 'Upgrade phonehome, or pass --store with another file.' },
        );
      for (let v = at; v < STORE_SCHEMA_VERSION; v++) this.db.exec(MIGRATIONS[v] as string);
      this.db.pragma(`user_version = ${STORE_SCHEMA_VERSION}`);
    });
    try {
      step.immediate();
    } catch (e) {
      if (e instanceof PhonehomeError) throw e;
      throw storeError(this.path, e);
    }
  }

  save(
    report: CheckReport,
    meta: { sandbox: string; phonehomeVersion: string; durationMs: number },
  ): number {
    const r = this.db
      .prepare(
        `INSERT INTO runs (name, version, integrity, sandbox, policy_hash, spec, verdict, report,
                           created_at, phonehome_version, duration_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        report.subject.name,
        report.subject.version,
        report.subject.integrity,
        meta.sandbox,
        report.policy?.hash ?? null,
        report.subject.spec,
        report.verdict,
        JSON.stringify(report),
        new Date().toISOString(),
        meta.phonehomeVersion,
        Math.round(meta.durationMs),
      );
    return Number(r.lastInsertRowid);
  }

  /** The newest stored report for exactly this tarball in this sandbox. */
  find(key: RunKey): { run: StoredRun; report: CheckReport } | undefined {
    const row = this.db
      .prepare(
        `SELECT * FROM runs WHERE name = ? AND version = ? AND integrity = ? AND sandbox = ?
         ORDER BY id DESC LIMIT 1`,
      )
      .get(key.name, key.version, key.integrity, key.sandbox) as
      (Row & { report: string }) | undefined;
    return row ? { run: toRun(row), report: JSON.parse(row.report) as CheckReport } : undefined;
  }

  /** Stored runs of a package, newest first. */
  history(name: string, limit = 100): StoredRun[] {
    return (
      this.db
        .prepare(`SELECT * FROM runs WHERE name = ? ORDER BY id DESC LIMIT ?`)
        .all(name, limit) as Row[]
    ).map(toRun);
  }

  report(id: number): CheckReport | undefined {
    const row = this.db.prepare(`SELECT report FROM runs WHERE id = ?`).get(id) as
      { report: string } | undefined;
    return row ? (JSON.parse(row.report) as CheckReport) : undefined;
  }

  /**
   * Replace the imported set of known-malicious records with these (one transaction: a reader sees
   * the old set or the new one).
   */
  replaceMalicious(
    records: Iterable<MaliciousRecord>,
    meta: { source: string; importedAt: string },
  ): { records: number; newestModified: string | null } {
    let n = 0;
    let newest: string | null = null;
    const insert = this.db.prepare(
      `INSERT OR REPLACE INTO malicious_records (id, name, modified, has_iocs, record)
       VALUES (?, ?, ?, ?, ?)`,
    );
    this.db.transaction(() => {
      this.db.exec(`DELETE FROM malicious_records; DELETE FROM malicious_import;`);
      for (const r of records) {
        insert.run(
          r.id,
          r.name,
          r.modified,
          r.iocs.domains.length + r.iocs.ips.length > 0 ? 1 : 0,
          JSON.stringify(r),
        );
        n++;
        if (!newest || r.modified > newest) newest = r.modified;
      }
      this.db
        .prepare(
          `INSERT INTO malicious_import (only, source, imported_at, records, newest_modified)
           VALUES (1, ?, ?, ?, ?)`,
        )
        .run(meta.source, meta.importedAt, n, newest);
    })();
    return { records: n, newestModified: newest };
  }

  /** The imported set of known-malicious records, or undefined when none was imported. */
  maliciousSet(): MaliciousSet | undefined {
    const info = this.db
      .prepare(`SELECT source, imported_at, records, newest_modified FROM malicious_import`)
      .get() as
      | { source: string; imported_at: string; records: number; newest_modified: string | null }
      | undefined;
    if (!info) return undefined;
    const byName = this.db.prepare(`SELECT record FROM malicious_records WHERE name = ?`);
    const cache = new Map<string, MaliciousRecord[]>();
    const recordsOf = (name: string): MaliciousRecord[] => {
      let list = cache.get(name);
      if (!list) {
        list = (byName.all(name) as { record: string }[]).map(
          (r) => JSON.parse(r.record) as MaliciousRecord,
        );
        cache.set(name, list);
      }
      return list;
    };
    // Only what the indicator needs: a large set is not parsed whole on every start.
    const withIocs = (
      this.db
        .prepare(
          `SELECT id, name, json_extract(record, '$.iocs') AS iocs FROM malicious_records WHERE has_iocs = 1`,
        )
        .all() as { id: string; name: string; iocs: string }[]
    ).map((r) => ({ id: r.id, name: r.name, iocs: JSON.parse(r.iocs) as MaliciousRecord['iocs'] }));
    return {
      source: info.source,
      importedAt: info.imported_at,
      records: info.records,
      newestModified: info.newest_modified,
      recordsOf,
      affecting: (name, version) => recordsOf(name).filter((r) => recordAffects(r, version)),
      withIocs,
    };
  }

  /** What `watch` last read of a packument: its validators and the versions it listed. */
  watchedPackument(registry: string, name: string): WatchedPackument | undefined {
    const row = this.db
      .prepare(`SELECT * FROM watch_packuments WHERE registry = ? AND name = ?`)
      .get(registry, name) as
      | { etag: string | null; last_modified: string | null; versions: string; fetched_at: string }
      | undefined;
    return row
      ? {
          etag: row.etag,
          lastModified: row.last_modified,
          ...(JSON.parse(row.versions) as Pick<WatchedPackument, 'versions' | 'distTags'>),
          fetchedAt: row.fetched_at,
        }
      : undefined;
  }

  saveWatchedPackument(registry: string, name: string, p: WatchedPackument): void {
    this.db
      .prepare(
        `INSERT OR REPLACE INTO watch_packuments (registry, name, etag, last_modified, versions, fetched_at)
         VALUES (?, ?, ?, ?, ?, ?)`,
      )
      .run(
        registry,
        name,
        p.etag,
        p.lastModified,
        JSON.stringify({ versions: p.versions, distTags: p.distTags ?? {} }),
        p.fetchedAt,
      );
  }

  /** Whether `watch` has reported this version, checked against that one. */
  watchReported(
    name: string,
    version: string,
    against: string,
  ): { verdict: string; reportedAt: string; integrity: string | null } | undefined {
    const row = this.db
      .prepare(
        `SELECT verdict, reported_at, integrity FROM watch_reported WHERE name = ? AND version = ? AND against = ?`,
      )
      .get(name, version, against) as
      { verdict: string; reported_at: string; integrity: string | null } | undefined;
    return row
      ? { verdict: row.verdict, reportedAt: row.reported_at, integrity: row.integrity }
      : undefined;
  }

  saveWatchReported(r: {
    name: string;
    version: string;
    against: string;
    integrity: string | null;
    verdict: string;
  }): void {
    this.db
      .prepare(
        `INSERT OR REPLACE INTO watch_reported (name, version, against, integrity, verdict, reported_at)
         VALUES (?, ?, ?, ?, ?, ?)`,
      )
      .run(r.name, r.version, r.against, r.integrity, r.verdict, new Date().toISOString());
  }

  count(): number {
    return (this.db.prepare(`SELECT count(*) AS n FROM runs`).get() as { n: number }).n;
  }

  integrityCheck(): string {
    return this.db.pragma('integrity_check', { simple: true }) as string;
  }

  close(): void {
    this.db.close();
  }
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

function storeError(path: string, e: unknown): PhonehomeError {
  const err = e as { code?: string; message?: string };
  return new PhonehomeError(
    'ESTORE',
    `Cannot use the result store ${path}: ${err.message ?? String(e)}`,
    {
      ...(err.code === 'SQLITE_NOTADB' || err.code === 'SQLITE_CORRUPT'
        ? {
            fix: `The file is not a phonehome store or is damaged: move it away (results are only a cache of earlier runs), or pass --store with another file.`,
          }
        : {}),
      cause: e,
    },
  );
}
