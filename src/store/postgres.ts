/**
 * The result store on PostgreSQL, for a team: every CI runner and laptop that points at the same
 * server shares its results, so a tarball is run once for all of them. Same semantics as the
 * SQLite store (src/store/sqlite.ts); the schema is versioned in its own table and migrated under
 * an advisory lock, so many writers opening a new or older store at once apply each migration
 * once. Credentials come from the URL or the standard PG* variables and are never printed.
 */
import pg from 'pg';
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
export const PG_MIGRATIONS: readonly string[] = [
  `CREATE TABLE runs (
     id BIGSERIAL PRIMARY KEY,
     name TEXT NOT NULL,
     version TEXT NOT NULL,
     integrity TEXT,
     sandbox TEXT NOT NULL,
     policy_hash TEXT,
     spec TEXT NOT NULL,
     verdict TEXT NOT NULL,
     report TEXT NOT NULL,
     created_at TEXT NOT NULL,
     phonehome_version TEXT,
     duration_ms INTEGER
   );
   CREATE INDEX runs_by_package ON runs (name, version, integrity, sandbox);
   CREATE INDEX runs_by_name ON runs (name, id);
   CREATE TABLE malicious_records (
     id TEXT NOT NULL,
     name TEXT NOT NULL,
     modified TEXT NOT NULL,
     iocs TEXT,
     record TEXT NOT NULL,
     PRIMARY KEY (id, name)
   );
   CREATE INDEX malicious_by_name ON malicious_records (name);
   CREATE TABLE malicious_import (
     only_one INTEGER PRIMARY KEY CHECK (only_one = 1),
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
   );
   CREATE TABLE claims (
     name TEXT NOT NULL,
     version TEXT NOT NULL,
     integrity TEXT NOT NULL,
     sandbox TEXT NOT NULL,
     owner TEXT NOT NULL,
     expires_at TIMESTAMPTZ NOT NULL,
     PRIMARY KEY (name, version, integrity, sandbox)
   );`,
];
export const PG_SCHEMA_VERSION = PG_MIGRATIONS.length;

/** The advisory lock every phonehome takes to read and move the schema version. */
const SCHEMA_LOCK = 0x70686f6e; // "phon"
const IMPORT_LOCK = 0x686f6d65; // "home"
/** duration_ms is an INTEGER column. */
const MAX_DURATION_MS = 2 ** 31 - 1;

export function isPostgresUrl(s: string): boolean {
  return /^postgres(ql)?:\/\//i.test(s);
}

/**
 * The URL without its password (and without a password given as a query parameter); a file path
 * as it is.
 */
export function redactedUrl(url: string): string {
  if (!isPostgresUrl(url)) return url;
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    for (const k of [...u.searchParams.keys()])
      if (/pass|secret|key/i.test(k)) u.searchParams.set(k, '***');
    return u.toString();
  } catch {
    return 'postgres://(a URL that cannot be read)';
  }
}

export class PgStore implements ResultStore {
  readonly kind = 'postgres' as const;
  readonly location: string;
  private readonly pool: pg.Pool;
  private readonly secrets: string[];

  private constructor(location: string, pool: pg.Pool, secrets: string[]) {
    this.location = location;
    this.pool = pool;
    this.secrets = secrets;
  }

