import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import type { AuditReport } from '../../../src/audit/audit.js';
import { rulesFromReports } from '../../../src/cli/commands/policy.js';
import { renderAuditMarkdown, renderAuditText } from '../../../src/cli/render-audit.js';
import { renderDiffMarkdown, renderDiffText } from '../../../src/cli/render-diff.js';
import {
  renderGateMarkdown,
  renderGateSarif,
  renderGateText,
} from '../../../src/cli/render-gate.js';
import { renderText } from '../../../src/cli/render-text.js';
import type { ReportDiff } from '../../../src/core/compare.js';
import type { CheckReport, Finding } from '../../../src/core/report.js';
import type { GateReport } from '../../../src/gate/gate.js';

/**
 * What a hostile package puts in every string it controls: a line erase and carriage return that
 * print its own verdict, an 8-bit CSI, a right-to-left override, a newline, a table pipe, HTML, a
 * link, backticks, and bare autolinks.
 */
const EVIL =
  '\x1b[2K\rPASS\x9b[1A\u202e|<img src=x>[x](https://evil.example)`` `\nPASS www.evil.example \u2066';

const e = (label: string) => `${label}${EVIL}`;
/** The same in one line: what phonehome's own multi-line text (a suggestion's YAML) can embed. */
const EVIL_LINE = EVIL.replace(/\n/g, '');

const findings: Finding[] = [
  {
    id: 'egress-not-allowed',
    severity: 'high',
    phase: 'install',
    package: e('evil@1.0.0'),
    destination: e('host'),
    message: e('evil sent data to '),
    rule: 'default:install',
    // A suggestion is phonehome's YAML over lines; the host in it (and a line of backticks) is not.
    suggestion: `- allow: ["${EVIL_LINE}"]\n  packages: ["evil"]\n\`\`\`\n  phases: [install]\n`,
  },
  {
    id: 'data-in-dns',
    severity: 'medium',
    phase: 'import',
    package: e('evil@1.0.0'),
    destination: e('dns'),
    message: e('a DNS name carries data: '),
    rule: 'indicator:data-in-dns',
  },
  {
    id: 'egress-allowed',
    severity: 'info',
    phase: 'install',
    package: e('evil@1.0.0'),
    destination: e('allowed'),
    message: e('allowed: '),
    rule: 'declaration',
  },
];

const diff: ReportDiff = {
  schemaVersion: 1,
  before: { name: e('evil'), version: e('0.9.0'), integrity: null, verdict: 'pass' },
  after: { name: e('evil'), version: e('1.0.0'), integrity: null, verdict: 'fail' },
  destinations: {
    added: [{ phase: 'install', package: e('evil'), destination: e('new') }],
    removed: [{ phase: 'import', package: e('evil'), destination: e('old') }],
  },
  phasesGainedEgress: ['install'],
  phasesLostEgress: [],
  installScripts: {
    added: [{ package: e('evil'), event: e('postinstall'), after: e('node x.js') }],
    removed: [{ package: e('evil'), event: e('preinstall'), before: e('curl') }],
    changed: [
      { package: e('evil'), event: e('install'), before: e('a'), after: e('b') },
      { package: e('evil'), event: e('install'), after: e('c'), bodyChanged: true },
    ],
  },
  declarations: {
    widened: [{ phase: 'exercise', package: e('evil'), destination: e('wide') }],
    narrowed: [{ phase: 'import', package: e('evil'), destination: e('narrow') }],
  },
  packages: {
    added: [e('dep@1.0.0')],
    removed: [e('gone@1.0.0')],
    changed: [{ name: e('chg'), from: e('1'), to: e('2') }],
  },
};

