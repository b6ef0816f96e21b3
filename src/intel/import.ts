/**
 * `indicators import`: OSV records from a folder (a clone of ossf/malicious-packages, or any tree
 * of `*.json` records) or a zip (osv.dev's `npm/all.zip`), read with bounds: a record file larger
 * than MAX_RECORD_BYTES, a symlink, or more than MAX_FILES files is not read. Nothing is
 * downloaded: the user, or a scheduled job, brings the data.
 */
import { lstatSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PhonehomeError } from '../core/errors.js';
import { readOsvRecord, type MaliciousRecord, type Skipped } from './osv.js';

export const MAX_RECORD_BYTES = 4 * 1024 * 1024;
export const MAX_FILES = 2_000_000;
/** What is kept of the records, at most (the npm part of the OpenSSF data is a few tens of MB). */
export const MAX_RECORDS = 1_000_000;
export const MAX_KEPT_BYTES = 256 * 1024 * 1024;
const MAX_DEPTH = 12;

export interface ImportResult {
  records: MaliciousRecord[];
  files: number;
  skipped: Record<Skipped, number>;
  /** Files that are not OSV records (bad JSON, no id), at most 20 named, with the count. */
  problems: string[];
  problemCount: number;
}

/** Read every OSV record under a folder or in a zip; the newest `modified` wins for one id. */
export async function readOsvSource(path: string): Promise<ImportResult> {
  const p = resolve(path);
  let st;
  try {
    st = statSync(p);
  } catch {
    throw new PhonehomeError('EINTEL', `Nothing at ${p}.`, {
      fix: 'Pass a folder of OSV records (a clone of github.com/ossf/malicious-packages) or a zip of them (osv.dev: npm/all.zip).',
    });
  }
  const byId = new Map<string, MaliciousRecord>();
  let kept = 0;
  const out: ImportResult = {
    records: [],
    files: 0,
    skipped: { withdrawn: 0, 'not-npm': 0, 'not-malicious': 0 },
    problems: [],
    problemCount: 0,
  };
  const problem = (where: string, why: string) => {
    out.problemCount++;
    if (out.problems.length < 20) out.problems.push(`${where}: ${why}`);
  };
  const take = (where: string, text: string) => {
    out.files++;
    if (out.files > MAX_FILES)
      throw new PhonehomeError('EINTEL', `${p} holds more than ${MAX_FILES} files.`, {
        fix: 'Import the npm part only (osv/malicious/npm of the repository, or osv.dev npm/all.zip).',
      });
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (e) {
      return problem(where, `not JSON (${(e as Error).message})`);
    }
    let r: MaliciousRecord[] | Skipped;
    try {
      r = readOsvRecord(doc);
    } catch (e) {
      return problem(where, (e as Error).message);
    }
    if (typeof r === 'string') {
      out.skipped[r]++;
      return;
    }
    for (const rec of r) {
      const key = `${rec.id}\0${rec.name}`;
      const had = byId.get(key);
      if (!had) {
        kept += JSON.stringify(rec).length;
        if (byId.size >= MAX_RECORDS || kept > MAX_KEPT_BYTES)
          throw new PhonehomeError(
            'EINTEL',
            `${p} holds more than ${MAX_RECORDS} records or ${MAX_KEPT_BYTES / 1024 ** 2} MB of them: more than the whole npm part of the OpenSSF data; not imported.`,
            { fix: 'Import the npm part only (osv/malicious/npm, or osv.dev npm/all.zip).' },
          );
      }
      if (!had || rec.modified > had.modified) byId.set(key, rec);
    }
  };
  if (st.isDirectory()) walk(p, 0, take, problem);
  else if (st.isFile()) await readZip(p, take, problem);
  else throw new PhonehomeError('EINTEL', `${p} is neither a folder nor a zip file.`);
  out.records = [...byId.values()].sort(
    (a, b) => a.id.localeCompare(b.id) || a.name.localeCompare(b.name),
  );
  return out;
}

function walk(
  dir: string,
  depth: number,
  take: (where: string, text: string) => void,
  problem: (where: string, why: string) => void,
): void {
  if (depth > MAX_DEPTH) return problem(dir, `deeper than ${MAX_DEPTH} folders; not read`);
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch (e) {
    return problem(dir, `cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  for (const n of names) {
    if (n.startsWith('.')) continue;
    const f = join(dir, n);
    const st = lstatSync(f);
    if (st.isSymbolicLink()) continue;
    if (st.isDirectory()) walk(f, depth + 1, take, problem);
    else if (st.isFile() && n.endsWith('.json')) {
      if (st.size > MAX_RECORD_BYTES) {
        problem(f, `${st.size} bytes, larger than a record can be; not read`);
        continue;
      }
      take(f, readFileSync(f, 'utf8'));
    }
  }
}

async function readZip(
  file: string,
  take: (where: string, text: string) => void,
  problem: (where: string, why: string) => void,
): Promise<void> {
  const { default: yauzl } = await import('yauzl');
  const zip = await new Promise<import('yauzl').ZipFile>((ok, fail) =>
    yauzl.open(
      file,
      { lazyEntries: true, autoClose: true, validateEntrySizes: true, strictFileNames: false },
      (err, z) => (err || !z ? fail(err) : ok(z)),
    ),
  ).catch((e: unknown) => {
    throw new PhonehomeError('EINTEL', `${file} is not a zip file: ${(e as Error).message}`, {
      fix: 'Pass a folder of OSV records, or a zip of them (osv.dev: npm/all.zip).',
      cause: e,
    });
  });
  await new Promise<void>((done, fail) => {
    zip.on('error', (e: Error) =>
      fail(new PhonehomeError('EINTEL', `${file}: ${e.message}`, { cause: e })),
    );
    zip.on('end', () => done());
    zip.on('entry', (entry: import('yauzl').Entry) => {
      const name = entry.fileName;
      if (name.endsWith('/') || !name.endsWith('.json')) return zip.readEntry();
      if (entry.uncompressedSize > MAX_RECORD_BYTES) {
        problem(
          `${file}:${name}`,
          `${entry.uncompressedSize} bytes, larger than a record can be; not read`,
        );
        return zip.readEntry();
      }
      zip.openReadStream(entry, (err, stream) => {
        if (err || !stream) {
          problem(`${file}:${name}`, err?.message ?? 'cannot be read');
          return zip.readEntry();
        }
        const chunks: Buffer[] = [];
        let size = 0;
        stream.on('data', (c: Buffer) => {
          size += c.length;
          if (size <= MAX_RECORD_BYTES) chunks.push(c);
        });
        stream.on('error', (e: Error) => {
          problem(`${file}:${name}`, e.message);
          zip.readEntry();
        });
        stream.on('end', () => {
          if (size > MAX_RECORD_BYTES)
            problem(`${file}:${name}`, 'larger than its entry says; not read');
          else take(`${file}:${name}`, Buffer.concat(chunks).toString('utf8'));
          zip.readEntry();
        });
      });
    });
    zip.readEntry();
  });
}
