/**
 * `store export` / `store import`: results moved between stores as a file (a CI artifact, when
 * the jobs of a split audit share no store). One JSON line of header, then one line per run. An
 * import reads the whole file before it changes anything, and adds only runs the store lacks, so
 * importing the same file twice, or files that overlap, keeps one copy of each run.
 *
 * A file imported is trusted as the store itself is: its reports answer later checks of the same
 * tarballs. Import only what your own phonehome jobs exported.
 */
import { createReadStream, createWriteStream, statSync } from 'node:fs';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { PhonehomeError } from '../core/errors.js';
import type { ExportedRun, ResultStore } from './types.js';

export const EXPORT_FORMAT = 'phonehome-store-export';
export const EXPORT_VERSION = 1;
/** Bounds on a file to import: its size and one line (a report). */
export const MAX_IMPORT_BYTES = 4 * 1024 ** 3;
export const MAX_LINE_BYTES = 64 * 1024 ** 2;

export async function exportStore(
  store: ResultStore,
  file: string,
): Promise<{ runs: number; bytes: number }> {
  const out = createWriteStream(file, { flags: 'wx' });
  const failed = new Promise<never>((_, reject) => out.on('error', reject));
  failed.catch(() => undefined);
  const write = async (line: string) => {
    if (!out.write(line + '\n')) await Promise.race([once(out, 'drain'), failed]);
  };
  try {
    await Promise.race([once(out, 'open'), failed]);
    await write(
      JSON.stringify({
        format: EXPORT_FORMAT,
        version: EXPORT_VERSION,
        exportedAt: new Date().toISOString(),
      }),
    );
    let runs = 0;
    for await (const run of store.exportRuns()) {
      await write(JSON.stringify(run));
      runs++;
    }
    out.end();
    await Promise.race([once(out, 'finish'), failed]);
    return { runs, bytes: out.bytesWritten };
  } catch (e) {
    out.destroy();
    throw new PhonehomeError(
      'EOUTPUT',
      `Cannot write ${file}: ${(e as Error).message}`,
      (e as { code?: string }).code === 'EEXIST'
        ? { fix: 'The file exists: name a new one (an export never overwrites).', cause: e }
        : { cause: e },
    );
  }
}

const str = (v: unknown, max: number): v is string => typeof v === 'string' && v.length <= max;
const strOrNull = (v: unknown, max: number): boolean => v === null || str(v, max);
const intOrNull = (v: unknown): boolean =>
  v === null || (Number.isSafeInteger(v) && (v as number) >= 0);

/** A run read from an export line, checked field by field; undefined when it is not one. */
export function readRun(line: string): ExportedRun | string {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return 'not JSON';
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'not a run';
  if (!str(v.name, 214) || !v.name) return 'name';
  if (!str(v.version, 256) || !v.version) return 'version';
  if (!strOrNull(v.integrity, 1024)) return 'integrity';
  if (!str(v.sandbox, 1024) || !v.sandbox) return 'sandbox';
  if (!strOrNull(v.policyHash, 256)) return 'policyHash';
  if (!str(v.spec, 4096)) return 'spec';
  if (v.verdict !== 'pass' && v.verdict !== 'warn' && v.verdict !== 'fail') return 'verdict';
  if (!str(v.createdAt, 64) || Number.isNaN(Date.parse(v.createdAt))) return 'createdAt';
  if (!strOrNull(v.phonehomeVersion, 64)) return 'phonehomeVersion';
  if (!intOrNull(v.durationMs)) return 'durationMs';
  if (typeof v.report !== 'string') return 'report';
  let report: { subject?: { name?: unknown; version?: unknown }; verdict?: unknown };
  try {
    report = JSON.parse(v.report) as typeof report;
  } catch {
    return 'report is not JSON';
  }
  // The run's columns are what lookups use: they must say what the report says.
  if (
    report?.subject?.name !== v.name ||
    report.subject.version !== v.version ||
    report.verdict !== v.verdict
  )
    return 'report does not match the run (name, version or verdict)';
  return {
    name: v.name,
    version: v.version,
    integrity: v.integrity as string | null,
    sandbox: v.sandbox,
    policyHash: v.policyHash as string | null,
    spec: v.spec,
    verdict: v.verdict,
    createdAt: v.createdAt,
    phonehomeVersion: v.phonehomeVersion as string | null,
    durationMs: v.durationMs as number | null,
    report: v.report,
  };
}

async function* lines(file: string): AsyncGenerator<{ n: number; text: string }> {
  const rl = createInterface({
    input: createReadStream(file, { encoding: 'utf8', highWaterMark: 1024 * 1024 }),
    crlfDelay: Infinity,
  });
  let n = 0;
  for await (const text of rl) {
    n++;
    if (text.length > MAX_LINE_BYTES) throw bad(file, `line ${n} is longer than 64 MB`);
    if (text.trim()) yield { n, text };
  }
}

const bad = (file: string, why: string) =>
  new PhonehomeError('ESTORE_FILE', `${file}: ${why}; nothing was imported.`);

export async function importStore(
  store: ResultStore,
  file: string,
): Promise<{ runs: number; added: number }> {
  let size: number;
  try {
    const st = statSync(file);
    if (!st.isFile()) throw bad(file, 'not a file');
    size = st.size;
  } catch (e) {
    if (e instanceof PhonehomeError) throw e;
    throw bad(file, (e as Error).message);
  }
  if (size > MAX_IMPORT_BYTES) throw bad(file, 'larger than 4 GB');
  // Read whole first: a file that is cut short or altered anywhere changes nothing.
  let runs = 0;
  for await (const { n, text } of lines(file)) {
    if (n === 1) {
      let head: { format?: unknown; version?: unknown } = {};
      try {
        head = JSON.parse(text) as typeof head;
      } catch {
        /* judged below */
      }
      if (head?.format !== EXPORT_FORMAT)
        throw bad(file, 'not written by `phonehome store export`');
      if (head.version !== EXPORT_VERSION)
        throw bad(
          file,
          `export format ${String(head.version)}, this phonehome reads ${EXPORT_VERSION}`,
        );
      continue;
    }
    const run = readRun(text);
    if (typeof run === 'string') throw bad(file, `line ${n} is not a stored run (${run})`);
    runs++;
  }
  if (runs === 0 && size === 0) throw bad(file, 'empty');
  let added = 0;
  for await (const { n, text } of lines(file)) {
    if (n === 1) continue;
    const run = readRun(text);
    if (typeof run === 'string') throw bad(file, `line ${n} changed while it was imported`);
    if (await store.importRun(run)) added++;
  }
  return { runs, added };
}
