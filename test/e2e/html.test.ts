/**
 * End to end: `check --html` on real runs through the sandbox, opened in a real headless Chromium
 * (the audit and gate views are opened from their own e2e tests: registry.test.ts, gate.test.ts).
 * With PHONEHOME_SCREENSHOTS=docs, the screenshots in docs/images are made here.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cli, fixture, leftovers } from '../support/cli.js';
import { openReport } from '../support/browser.js';
import { images } from '../support/sandbox.js';

const work = mkdtempSync(join(tmpdir(), 'phonehome-html-e2e-'));
after(() => rmSync(work, { recursive: true, force: true }));

describe('phonehome check --html (CLI, Chromium)', () => {
  before(async () => {
    await images();
  });

  it('a bait leak and an honest package: one page, both verdicts, the leak coloured as a leak, nothing requested', async () => {
    const file = join(work, 'check.html');
    const r = await cli([
      'check',
      fixture('install-env-post'),
      fixture('honest-no-scripts'),
      '--html',
      file,
      '--no-cache',
    ]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(await leftovers(r.pid), 0);
    const page = await openReport(file);
    try {
      const text = await page.text();
      assert.match(text, /FAIL install-env-post@1\.0\.0: BAIT SECRETS SENT OUT/);
      assert.match(text, /PASS honest-no-scripts@1\.0\.0: no egress attempts/);
      const facts = (await page.page.evaluate(`({
        bait: document.querySelectorAll('details[data-decision="bait"]').length,
        dots: document.querySelectorAll('.track .dot').length,
        suggestions: document.querySelectorAll('pre.yaml').length,
        title: [...document.querySelectorAll('.track .dot')].map((d) => d.title).join('\\n'),
      })`)) as { bait: number; dots: number; suggestions: number; title: string };
      assert.ok(facts.bait >= 1, 'the POST with the secrets is drawn as a bait leak');
      assert.ok(facts.dots >= 4, `every attempt is a dot on the timeline (${facts.dots})`);
      assert.ok(facts.suggestions >= 1, 'a suggested rule to copy');
      assert.match(facts.title, /process postinstall: node collect\.js/, 'the process on hover');
      assert.deepEqual(page.errors, []);
      assert.deepEqual(page.requests, []);
      await page.page.evaluate(
        `document.querySelector('details[data-decision="bait"]').open = true`,
      );
      await page.screenshot('html-check');
    } finally {
      await page.close();
    }
  });

  it('a package whose path, Host header, SNI and command line are markup: shown as text, nothing runs', async () => {
    const file = join(work, 'hostile.html');
    const r = await cli(['check', fixture('html-injection'), '--html', file, '--no-cache']);
    assert.equal(r.code, 1, r.stderr);
    const page = await openReport(file);
    try {
      await page.page.evaluate(
        `for (const d of document.querySelectorAll('details')) d.open = true`,
      );
      const facts = (await page.page.evaluate(`({
        pwned: document.body.dataset.pwned ?? null,
        scripts: document.querySelectorAll('script').length,
        loaders: document.querySelectorAll('img, svg, iframe, object, embed, a[href], link, form, base').length,
      })`)) as { pwned: string | null; scripts: number; loaders: number };
      assert.deepEqual(facts, { pwned: null, scripts: 2, loaders: 0 });
      const text = await page.text();
      assert.ok(text.includes(`/x"><img/src=x/onerror=document.body.dataset.pwned='img'>`), text);
      assert.ok(
        text.includes(`<svg/onload=document.body.dataset.pwned='svg'>`),
        'the command line',
      );
      assert.deepEqual(page.errors, []);
      assert.deepEqual(page.requests, []);
    } finally {
      await page.close();
    }
  });

  it('an --html path in a folder that does not exist: exit 2 before anything runs, nothing written', async () => {
    const missing = join(work, 'no-such-folder', 'r.html');
    const r = await cli(['check', fixture('honest-no-scripts'), '--html', missing]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /EOUTPUT/);
    assert.doesNotMatch(r.stderr, /phase install/, 'nothing ran');
    assert.equal(existsSync(missing), false);
    assert.deepEqual(
      readdirSync(work).filter((f) => f.endsWith('.tmp')),
      [],
      'no half-written file',
    );
  });
});
