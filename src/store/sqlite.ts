/**
 * The result store in SQLite, the embedded default: one file, safe for several phonehome processes
 * on one machine at once (WAL, busy timeout, each write one transaction); the schema is versioned
 * and migrated forward on open.
 */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { PhonehomeError } from '../core/errors.js';
import type { CheckReport } from '../core/report.js';
import type { MaliciousRecord } from '../intel/osv.js';
import {
  maliciousSetOf,
  runValues,
  toRun,
  type ExportedRun,
  type MaliciousSet,
  type ResultStore,
  type Row,
  type RunKey,
  type SaveMeta,
  type StoredRun,
  type WatchedPackument,
  type WatchReported,
} from './types.js';

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
  // 4: claims, so that two processes checking the same tarball at once run it once; a claim is
  // held until its lease runs out (milliseconds since the epoch), so a crashed holder's expires.
  `CREATE TABLE claims (
     name TEXT NOT NULL,
     version TEXT NOT NULL,
     integrity TEXT NOT NULL,
     sandbox TEXT NOT NULL,
     owner TEXT NOT NULL,
     expires_at INTEGER NOT NULL,
     PRIMARY KEY (name, version, integrity, sandbox)
   );`,
];
export const STORE_SCHEMA_VERSION = MIGRATIONS.length;

/** Milliseconds since the epoch, by the database's clock (the one every writer shares). */
const NOW_MS = `CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)`;

export class SqliteStore implements ResultStore {
  readonly kind = 'sqlite' as const;
  readonly path: string;
  private readonly db: Database.Database;

  private constructor(path: string, db: Database.Database) {
    this.path = path;
    this.db = db;
  }

  static open(path: string): SqliteStore {
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
    const store = new SqliteStore(path, db);
    store.migrate();
    return store;
  }

