/**
 * Opening an HTML report in a real headless Chromium (Debian's `chromium`, installed by
 * `scripts/setup.sh --tests`), as a reader would from disk: what it printed to its console, the
 * scripts that failed, every request it tried (a report must make none but for its own file),
 * and the page to ask questions of. Missing Chromium fails the test; it is never skipped.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { packageRoot } from '../../src/paths.js';

export const CHROMIUM = process.env.PHONEHOME_CHROMIUM ?? '/usr/bin/chromium';

export interface OpenedReport {
  page: Page;
  /** Console errors and warnings, uncaught exceptions, CSP violations. */
  errors: string[];
  /** Requests other than the report file itself. */
  requests: string[];
  /** The page's visible text. */
  text: () => Promise<string>;
  /** Saves a screenshot of the whole page as docs/<name>.png when PHONEHOME_SCREENSHOTS=docs. */
  screenshot: (name: string) => Promise<void>;
  close: () => Promise<void>;
}

export async function openReport(file: string): Promise<OpenedReport> {
  if (!existsSync(CHROMIUM))
    throw new Error(
      `no Chromium at ${CHROMIUM}: run \`bash scripts/setup.sh --tests\` (installs Debian's chromium) or set PHONEHOME_CHROMIUM`,
    );
  const browser: Browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // As root (CI), Chromium's own sandbox cannot start; the page is our own report.
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
  const page = await browser.newPage();
  await page.setViewport({ width: 1200, height: 900 });
  const errors: string[] = [];
  const requests: string[] = [];
  const url = pathToFileURL(file).href;
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warn')
      errors.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`page error: ${String(e)}`));
  await page.setRequestInterception(true);
  page.on('request', (r) => {
    if (r.url() === url) void r.continue();
    else {
      requests.push(r.url());
      void r.abort();
    }
  });
  // Before the page's own script: a CSP violation is recorded even when it prints nothing.
  await page.evaluateOnNewDocument(`
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI);
    });
  `);
  await page.goto(url, { waitUntil: 'load' });
  try {
    await page.waitForSelector('body[data-ready="true"]', { timeout: 10_000 });
  } catch (e) {
    await browser.close();
    throw new Error(`the page never finished drawing: ${errors.join('; ') || String(e)}`);
  }
  return {
    page,
    errors,
    requests,
    text: () => page.evaluate('document.body.innerText') as Promise<string>,
    screenshot: async (name) => {
      if (process.env.PHONEHOME_SCREENSHOTS !== 'docs') return;
      const dir = join(packageRoot(), 'docs', 'images');
      mkdirSync(dir, { recursive: true });
      await page.screenshot({ path: join(dir, `${name}.png`) as `${string}.png`, fullPage: true });
    },
    close: () => browser.close(),
  };
}
