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