  /**
   * For reading only (`history`): nothing is created or migrated, and a read-only file is fine.
   * Undefined when there is no store at that path.
   */
  static openReadOnly(path: string): SqliteStore | undefined {
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
    const store = new SqliteStore(path, db);
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
      return SqliteStore.open(path);
    }
    return store;
  }

  get location(): string {
    return this.path;
  }

  async schema(): Promise<number> {
    return this.schemaVersion;
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

  async save(report: CheckReport, meta: SaveMeta): Promise<number> {
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
  async find(key: RunKey): Promise<{ run: StoredRun; report: CheckReport } | undefined> {
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
  async history(name: string, limit = 100): Promise<StoredRun[]> {
    return (
      this.db
        .prepare(`SELECT * FROM runs WHERE name = ? ORDER BY id DESC LIMIT ?`)
        .all(name, limit) as Row[]
    ).map(toRun);
  }

  async report(id: number): Promise<CheckReport | undefined> {
    const row = this.db.prepare(`SELECT report FROM runs WHERE id = ?`).get(id) as
      { report: string } | undefined;
    return row ? (JSON.parse(row.report) as CheckReport) : undefined;
  }

  /**
   * Replace the imported set of known-malicious records with these (one transaction: a reader sees
   * the old set or the new one).
   */
  async replaceMalicious(
    records: Iterable<MaliciousRecord>,
    meta: { source: string; importedAt: string },
  ): Promise<{ records: number; newestModified: string | null }> {
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
  async maliciousSet(): Promise<MaliciousSet | undefined> {
    const info = this.db
      .prepare(`SELECT source, imported_at, records, newest_modified FROM malicious_import`)
      .get() as
      | { source: string; imported_at: string; records: number; newest_modified: string | null }
      | undefined;
    if (!info) return undefined;
    const byName = this.db.prepare(`SELECT record FROM malicious_records WHERE name = ?`);
    // Only what the indicator needs: a large set is not parsed whole on every start.
    const withIocs = (
      this.db
        .prepare(
          `SELECT id, name, json_extract(record, '$.iocs') AS iocs FROM malicious_records WHERE has_iocs = 1`,
        )
        .all() as { id: string; name: string; iocs: string }[]
    ).map((r) => ({ id: r.id, name: r.name, iocs: JSON.parse(r.iocs) as MaliciousRecord['iocs'] }));
    return maliciousSetOf(
      info,
      (name) =>
        (byName.all(name) as { record: string }[]).map(
          (r) => JSON.parse(r.record) as MaliciousRecord,
        ),
      withIocs,
    );
  }

  /** What `watch` last read of a packument: its validators and the versions it listed. */
  async watchedPackument(registry: string, name: string): Promise<WatchedPackument | undefined> {
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

  async saveWatchedPackument(registry: string, name: string, p: WatchedPackument): Promise<void> {
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
  async watchReported(
    name: string,
    version: string,
    against: string,
  ): Promise<{ verdict: string; reportedAt: string; integrity: string | null } | undefined> {
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

  async saveWatchReported(r: WatchReported): Promise<void> {
    this.db
      .prepare(
        `INSERT OR REPLACE INTO watch_reported (name, version, against, integrity, verdict, reported_at)
         VALUES (?, ?, ?, ?, ?, ?)`,
      )
      .run(r.name, r.version, r.against, r.integrity, r.verdict, new Date().toISOString());
  }

  async count(): Promise<number> {
    return (this.db.prepare(`SELECT count(*) AS n FROM runs`).get() as { n: number }).n;
  }

  async claim(keys: RunKey[], owner: string, leaseMs: number): Promise<boolean[]> {
    const take = this.db.prepare(
      `INSERT INTO claims (name, version, integrity, sandbox, owner, expires_at)
       VALUES (?, ?, ?, ?, ?, ${NOW_MS} + ?)
       ON CONFLICT (name, version, integrity, sandbox) DO UPDATE
         SET owner = excluded.owner, expires_at = excluded.expires_at
         WHERE claims.expires_at < ${NOW_MS} OR claims.owner = excluded.owner
       RETURNING owner`,
    );
    return this.db
      .transaction(() =>
        keys.map(
          (k) =>
            (
              take.get(k.name, k.version, k.integrity, k.sandbox, owner, Math.round(leaseMs)) as
                { owner: string } | undefined
            )?.owner === owner,
        ),
      )
      .immediate();
  }

  async release(keys: RunKey[], owner: string): Promise<void> {
    const drop = this.db.prepare(
      `DELETE FROM claims WHERE name = ? AND version = ? AND integrity = ? AND sandbox = ? AND owner = ?`,
    );
    this.db.transaction(() => {
      for (const k of keys) drop.run(k.name, k.version, k.integrity, k.sandbox, owner);
    })();
  }

  async *exportRuns(): AsyncIterable<ExportedRun> {
    for (const row of this.db
      .prepare(`SELECT * FROM runs ORDER BY id`)
      .iterate() as IterableIterator<Row & { report: string }>)
      yield { ...toRun(row), report: row.report };
  }

  async importRuns(runs: AsyncIterable<ExportedRun>): Promise<number> {
    const seen = this.db.prepare(
      `SELECT 1 FROM runs WHERE name = ? AND version = ? AND integrity IS ? AND sandbox = ? LIMIT 1`,
    );
    const insert = this.db.prepare(
      `INSERT INTO runs (name, version, integrity, sandbox, policy_hash, spec, verdict, report,
                         created_at, phonehome_version, duration_ms)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    let added = 0;
    // One transaction across the reading of the file: an import that fails adds nothing.
    this.db.exec('BEGIN IMMEDIATE');
    try {
      for await (const run of runs) {
        if (seen.get(run.name, run.version, run.integrity, run.sandbox)) continue;
        insert.run(...runValues(run));
        added++;
      }
      this.db.exec('COMMIT');
    } catch (e) {
      if (this.db.inTransaction) this.db.exec('ROLLBACK');
      throw e instanceof PhonehomeError ? e : storeError(this.path, e);
    }
    return added;
  }

  integrityCheck(): string {
    return this.db.pragma('integrity_check', { simple: true }) as string;
  }

  async close(): Promise<void> {
    this.db.close();
  }
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