  /**
   * Connect and bring the schema up to this phonehome's; `create: false` (reading only) leaves a
   * server without a phonehome schema as it is and answers undefined.
   */
  static async open(url: string, o: { create?: boolean } = {}): Promise<PgStore | undefined> {
    const location = redactedUrl(url);
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new PhonehomeError('ESTORE', `The result store URL ${location} is not a URL.`, {
        fix: 'Write it as postgres://user@host:5432/database (the password from PGPASSWORD or ~/.pgpass, or in the URL).',
      });
    }
    let password = parsed.password;
    try {
      password = decodeURIComponent(password);
    } catch {
      /* kept as written: a malformed escape is still the secret */
    }
    const secrets = [
      password,
      parsed.password,
      process.env.PGPASSWORD ?? '',
      ...[...parsed.searchParams.entries()].filter(([k]) => /pass/i.test(k)).map(([, v]) => v),
    ].filter((s) => s.length > 0);
    const pool = new pg.Pool({
      connectionString: url,
      max: 4,
      connectionTimeoutMillis: 10_000,
      idleTimeoutMillis: 10_000,
      application_name: 'phonehome',
    });
    const store = new PgStore(location, pool, secrets);
    // An idle connection that the server drops must not end the process; the next query says.
    pool.on('error', () => {});
    try {
      const ok = await store.migrate(o.create ?? true);
      if (!ok) {
        await pool.end();
        return undefined;
      }
    } catch (e) {
      await pool.end().catch(() => {});
      throw store.error(e);
    }
    return store;
  }

  private async migrate(create: boolean): Promise<boolean> {
    const c = await this.pool.connect();
    try {
      // The usual case, without a lock or a write (a user that may only read is enough): the
      // schema is this phonehome's.
      const exists = await c.query(`SELECT to_regclass('phonehome_schema') IS NOT NULL AS e`);
      if ((exists.rows[0] as { e: boolean }).e) {
        const [row] = (await c.query(`SELECT version FROM phonehome_schema`)).rows as {
          version: number;
        }[];
        if (Number(row?.version) === PG_SCHEMA_VERSION) {
          c.release();
          return true;
        }
      } else if (!create) {
        c.release();
        return false;
      }
    } catch (e) {
      c.release();
      throw e;
    }
    let locked = false;
    try {
      // The lock first, then the transaction: a transaction that begins once the lock is held
      // sees the catalog as the previous holder left it (a lookup made before may be cached).
      await c.query('SELECT pg_advisory_lock($1)', [SCHEMA_LOCK]);
      locked = true;
      await c.query('BEGIN');
      const exists = await c.query(`SELECT to_regclass('phonehome_schema') IS NOT NULL AS e`);
      if (!(exists.rows[0] as { e: boolean }).e) {
        if (!create) {
          await c.query('ROLLBACK');
          return false;
        }
        await c.query(`CREATE TABLE phonehome_schema (version INTEGER NOT NULL)`);
        await c.query(`INSERT INTO phonehome_schema (version) VALUES (0)`);
      }
      const at = Number(
        (
          (await c.query(`SELECT version FROM phonehome_schema FOR UPDATE`)).rows[0] as {
            version: number;
          }
        ).version,
      );
      if (at > PG_SCHEMA_VERSION)
        throw new PhonehomeError(
          'ESTORE',
          `The result store ${this.location} was written by a newer phonehome (schema ${at}, this one knows ${PG_SCHEMA_VERSION}).`,
          {
            fix: 'Upgrade phonehome (every machine sharing this store), or pass --store with another database.',
          },
        );
      for (let v = at; v < PG_SCHEMA_VERSION; v++) await c.query(PG_MIGRATIONS[v] as string);
      if (at < PG_SCHEMA_VERSION)
        await c.query(`UPDATE phonehome_schema SET version = $1`, [PG_SCHEMA_VERSION]);
      await c.query('COMMIT');
      return true;
    } catch (e) {
      await c.query('ROLLBACK').catch(() => {});
      throw e;
    } finally {
      // A connection that may still hold the lock is closed, not pooled: the server lets go.
      const unlocked =
        !locked ||
        (await c.query('SELECT pg_advisory_unlock($1)', [SCHEMA_LOCK]).then(
          () => true,
          () => false,
        ));
      c.release(!unlocked);
    }
  }

  /** A PhonehomeError for a failure of the server or the connection, with its fix. */
  private error(e: unknown): PhonehomeError {
    if (e instanceof PhonehomeError) return e;
    const err = e as { code?: string; message?: string };
    let message = err.message ?? String(e);
    // A secret too short to cut out without mangling the text withholds the whole message.
    for (const s of this.secrets)
      if (message.includes(s))
        message =
          s.length >= 4
            ? message.split(s).join('***')
            : 'the server answered with a message withheld here (it may hold the password)';
    const code = err.code ?? '';
    const fix =
      code === 'ECONNREFUSED' ||
      code === 'ENOENT' ||
      code === 'ETIMEDOUT' ||
      /timeout/i.test(message)
        ? 'Start the PostgreSQL server, or check the host and port of the URL (`pg_isready -d <url>`).'
        : code === 'ENOTFOUND' || code === 'EAI_AGAIN'
          ? 'The server name does not resolve: check the host of the URL.'
          : code === '28P01' || code === '28000'
            ? 'The server refused these credentials: check the user, and the password (in the URL, PGPASSWORD or ~/.pgpass).'
            : code === '3D000'
              ? 'The database does not exist: create it (`createdb <name>`), or name another in the URL.'
              : code === '42501'
                ? 'The user may not create or change tables here: grant it CREATE on the database, or use the database owner.'
                : 'Check the server and the URL; SQLite stays available (pass --store with a file path).';
    // No cause attached: the driver's error object can carry the connection's parameters.
    return new PhonehomeError(
      'ESTORE',
      `Cannot use the result store ${this.location}: ${message}`,
      {
        fix,
      },
    );
  }

  private async q<T>(text: string, values: unknown[] = []): Promise<T[]> {
    try {
      return (await this.pool.query(text, values)).rows as T[];
    } catch (e) {
      throw this.error(e);
    }
  }

  private async client(): Promise<pg.PoolClient> {
    try {
      return await this.pool.connect();
    } catch (e) {
      throw this.error(e);
    }
  }

  private async tx<T>(body: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const c = await this.client();
    try {
      await c.query('BEGIN');
      const out = await body(c);
      await c.query('COMMIT');
      return out;
    } catch (e) {
      await c.query('ROLLBACK').catch(() => {});
      throw this.error(e);
    } finally {
      c.release();
    }
  }

  async schema(): Promise<number> {
    const rows = await this.q<{ version: number }>(`SELECT version FROM phonehome_schema`);
    return Number(rows[0]?.version ?? 0);
  }

  async save(report: CheckReport, meta: SaveMeta): Promise<number> {
    const rows = await this.q<{ id: string }>(
      `INSERT INTO runs (name, version, integrity, sandbox, policy_hash, spec, verdict, report,
                         created_at, phonehome_version, duration_ms)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id`,
      [
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
        Math.min(MAX_DURATION_MS, Math.max(0, Math.round(meta.durationMs))),
      ],
    );
    return Number(rows[0]?.id);
  }

  async find(key: RunKey): Promise<{ run: StoredRun; report: CheckReport } | undefined> {
    const [row] = await this.q<Row & { report: string }>(
      `SELECT * FROM runs WHERE name = $1 AND version = $2 AND integrity = $3 AND sandbox = $4
       ORDER BY id DESC LIMIT 1`,
      [key.name, key.version, key.integrity, key.sandbox],
    );
    return row ? { run: toRun(row), report: JSON.parse(row.report) as CheckReport } : undefined;
  }

  async history(name: string, limit = 100): Promise<StoredRun[]> {
    const rows = await this.q<Row>(
      `SELECT id, name, version, integrity, sandbox, policy_hash, spec, verdict, created_at,
              phonehome_version, duration_ms
       FROM runs WHERE name = $1 ORDER BY id DESC LIMIT $2`,
      [name, limit],
    );
    return rows.map(toRun);
  }

  async report(id: number): Promise<CheckReport | undefined> {
    const [row] = await this.q<{ report: string }>(`SELECT report FROM runs WHERE id = $1`, [id]);
    return row ? (JSON.parse(row.report) as CheckReport) : undefined;
  }

  async replaceMalicious(
    records: Iterable<MaliciousRecord>,
    meta: { source: string; importedAt: string },
  ): Promise<{ records: number; newestModified: string | null }> {
    return this.tx(async (c) => {
      await c.query(`DELETE FROM malicious_records`);
      await c.query(`DELETE FROM malicious_import`);
      let n = 0;
      let newest: string | null = null;
      let batch: MaliciousRecord[] = [];
      const flush = async () => {
        if (!batch.length) return;
        // The same id and name twice in one batch: the later one wins, as in SQLite.
        const byKey = new Map(batch.map((r) => [`${r.id}\u0000${r.name}`, r]));
        const list = [...byKey.values()];
        await c.query(
          `INSERT INTO malicious_records (id, name, modified, iocs, record)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
           ON CONFLICT (id, name) DO UPDATE
             SET modified = EXCLUDED.modified, iocs = EXCLUDED.iocs, record = EXCLUDED.record`,
          [
            list.map((r) => r.id),
            list.map((r) => r.name),
            list.map((r) => r.modified),
            list.map((r) =>
              r.iocs.domains.length + r.iocs.ips.length > 0 ? JSON.stringify(r.iocs) : null,
            ),
            list.map((r) => JSON.stringify(r)),
          ],
        );
        batch = [];
      };
      for (const r of records) {
        batch.push(r);
        n++;
        if (!newest || r.modified > newest) newest = r.modified;
        if (batch.length >= 1000) await flush();
      }
      await flush();
      await c.query(
        `INSERT INTO malicious_import (only_one, source, imported_at, records, newest_modified)
         VALUES (1, $1, $2, $3, $4)`,
        [meta.source, meta.importedAt, n, newest],
      );
      return { records: n, newestModified: newest };
    });
  }

  async maliciousSet(): Promise<MaliciousSet | undefined> {
    const [info] = await this.q<{
      source: string;
      imported_at: string;
      records: number;
      newest_modified: string | null;
    }>(`SELECT source, imported_at, records, newest_modified FROM malicious_import`);
    if (!info) return undefined;
    // Judging asks for one package's records at a time and cannot wait for a server: the set is
    // read whole, once per command (records are small: names, versions and indicators).
    const byName = new Map<string, MaliciousRecord[]>();
    const withIocs: MaliciousSet['withIocs'] = [];
    for (const r of await this.q<{ id: string; name: string; iocs: string | null; record: string }>(
      `SELECT id, name, iocs, record FROM malicious_records`,
    )) {
      const list = byName.get(r.name) ?? [];
      list.push(JSON.parse(r.record) as MaliciousRecord);
      byName.set(r.name, list);
      if (r.iocs)
        withIocs.push({
          id: r.id,
          name: r.name,
          iocs: JSON.parse(r.iocs) as MaliciousRecord['iocs'],
        });
    }
    return maliciousSetOf(info, (name) => byName.get(name) ?? [], withIocs);
  }

  async watchedPackument(registry: string, name: string): Promise<WatchedPackument | undefined> {
    const [row] = await this.q<{
      etag: string | null;
      last_modified: string | null;
      versions: string;
      fetched_at: string;
    }>(`SELECT * FROM watch_packuments WHERE registry = $1 AND name = $2`, [registry, name]);
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
    await this.q(
      `INSERT INTO watch_packuments (registry, name, etag, last_modified, versions, fetched_at)
       VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (registry, name) DO UPDATE SET etag = EXCLUDED.etag,
         last_modified = EXCLUDED.last_modified, versions = EXCLUDED.versions,
         fetched_at = EXCLUDED.fetched_at`,
      [
        registry,
        name,
        p.etag,
        p.lastModified,
        JSON.stringify({ versions: p.versions, distTags: p.distTags ?? {} }),
        p.fetchedAt,
      ],
    );
  }

  async watchReported(
    name: string,
    version: string,
    against: string,
  ): Promise<{ verdict: string; reportedAt: string; integrity: string | null } | undefined> {
    const [row] = await this.q<{ verdict: string; reported_at: string; integrity: string | null }>(
      `SELECT verdict, reported_at, integrity FROM watch_reported
       WHERE name = $1 AND version = $2 AND against = $3`,
      [name, version, against],
    );
    return row
      ? { verdict: row.verdict, reportedAt: row.reported_at, integrity: row.integrity }
      : undefined;
  }

  async saveWatchReported(r: WatchReported): Promise<void> {
    await this.q(
      `INSERT INTO watch_reported (name, version, against, integrity, verdict, reported_at)
       VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (name, version, against) DO UPDATE SET integrity = EXCLUDED.integrity,
         verdict = EXCLUDED.verdict, reported_at = EXCLUDED.reported_at`,
      [r.name, r.version, r.against, r.integrity, r.verdict, new Date().toISOString()],
    );
  }

  async count(): Promise<number> {
    const [row] = await this.q<{ n: string }>(`SELECT count(*) AS n FROM runs`);
    return Number(row?.n ?? 0);
  }

  async claim(asked: RunKey[], owner: string, leaseMs: number): Promise<boolean[]> {
    if (!asked.length) return [];
    // One row per key: ON CONFLICT cannot touch a row twice in one statement.
    const keys = [...new Map(asked.map((k) => [keyText(k), k])).values()];
    const rows = await this.q<{
      name: string;
      version: string;
      integrity: string;
      sandbox: string;
    }>(
      `INSERT INTO claims (name, version, integrity, sandbox, owner, expires_at)
       SELECT k.name, k.version, k.integrity, k.sandbox, $5,
              now() + make_interval(secs => $6::double precision / 1000)
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
            AS k (name, version, integrity, sandbox)
       ON CONFLICT (name, version, integrity, sandbox) DO UPDATE
         SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
         WHERE claims.expires_at < now() OR claims.owner = EXCLUDED.owner
       RETURNING name, version, integrity, sandbox`,
      [
        keys.map((k) => k.name),
        keys.map((k) => k.version),
        keys.map((k) => k.integrity),
        keys.map((k) => k.sandbox),
        owner,
        Math.round(leaseMs),
      ],
    );
    const held = new Set(rows.map((r) => keyText(r)));
    return asked.map((k) => held.has(keyText(k)));
  }

  async release(keys: RunKey[], owner: string): Promise<void> {
    if (!keys.length) return;
    await this.q(
      `DELETE FROM claims c USING unnest($1::text[], $2::text[], $3::text[], $4::text[])
         AS k (name, version, integrity, sandbox)
       WHERE c.name = k.name AND c.version = k.version AND c.integrity = k.integrity
         AND c.sandbox = k.sandbox AND c.owner = $5`,
      [
        keys.map((k) => k.name),
        keys.map((k) => k.version),
        keys.map((k) => k.integrity),
        keys.map((k) => k.sandbox),
        owner,
      ],
    );
  }

  async *exportRuns(): AsyncIterable<ExportedRun> {
    const c = await this.client();
    try {
      // One snapshot for every page: runs written meanwhile are not half in the file.
      await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      let after = 0;
      for (;;) {
        const rows = (
          await c.query(`SELECT * FROM runs WHERE id > $1 ORDER BY id LIMIT 500`, [after])
        ).rows as (Row & { report: string })[];
        if (!rows.length) break;
        for (const row of rows) {
          const { id: _, ...run } = toRun(row);
          yield { ...run, report: row.report };
        }
        after = Number(rows[rows.length - 1]?.id);
      }
    } catch (e) {
      throw this.error(e);
    } finally {
      // Also when the reader stops early: the connection goes back to the pool out of the
      // transaction.
      await c.query('ROLLBACK').catch(() => {});
      c.release();
    }
  }

  async importRuns(runs: AsyncIterable<ExportedRun>): Promise<number> {
    return this.tx(async (c) => {
      // Two imports at once: one after the other, so a tarball is added once.
      await c.query('SELECT pg_advisory_xact_lock($1)', [IMPORT_LOCK]);
      let added = 0;
      for await (const run of runs) {
        const seen = await c.query(
          `SELECT 1 FROM runs WHERE name = $1 AND version = $2
             AND integrity IS NOT DISTINCT FROM $3 AND sandbox = $4 LIMIT 1`,
          [run.name, run.version, run.integrity, run.sandbox],
        );
        if (seen.rowCount) continue;
        await c.query(
          `INSERT INTO runs (name, version, integrity, sandbox, policy_hash, spec, verdict, report,
                             created_at, phonehome_version, duration_ms)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
          runValues(run),
        );
        added++;
      }
      return added;
    });
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

const keyText = (k: RunKey): string => [k.name, k.version, k.integrity, k.sandbox].join('\u0000');