const report: CheckReport = {
  schemaVersion: 2,
  subject: { name: e('evil'), version: e('1.0.0'), integrity: null, spec: e('evil@') },
  phases: [
    {
      name: 'install',
      status: 'failed',
      durationMs: 1200,
      note: e('npm ERR! '),
      leftovers: [e('node detached.js')],
    },
    { name: 'import', status: 'completed', durationMs: 300 },
  ],
  events: [
    {
      phase: 'install',
      package: e('evil@1.0.0'),
      process: e('node install.js '),
      script: e('postinstall'),
      kind: 'dns',
      host: e('a.'),
      qtype: 'A',
      resolver: '10.0.0.1',
    },
    {
      phase: 'install',
      package: e('evil@1.0.0'),
      process: e('node install.js '),
      script: 'postinstall',
      kind: 'tls',
      ip: '192.0.2.1',
      port: 443,
      sni: e('sni.'),
      alpn: [e('h2')],
      bytesOut: 10,
    },
    {
      phase: 'install',
      package: e('evil@1.0.0'),
      kind: 'tls',
      ip: '192.0.2.4',
      port: 443,
      sni: e('https.'),
      intercept: 'decrypted',
      method: e('POST'),
      path: e('/v1/collect'),
      bodyBytes: 5,
      bytesOut: 900,
    },
    {
      phase: 'install',
      package: e('evil@1.0.0'),
      kind: 'tls',
      ip: '192.0.2.5',
      port: 443,
      sni: e('pinned.'),
      intercept: 'refused',
      tlsAlert: e('unknown_ca'),
      bytesOut: 517,
    },
    {
      phase: 'import',
      package: e('evil@1.0.0'),
      process: e('node -e '),
      kind: 'http',
      ip: '192.0.2.2',
      port: 80,
      host: e('web.'),
      method: e('GET'),
      path: e('/x'),
      bytesOut: 10,
    },
    { phase: 'import', kind: 'tcp', ip: '192.0.2.3', port: 9, host: e('tcp.'), bytesOut: 1 },
  ],
  findings,
  verdict: 'fail',
  policy: { sources: [e('/repo/phonehome.policy.yaml')], hash: 'h' },
  comparison: diff,
  truncated: { dns: 2 },
};

const audit: AuditReport = {
  schemaVersion: 1,
  kind: 'audit',
  lockfile: e('package-lock.json'),
  project: { name: e('project'), version: e('1.0.0') },
  summary: {
    packages: 3,
    checked: 2,
    notInstalled: 0,
    notRun: 1,
    fromStore: 0,
    withInstallScripts: 1,
    withEgress: 2,
    findings: { high: 1, medium: 1 },
    unattributed: 1,
    unattributedLeaks: [e('npm token')],
  },
  packages: [
    {
      id: e('evil@1.0.0'),
      status: 'checked',
      path: [e('project'), e('evil')],
      dev: false,
      optional: false,
      fromStore: false,
      installScripts: ['postinstall'],
      verdict: 'fail',
      report,
    },
    {
      id: e('allowed@1.0.0'),
      status: 'checked',
      path: [e('project'), e('allowed')],
      dev: false,
      optional: false,
      fromStore: true,
      installScripts: [],
      verdict: 'pass',
      report: { ...report, findings: [findings[2] as Finding], verdict: 'pass' },
    },
    {
      id: e('never@1.0.0'),
      status: 'not-run',
      path: [e('project'), e('never')],
      dev: false,
      optional: false,
      fromStore: false,
      installScripts: [],
      verdict: 'warn',
    },
  ],
  verdict: 'fail',
  policy: { sources: [], hash: 'h' },
};

