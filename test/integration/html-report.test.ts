/**
 * The HTML report's page in a real headless Chromium, for a report whose every package-provided
 * string is shaped like markup or script: nothing runs, nothing is requested, nothing but the
 * page's own two script elements exists, and the strings are shown as the text they are. The
 * report is judged by the real evaluate() with the shipped policy; only its attempts are made up
 * (the e2e tests open reports of real runs: test/e2e/html.test.ts).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { AuditReport } from '../../src/audit/audit.js';
import {
  REPORT_SCHEMA_VERSION,
  type CheckReport,
  type ReportEvent,
} from '../../src/core/report.js';
import { evaluate } from '../../src/policy/evaluate.js';
import { loadPolicy } from '../../src/policy/load.js';
import { jsonForScript, renderHtml, writeHtmlReport } from '../../src/report/html.js';
import { auditModel, checksModel, checkView } from '../../src/report/model.js';
import { SANDBOX_RESOLVERS } from '../../src/sandbox/topology.js';
import { openReport } from '../support/browser.js';

/** Each would run script, load something or navigate if it reached the page as markup. */
const PAYLOADS = [
  `<script>document.body.dataset.pwned='script'</script>`,
  `"><img src=x onerror="document.body.dataset.pwned='img'">`,
  `javascript:document.body.dataset.pwned='link'`,
  `</script><script>document.body.dataset.pwned='json'</script><!--`,
  `<svg onload="document.body.dataset.pwned='svg'"></svg>`,
  `<iframe srcdoc="<script>parent.document.body.dataset.pwned='frame'</script>"></iframe>`,
];
const SUBJECT = { name: PAYLOADS[0] as string, version: '1.0.0' };
const ID = `${SUBJECT.name}@${SUBJECT.version}`;

function hostileReport(): CheckReport {
  const by = { package: ID, process: `node -e '${PAYLOADS[1]}'`, script: PAYLOADS[4] };
  const events: ReportEvent[] = [
    {
      phase: 'install',
      kind: 'dns',
      host: 'evil.example',
      qtype: 'A',
      resolver: SANDBOX_RESOLVERS[0],
      atMs: 120,
      ...by,
    },
    {
      phase: 'install',
      kind: 'http',
      host: 'evil.example',
      ip: '81.2.3.4',
      port: 80,
      method: 'POST',
      path: `/${PAYLOADS[1]}`,
      httpHost: PAYLOADS[0],
      bodyBytes: 10,
      bytesOut: 200,
      atMs: 150,
      ...by,
    },
    {
      phase: 'import',
      kind: 'tls',
      ip: '81.2.3.5',
      port: 443,
      sni: PAYLOADS[3],
      bytesOut: 300,
      atMs: 40,
      ...by,
    },
    {
      phase: 'exercise',
      kind: 'tcp',
      ip: '81.2.3.6',
      port: 4444,
      bytesOut: 5,
      ...by,
      process: PAYLOADS[5],
    },
  ];
  const report: CheckReport = {
    schemaVersion: REPORT_SCHEMA_VERSION,
    subject: { ...SUBJECT, integrity: null, spec: PAYLOADS[2] as string },
    phases: [
      { name: 'install', status: 'completed', durationMs: 900, note: PAYLOADS[3] as string },
      { name: 'import', status: 'completed', durationMs: 200 },
      { name: 'exercise', status: 'completed', durationMs: 300 },
    ],
    events,
    findings: [],
    verdict: 'pass',
    packages: [
      {
        id: ID,
        installScripts: ['postinstall'],
        scripts: { postinstall: { command: PAYLOADS[5] as string } },
        capabilities: ['network'],
        declares: { install: [PAYLOADS[2] as string] },
        links: [],
        fromRegistry: false,
      },
    ],
  };
  return evaluate(report, { ...loadPolicy({ discover: false }), resolvers: SANDBOX_RESOLVERS });
}

