/**
 * `store export` / `store import`: results moved between stores as a file (a CI artifact, when
 * the jobs of a split audit share no store). One JSON line of header, then one line per run. An
 * import reads the whole file before it changes anything, then adds, in one transaction, the
 * newest run of each tarball the store has no result for: a result the store already holds stands
 * (it is what its own runs found), and importing the same file twice, or files that overlap,
 * keeps one copy of each run.
 *
 * A file imported is trusted as the store itself is: its reports answer later checks of the same
 * tarballs. Import only what your own phonehome jobs exported.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, statSync } from 'node:fs';
import { once } from 'node:events';
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

// A text column holds no NUL (PostgreSQL refuses it), and a duration fits an INTEGER column.
const str = (v: unknown, max: number): v is string =>
  typeof v === 'string' && v.length <= max && !v.includes('\u0000');
const strOrNull = (v: unknown, max: number): boolean => v === null || str(v, max);
const MAX_DURATION_MS = 2 ** 31 - 1;
const intOrNull = (v: unknown): boolean =>
  v === null || (Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) <= MAX_DURATION_MS);

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
  if (typeof v.report !== 'string' || v.report.includes('\u0000')) return 'report';
  let report: {
    subject?: { name?: unknown; version?: unknown; integrity?: unknown };
    verdict?: unknown;
  };
  try {
    report = JSON.parse(v.report) as typeof report;
  } catch {
    return 'report is not JSON';
  }
  // The run's columns are what lookups use: they must say what the report says.
  if (
    report?.subject?.name !== v.name ||
    report.subject.version !== v.version ||
    (report.subject.integrity ?? null) !== v.integrity ||
    report.verdict !== v.verdict
  )
    return 'report does not match the run (name, version, integrity or verdict)';
  return {
    name: v.name,
    version: v.version,
    integrity: v.integrity as string | null,
    sandbox: v.sandbox,
    policyHash: v.policyHash as string | null,
    spec: v.spec,
    verdict: v.verdict,
    // One spelling of the time, as the store writes it: runs are compared by it.
    createdAt: new Date(v.createdAt).toISOString(),
    phonehomeVersion: v.phonehomeVersion as string | null,
    durationMs: v.durationMs as number | null,
    report: v.report,
  };
}

/**
 * The file's lines, numbered from 1. A line is cut from the bytes as they come, so an overlong
 * one is refused when it passes the bound, before it is held whole.
 */
async function* lines(file: string): AsyncGenerator<{ n: number; text: string }> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let n = 0;
  const take = (last: Buffer): string => {
    const whole = pending.length ? Buffer.concat([...pending, last]) : last;
    pending = [];
    pendingBytes = 0;
    try {
      return decoder.decode(whole).replace(/\r$/, '');
    } catch {
      throw bad(file, `line ${n} is not UTF-8`);
    }
  };
  for await (const chunk of createReadStream(file, {
    highWaterMark: 1024 * 1024,
  }) as AsyncIterable<Buffer>) {
    let from = 0;
    for (let at = chunk.indexOf(10, from); at !== -1; at = chunk.indexOf(10, from)) {
      n++;
      if (pendingBytes + at - from > MAX_LINE_BYTES)
        throw bad(file, `line ${n} is longer than 64 MB`);
      const text = take(chunk.subarray(from, at));
      from = at + 1;
      if (text.trim()) yield { n, text };
    }
    const rest = chunk.subarray(from);
    pendingBytes += rest.length;
    if (pendingBytes > MAX_LINE_BYTES) throw bad(file, `line ${n + 1} is longer than 64 MB`);
    if (rest.length) pending.push(Buffer.from(rest));
  }
  if (pendingBytes) {
    n++;
    const text = take(Buffer.alloc(0));
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
  // Read whole first: a file that is cut short or altered anywhere changes nothing. The line of
  // each tarball's newest run is kept (export writes oldest first).
  let runs = 0;
  let header = 0;
  const newest = new Map<string, { n: number; createdAt: string; sha: string }>();
  for await (const { n, text } of lines(file)) {
    if (!header) {
      header = n;
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
    const key = runKeyText(run);
    const seen = newest.get(key);
    if (!seen || seen.createdAt <= run.createdAt)
      newest.set(key, { n, createdAt: run.createdAt, sha: sha256(text) });
  }
  if (!header) throw bad(file, 'empty');
  // The second reading takes only the lines the first one checked, byte for byte.
  const keep = new Map([...newest.values()].map((v) => [v.n, v.sha]));
  async function* chosen(): AsyncGenerator<ExportedRun> {
    for await (const { n, text } of lines(file)) {
      const sha = keep.get(n);
      if (!sha) continue;
      const run = sha === sha256(text) ? readRun(text) : 'changed';
      if (typeof run === 'string') throw bad(file, `line ${n} changed while it was imported`);
      yield run;
    }
  }
  const added = await store.importRuns(chosen());
  return { runs, added };
}

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

const runKeyText = (r: ExportedRun): string =>
  [r.name, r.version, r.integrity ?? '', r.sandbox].join('\u0000');