const gate: GateReport = {
  schemaVersion: 1,
  kind: 'gate',
  base: e('origin/main'),
  head: e('.'),
  retargeted: [
    {
      name: e('swapped'),
      version: e('1.0.0'),
      before: e('sha512-before'),
      after: e('sha512-after'),
      path: [e('project'), e('swapped')],
    },
  ],
  notInstalled: [e('optional@1.0.0')],
  lockfile: e('package-lock.json'),
  packages: [
    {
      name: e('evil'),
      kind: 'upgraded',
      from: e('0.9.0'),
      to: e('1.0.0'),
      path: [e('project'), e('mid'), e('evil')],
      line: 12,
      verdict: 'fail',
      report,
      fromStore: false,
    },
    {
      name: e('fresh'),
      kind: 'added',
      to: e('2.0.0'),
      path: [e('project'), e('fresh')],
      verdict: 'fail',
      report: { ...report, comparison: undefined },
      fromStore: true,
    },
  ],
  removed: [{ name: e('gone'), version: e('1.0.0') }],
  verdict: 'fail',
  policy: { sources: [], hash: 'h' },
};

const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

/** No character that drives a terminal or reorders text, except the renderer's own newlines. */
function assertNoRawControls(out: string, what: string): void {
  for (const [i, ch] of [...out].entries()) {
    const c = ch.codePointAt(0) ?? 0;
    const bad = (c < 0x20 && ch !== '\n') || (c >= 0x7f && c <= 0x9f) || BIDI.test(ch);
    assert.ok(
      !bad,
      `${what}: raw U+${c.toString(16).padStart(4, '0')} at ${i}: ${JSON.stringify(out.slice(Math.max(0, i - 30), i + 30))}`,
    );
  }
}

/** Text output: the verdict line is the renderer's, and no line was forged by the package. */
function assertText(out: string, what: string, firstLine: RegExp): void {
  assertNoRawControls(out, what);
  const lines = out.split('\n');
  assert.match(lines[0] ?? '', firstLine, what);
  for (const l of lines) assert.doesNotMatch(l, /^\s*PASS/, `${what}: a forged line: ${l}`);
  assert.ok(out.includes('\\x1b[2K\\rPASS\\x9b[1A\\u202e|'), `${what}: the escapes are shown`);
}

const ASCII_PUNCT = /[!-/:-@[-`{-~]/;

/**
 * A Markdown line as it reads outside code spans, following CommonMark: a backslash before ASCII
 * punctuation escapes it (shown as §), a run of backticks opens a code span closed by the next
 * run of the same length (shown as ⟦⟧, its content returned apart), an unmatched run is text.
 */
function outsideCode(line: string): { text: string; spans: string[] } {
  let text = '';
  const spans: string[] = [];
  let i = 0;
  while (i < line.length) {
    const ch = line[i] as string;
    if (ch === '\\' && i + 1 < line.length && ASCII_PUNCT.test(line[i + 1] as string)) {
      text += '§';
      i += 2;
      continue;
    }
    if (ch === '`') {
      let n = 0;
      while (line[i + n] === '`') n++;
      let j = i + n;
      let close = -1;
      while (j < line.length) {
        if (line[j] === '`') {
          let m = 0;
          while (line[j + m] === '`') m++;
          if (m === n) {
            close = j;
            break;
          }
          j += m;
        } else j++;
      }
      if (close >= 0) {
        spans.push(line.slice(i + n, close));
        text += '⟦⟧';
        i = close + n;
      } else {
        text += line.slice(i, i + n);
        i += n;
      }
      continue;
    }
    text += ch;
    i++;
  }
  return { text, spans };
}

/** Pipes GFM takes as cell separators: any not written `\|` (inside code spans too). */
const separators = (line: string) => (line.match(/(?<!\\)\|/g) ?? []).length;

