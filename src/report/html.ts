/**
 * The HTML report: one self-contained file (inline style, script and data; nothing is fetched
 * when it is opened), viewable from disk or as a CI artifact.
 *
 * Safety of the viewer's browser: the page's data (PageModel, see model.ts) is JSON in a
 * `<script type="application/json">` block with every `<`, `>` and `&` written as a \u escape, so
 * nothing in it can end the block or be parsed as markup; the viewer (report-viewer/viewer.js)
 * writes every string as text. On top, the file's own Content-Security-Policy allows only its one
 * style sheet and its one script, by hash, nothing else (no other script, no network, no frames,
 * no forms), and requires Trusted Types, so a markup sink (innerHTML, …) would throw instead of
 * parsing.
 */
import { createHash } from 'node:crypto';
import {
  accessSync,
  constants,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { PhonehomeError } from '../core/errors.js';
import { packageRoot, phonehomeVersion } from '../paths.js';
import { DECISION_LABELS, type PageModel } from './model.js';

/**
 * A viewer file as the browser will hash it: an HTML parser turns CR LF and CR into LF before a
 * script or style is hashed, so a file checked out with Windows line endings must be given LF
 * endings here, or its hash would not match and nothing would render.
 */
const asset = (name: string) =>
  readFileSync(join(packageRoot(), 'report-viewer', name), 'utf8').replace(/\r\n?/g, '\n');

const sha256 = (s: string) => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`;

/** Text for an HTML text node or a quoted attribute. */
export function escapeHtml(s: string): string {
  return s.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c,
  );
}

/** JSON that can sit inside a script element: nothing in it can close the element or open a comment. */
export function jsonForScript(value: unknown): string {
  return JSON.stringify(value).replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${(c.codePointAt(0) ?? 0).toString(16).padStart(4, '0')}`,
  );
}

export function contentSecurityPolicy(css: string, js: string): string {
  return [
    "default-src 'none'",
    `style-src ${sha256(css)}`,
    `script-src ${sha256(js)}`,
    'img-src data:',
    "base-uri 'none'",
    "form-action 'none'",
    "require-trusted-types-for 'script'",
    "trusted-types 'none'",
  ].join('; ');
}

export function renderHtml(page: PageModel): string {
  const css = asset('viewer.css');
  const js = asset('viewer.js');
  const title = `phonehome ${page.kind}: ${page.verdict.toUpperCase()} ${page.title}`;
  return [
    '<!doctype html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="${escapeHtml(contentSecurityPolicy(css, js))}">`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    '<meta name="referrer" content="no-referrer">',
    `<meta name="generator" content="phonehome ${escapeHtml(phonehomeVersion())}">`,
    `<title>${escapeHtml(title)}</title>`,
    `<style>${css}</style>`,
    '</head>',
    '<body>',
    `<noscript><p>${escapeHtml(title)}. This report is drawn by its own script; allow scripts for this file, or read the same report with --json.</p></noscript>`,
    '<main id="app"></main>',
    `<script type="application/json" id="phonehome-data">${jsonForScript({ ...page, labels: DECISION_LABELS })}</script>`,
    `<script>${js}</script>`,
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

/**
 * Fail before anything runs when the report could not be written at the end: the folder must
 * exist and be writable, and the path must not be a folder.
 */
export function checkOutputPath(file: string, flag = '--html'): void {
  const target = resolve(file);
  let isDir = false;
  try {
    isDir = statSync(target).isDirectory();
  } catch {
    // A file that does not exist yet is what we expect.
  }
  if (isDir) throw new PhonehomeError('EOUTPUT', `${flag} ${file} is a folder; give a file name.`);
  try {
    accessSync(dirname(target), constants.W_OK);
  } catch {
    throw new PhonehomeError(
      'EOUTPUT',
      `${flag} ${file}: the folder ${dirname(target)} does not exist or is not writable.`,
    );
  }
}

/** Write the file whole or not at all (a reader never sees half a report). */
export function writeHtmlReport(file: string, page: PageModel): void {
  const target = resolve(file);
  const tmp = join(dirname(target), `.${process.pid}.${Date.now()}.phonehome-html.tmp`);
  try {
    writeFileSync(tmp, renderHtml(page), { mode: 0o644 });
    renameSync(tmp, target);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new PhonehomeError('EOUTPUT', `--html ${file}: ${(err as Error).message}`);
  }
}
