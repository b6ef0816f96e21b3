/**
 * The result store: every check's report, kept so that a later check of the same package (same
 * tarball integrity, same sandbox) is answered without a run, and so versions can be compared.
 * A file path is a SQLite store (the embedded default, one machine); a postgres:// URL is a
 * PostgreSQL store that a team's machines share (src/store/postgres.ts). `--store`, else
 * PHONEHOME_STORE, else results.sqlite in the phonehome cache folder.
 */
import { join } from 'node:path';
import { PhonehomeError } from '../core/errors.js';
import { cacheDir } from '../paths.js';
import { isPostgresUrl, PgStore } from './postgres.js';
import { SqliteStore } from './sqlite.js';
import type { ResultStore } from './types.js';

export type {
  ExportedRun,
  MaliciousSet,
  ResultStore,
  RunKey,
  StoredRun,
  WatchedPackument,
} from './types.js';
export { MIGRATIONS, STORE_SCHEMA_VERSION, SqliteStore } from './sqlite.js';
export {
  PG_MIGRATIONS,
  PG_SCHEMA_VERSION,
  PgStore,
  isPostgresUrl,
  redactedUrl,
} from './postgres.js';

export function defaultStorePath(): string {
  return join(cacheDir(), 'results.sqlite');
}

/** The store asked for: the flag's value, else PHONEHOME_STORE, else the default file. */
export function storeLocation(flag?: string): string {
  return flag || process.env.PHONEHOME_STORE || defaultStorePath();
}

/**
 * A URL of another kind is refused, not taken for a file name: `mysql://…` would otherwise become
 * a SQLite file in a folder called `mysql:`.
 */
function notOtherUrl(location: string): void {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(location)?.[1];
  if (scheme && !isPostgresUrl(location))
    throw new PhonehomeError(
      'ESTORE',
      `The result store ${scheme}://… is not a kind phonehome can use.`,
      {
        fix: 'Pass --store with a postgres:// URL (a shared PostgreSQL store) or a file path (SQLite).',
      },
    );
}

/** Open (and create or migrate) the store at this location. */
export async function openStore(location: string): Promise<ResultStore> {
  notOtherUrl(location);
  if (isPostgresUrl(location)) return (await PgStore.open(location, { create: true })) as PgStore;
  return SqliteStore.open(location);
}

/**
 * For reading only (`history`, `doctor`): nothing is created. Undefined when there is no store
 * there (no file; no phonehome schema on the server).
 */
export async function openStoreReadOnly(location: string): Promise<ResultStore | undefined> {
  notOtherUrl(location);
  if (isPostgresUrl(location)) return PgStore.open(location, { create: false });
  return SqliteStore.openReadOnly(location);
}