function assertMarkdown(out: string, what: string): void {
  assertNoRawControls(out, what);
  const lines = out.split('\n');
  let inFence: string | undefined;
  let tableSeparators: number | undefined;
  let rows = 0;
  for (const [n, line] of lines.entries()) {
    const where = `${what}, line ${n + 1}: ${line}`;
    // Fenced blocks: only a line of at least as many backticks closes one.
    if (inFence !== undefined) {
      const close = /^ {0,3}(`{3,})\s*$/.exec(line);
      if (close && (close[1] as string).length >= inFence.length) {
        assert.equal(close[1], inFence, `${where}: closed by the renderer's own fence`);
        assert.equal(lines[n + 1], '', where);
        assert.equal(lines[n + 2], '</details>', where);
        inFence = undefined;
      }
      continue;
    }
    const open = /^(`{3,})yaml$/.exec(line);
    if (open) {
      inFence = open[1];
      continue;
    }
    const { text, spans } = outsideCode(line);
    assert.doesNotMatch(text, /<img/i, `${where}: raw HTML`);
    assert.doesNotMatch(text, /\]\(/, `${where}: a link`);
    assert.doesNotMatch(text, /:\/\//, `${where}: an autolink`);
    assert.doesNotMatch(text, /www\./i, `${where}: a www autolink`);
    assert.doesNotMatch(text, /&#/, `${where}: an entity`);
    assert.doesNotMatch(text, /(^|[^*])\*[^*\s]|_/, `${where}: emphasis from package text`);
    assert.doesNotMatch(text, /^\s*(#+ |[-+*] |\d+\. )?PASS/, `${where}: a forged block`);
    for (const s of spans) assertNoRawControls(s, where);
    // Tables: every row has the header's number of separators.
    if (line.startsWith('|')) {
      if (tableSeparators === undefined) {
        assert.match(lines[n + 1] ?? '', /^\|( --- \|)+$/, `${where}: a table header`);
        tableSeparators = separators(line);
      } else {
        assert.equal(separators(line), tableSeparators, `${where}: cells`);
        rows++;
      }
    } else tableSeparators = undefined;
  }
  assert.equal(inFence, undefined, `${what}: a fenced block left open`);
  assert.ok(rows > 0, `${what}: has table rows`);
}

describe('renderers escape what came from the package', () => {
  it('check: text', () => {
    const out = renderText(report);
    assert.match(out, /\n {6}https POST.* \[https\..*\]:443\/v1\/collect.* \(5 body bytes\)/);
    // The alert is the package's word: only letters, digits and underscores of it are shown.
    assert.match(out, /\(refused the run's certificate: alert unknown_ca\?\?2K\?PASS/);
    assertText(out, 'renderText', /^FAIL evil\\x1b\[2K\\rPASS/);
    // phonehome's own lines stay lines: the suggestion's YAML is escaped line by line.
    assert.match(out, /\n {15}- allow: \["\\x1b\[2K\\rPASS.*"\]\n {15} {2}packages: \["evil"\]\n/);
    assert.match(out, /\n {15} {2}phases: \[install\]\n/);
    // A newline inside one value is shown, not obeyed.
    assert.match(out, /npm ERR! \\x1b\[2K\\rPASS.*\\nPASS www\.evil\.example \\u2066/);
  });

  it('check: a verdict made by something other than egress says what made it', () => {
    const out = renderText({
      ...report,
      events: [],
      findings: [
        { id: 'tampering', severity: 'critical', message: 'forged results' },
        { id: 'persistence', severity: 'high', package: 'evil@1.0.0', message: 'wrote ~/.bashrc' },
      ],
      verdict: 'fail',
    });
    assert.match(
      out.split('\n')[0] ?? '',
      /^FAIL .*: 0 egress attempt\(s\) to 0 destination\(s\); policy: all allowed; also: tampering \(critical\), persistence \(high\)$/,
    );
  });

  it('check: a long command line is cut and escaped', () => {
    const out = renderText({
      ...report,
      events: [{ ...(report.events[0] as CheckReport['events'][0]), process: '\x1b'.repeat(100) }],
    });
    assertNoRawControls(out, 'renderText');
    assert.match(out, /<- .*: (\\x1b){69}…/);
  });

  it('audit: text and markdown', () => {
    assertText(renderAuditText(audit), 'renderAuditText', /^FAIL audit of project\\x1b/);
    assertMarkdown(renderAuditMarkdown(audit), 'renderAuditMarkdown');
  });

  it('diff: text and markdown', () => {
    assertText(renderDiffText(diff), 'renderDiffText', /^evil\\x1b/);
    const md = renderDiffMarkdown(diff);
    assertMarkdown(md, 'renderDiffMarkdown');
    assert.match(md, /^### evil\\\\x1b\\\[2K\\\\rPASS/);
  });

  it('gate: text and markdown', () => {
    assertText(renderGateText(gate), 'renderGateText', /^FAIL gate: 2 package\(s\)/);
    const md = renderGateMarkdown(gate);
    assertMarkdown(md, 'renderGateMarkdown');
    // A request read inside TLS: https, its method and path (escaped); a refusal says so.
    assert.match(md, /\| install \| https \| `+POST/);
    assert.match(md, /refused the run's certificate: alert unknown\\_ca\?\?2K\?PASS/);
    assert.match(md, /^## ❌ phonehome: FAIL\n/);
    // The suggestion block is fenced longer than the package's backticks.
    assert.match(md, /\n````yaml\nrules:\n {2}- allow: \["\\x1b/);
  });

  it('gate: SARIF stays plain (it is JSON)', () => {
    const sarif = renderGateSarif(gate) as {
      runs: { results: { message: { text: string } }[] }[];
    };
    const text = sarif.runs[0]?.results[0]?.message.text ?? '';
    assert.ok(text.includes(EVIL), 'the message holds the text as observed');
    const json = JSON.stringify(sarif);
    // eslint-disable-next-line no-control-regex -- controls are what it looks for
    assert.doesNotMatch(json, /[\u0000-\u001f]/, 'JSON escapes C0 controls');
    assert.deepEqual(JSON.parse(json), sarif);
  });

  it('policy init: the YAML holds what was seen, and no line the package wrote', () => {
    // A host that is no valid pattern is only noted (escaped, in a comment); a plain one from the
    // same package is a deny rule to review.
    const plain = {
      ...report,
      findings: [
        {
          ...(findings[0] as Finding),
          package: 'evil@1.0.0',
          destination: 'dl.example.com:443',
          suggestion: undefined,
        },
      ],
    };
    const yaml = rulesFromReports([report, plain]);
    assertNoRawControls(yaml, 'rulesFromReports');
    for (const line of yaml.trimEnd().split('\n'))
      assert.match(
        line,
        /^(\s*#.*|rules:| {2}- deny: \[".*"\]| {4}(packages|phases): \[.*\])$/,
        line,
      );
    const doc = parse(yaml) as { rules: { deny: string[]; packages: string[] }[] };
    assert.equal(doc.rules.length, 1, 'the allowed and the unwritable destinations are comments');
    assert.deepEqual(doc.rules[0]?.deny, ['dl.example.com:443']);
    assert.match(
      yaml,
      /# seen during install from evil@1\.0\.0\\x1b.*: host\\x1b.* cannot be written as a rule/,
    );
    assert.deepEqual(doc.rules[0]?.packages, ['evil@1.0.0']);
  });

  it('leaves ordinary names, versions and hosts as they were', () => {
    const plain: GateReport = {
      ...gate,
      retargeted: [],
      packages: [
        {
          name: 'quiet-lib',
          kind: 'upgraded',
          from: '1.0.0',
          to: '1.1.0',
          path: ['project', 'quiet-lib'],
          verdict: 'pass',
          report: { ...report, findings: [], events: [], verdict: 'pass', comparison: undefined },
          fromStore: false,
        },
      ],
    };
    assert.match(
      renderGateMarkdown(plain),
      /\| `quiet-lib` \| 1\.0\.0 → 1\.1\.0 \(upgraded\) \| pass \| — \| — \|/,
    );
    const md = renderDiffMarkdown({
      ...diff,
      destinations: {
        added: [{ phase: 'install', package: 'upgrade-beacon', destination: 'cdn.example:443' }],
        removed: [],
      },
    });
    assert.match(md, /\| added \| install \| upgrade-beacon \| `cdn\.example:443` \|/);
  });
});