function hostileAudit(r: CheckReport): AuditReport {
  const row = (id: string, report?: CheckReport) => ({
    id,
    status: 'checked' as const,
    path: ['project', PAYLOADS[1] as string, id],
    dev: false,
    optional: false,
    fromStore: false,
    installScripts: report ? ['postinstall'] : [],
    verdict: report?.verdict ?? ('pass' as const),
    ...(report ? { report } : {}),
  });
  return {
    schemaVersion: 1,
    kind: 'audit',
    lockfile: PAYLOADS[3] as string,
    project: { name: PAYLOADS[0] as string, version: '0.0.0' },
    summary: {
      packages: 3,
      checked: 3,
      notInstalled: 0,
      notRun: 0,
      fromStore: 0,
      withInstallScripts: 1,
      withEgress: 1,
      findings: { high: 2 },
      unattributed: 1,
      unattributedLeaks: [PAYLOADS[4] as string],
    },
    packages: [row('quiet-a@1.0.0'), row(ID, r), row('quiet-b@2.0.0')],
    verdict: r.verdict,
    policy: { sources: [PAYLOADS[2] as string], hash: 'x' },
  };
}

const work = mkdtempSync(join(tmpdir(), 'phonehome-html-'));
after(() => rmSync(work, { recursive: true, force: true }));

/** What a page must never do, whatever the report held. */
async function assertInert(file: string): Promise<string> {
  const opened = await openReport(file);
  try {
    const { page } = opened;
    // Everything the viewer builds on demand is built, and everything folded is opened: hostile
    // strings hide there as well as on the first screen.
    await page.evaluate(`
      for (const tr of document.querySelectorAll('tr.item')) tr.click();
      for (const d of document.querySelectorAll('details')) d.open = true;
    `);
    const facts = await page.evaluate(`({
      pwned: document.body.dataset.pwned ?? null,
      scripts: document.querySelectorAll('script').length,
      loaders: document.querySelectorAll('img, svg, iframe, object, embed, a[href], link, form, base').length,
      handlers: [...document.querySelectorAll('*')].filter((el) =>
        [...el.attributes].some((a) => a.name.startsWith('on'))).length,
    })`);
    assert.deepEqual(facts, { pwned: null, scripts: 2, loaders: 0, handlers: 0 });
    assert.deepEqual(opened.errors, [], 'no console errors or CSP violations');
    assert.deepEqual(opened.requests, [], 'nothing requested');
    return await opened.text();
  } finally {
    await opened.close();
  }
}

describe('HTML report in Chromium: hostile strings stay text', () => {
  it('the data block cannot end its script element', () => {
    const json = jsonForScript({ s: PAYLOADS[3] });
    assert.doesNotMatch(json, /[<>&]/);
    assert.deepEqual(JSON.parse(json), { s: PAYLOADS[3] });
  });

  it('a check whose names, hosts, paths, SNI, command lines and notes are markup runs nothing', async () => {
    const report = hostileReport();
    assert.equal(report.verdict, 'fail', 'the shipped policy fails a raw-IP beacon');
    const file = join(work, 'check.html');
    writeHtmlReport(file, checksModel([report]));
    const html = readFileSync(file, 'utf8');
    assert.equal(html.match(/<script/g)?.length, 2, 'only the data block and the viewer');
    const text = await assertInert(file);
    for (const p of [PAYLOADS[0], `/${PAYLOADS[1]}`, PAYLOADS[3], PAYLOADS[5]])
      assert.ok(text.includes(p as string), `shown as text: ${p}`);
    assert.ok(text.includes(`FAIL`), text.slice(0, 300));
    assert.ok(text.includes(ID), 'the subject name is shown, as text');
  });

  it('an audit whose lockfile paths and project name are markup runs nothing, and filters', async () => {
    const file = join(work, 'audit.html');
    writeHtmlReport(file, auditModel(hostileAudit(hostileReport())));
    const text = await assertInert(file);
    assert.ok(text.includes(PAYLOADS[1] as string), 'the path is shown as text');
  });

  it('bidirectional and invisible characters are shown as escapes, not applied', () => {
    const r = hostileReport();
    r.subject.name = 'pkg\u202egpj.exe';
    const v = checkView(r);
    assert.ok(v.id.includes('\\u202e'), v.id);
    assert.ok(renderHtml(checksModel([r])).includes('\\\\u202e'));
  });
});
