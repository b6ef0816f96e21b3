/**
 * What the HTML report draws, from reports judged by the real evaluate() (shipped policy, plus a
 * rule file where a test needs one): every attempt in exactly one destination row, coloured by
 * what decided it; the two identities in the order they ran; a report stored before findings
 * named their attempts still shows every attempt.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { CheckReport, ReportEvent } from '../../../src/core/report.js';
import { evaluate } from '../../../src/policy/evaluate.js';
import { loadPolicy } from '../../../src/policy/load.js';
import { checkView, HTML_BOUNDS, type DestinationRow } from '../../../src/report/model.js';
import { SANDBOX_RESOLVERS } from '../../../src/sandbox/topology.js';

const ID = 'pkg@1.0.0';
const work = mkdtempSync(join(tmpdir(), 'phonehome-model-'));
after(() => rmSync(work, { recursive: true, force: true }));

const lookup = (host: string, extra: Partial<ReportEvent> = {}): ReportEvent => ({
  phase: 'install',
  package: ID,
  kind: 'dns',
  host,
  qtype: 'A',
  resolver: SANDBOX_RESOLVERS[0],
  ...extra,
});
const https = (host: string, ip: string, extra: Partial<ReportEvent> = {}): ReportEvent => ({
  phase: 'install',
  package: ID,
  kind: 'tls',
  host,
  sni: host,
  ip,
  port: 443,
  bytesOut: 300,
  ...extra,
});

function judged(events: ReportEvent[], policyYaml?: string, declares?: string[]): CheckReport {
  let policy = loadPolicy({ discover: false });
  if (policyYaml) {
    const file = join(work, `p${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(file, policyYaml);
    policy = loadPolicy({ file });
  }
  const report: CheckReport = {
    schemaVersion: 2,
    subject: { name: 'pkg', version: '1.0.0', integrity: null, spec: ID },
    phases: [
      { name: 'install', status: 'completed', durationMs: 1000 },
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
        capabilities: ['network'],
        fromRegistry: true,
        ...(declares ? { declares: { install: declares } } : {}),
      },
    ],
  };
  return evaluate(report, { ...policy, resolvers: SANDBOX_RESOLVERS });
}

const rows = (r: CheckReport): DestinationRow[] => checkView(r).timelines.flatMap((t) => t.rows);
const decisionOf = (r: CheckReport, dest: string) =>
  rows(r).find((x) => x.destination === dest)?.decision;

describe('HTML report model', () => {
  it('every attempt is in one row, and each row says what decided it', () => {
    const events = [
      lookup('dl.example.com', { atMs: 100 }),
      https('dl.example.com', '81.2.3.4', { atMs: 120 }),
      lookup('declared.example.com', { atMs: 200 }),
      https('declared.example.com', '81.2.3.5', { atMs: 220 }),
      lookup('other.example.com', { atMs: 300 }),
      https('other.example.com', '81.2.3.6', { atMs: 320 }),
      {
        phase: 'install',
        package: ID,
        kind: 'tcp',
        ip: '81.2.3.7',
        port: 4444,
        bytesOut: 9,
        atMs: 400,
      },
    ] satisfies ReportEvent[];
    const r = judged(
      events,
      'version: 1\nrules:\n  - allow: [dl.example.com:443]\n    phases: [install]\n',
      ['declared.example.com:443'],
    );
    const all = rows(r);
    assert.equal(
      all.reduce((n, x) => n + x.attempts.length, 0),
      events.length,
      'each attempt drawn once',
    );
    assert.equal(decisionOf(r, 'dl.example.com:443'), 'allowed-rule');
    assert.equal(decisionOf(r, 'declared.example.com:443'), 'allowed-declaration');
    assert.equal(decisionOf(r, 'other.example.com:443'), 'denied');
    assert.equal(decisionOf(r, '81.2.3.7:4444'), 'indicator', 'a raw-IP beacon is an indicator');
    const dl = all.find((x) => x.destination === 'dl.example.com:443');
    assert.deepEqual(
      dl?.attempts.map((a) => a.at),
      [100, 120],
      'the lookup and the connection, in time',
    );
    const install = checkView(r).timelines.find((t) => t.phase === 'install');
    assert.equal(install?.axisMs, 1000);
  });

  it('the identities in the order they ran; the second run drawn on the first one’s scale', () => {
    const r = judged([
      https('a.example.com', '81.2.3.4', { identity: 'ci', atMs: 50 }),
      https('a.example.com', '81.2.3.4', { identity: 'laptop', atMs: 60 }),
    ]);
    r.identities = ['laptop', 'ci'];
    const tl = checkView(r).timelines.filter((t) => t.phase === 'install');
    assert.deepEqual(
      tl.map((t) => [t.identity, t.status]),
      [
        ['laptop', 'completed'],
        ['ci', 'run again'],
      ],
    );
    assert.equal(tl[1]?.axisMs, 1000);
    const phases = checkView(r).timelines.map((t) => `${t.phase}:${t.identity}`);
    assert.deepEqual(phases, ['install:laptop', 'install:ci', 'import:', 'exercise:']);
  });

  it('a stored report whose findings do not name their attempts still shows every attempt, not judged', () => {
    const r = judged([lookup('x.example.com'), https('x.example.com', '81.2.3.4')]);
    for (const f of r.findings) delete f.events;
    for (const e of r.events) delete e.atMs;
    const all = rows(r);
    assert.equal(
      all.reduce((n, x) => n + x.attempts.length, 0),
      2,
    );
    assert.ok(all.every((x) => x.decision === 'undecided'));
    assert.ok(all.flatMap((x) => x.attempts).every((a) => a.at === null));
  });

  it('a name without a domain is drawn as such, not as what the exercise asked for', () => {
    const r = judged([lookup('exfil')]);
    assert.equal(decisionOf(r, 'exfil (DNS)'), 'local-name');
  });

  it('declared and done: a destination is marked declared only when its declaration allowed it', () => {
    const r = judged(
      [
        lookup('telemetry.pkg.example'),
        https('telemetry.pkg.example', '81.2.3.4'),
        lookup('exfil.attacker.example'),
        https('exfil.attacker.example', '81.2.3.5'),
      ],
      undefined,
      ['telemetry.pkg.example:443'],
    );
    const install = checkView(r).packages[0]?.phases.find((p) => p.phase === 'install');
    assert.deepEqual(install?.reached, [
      { destination: 'exfil.attacker.example:443', declared: false },
      { destination: 'telemetry.pkg.example:443', declared: true },
    ]);
  });

  it('right-to-left letters and invisible characters in names are shown as escapes', () => {
    const r = judged([https('a.example.com', '81.2.3.4')]);
    r.subject.name = '\u0628';
    r.subject.version = '2\ufe0f';
    const v = checkView(r);
    assert.equal(v.id, '\\u0628@2\\ufe0f');
    assert.ok(v.why.startsWith('FAIL \\u0628@2\\ufe0f: '), v.why);
  });

  it('a capture of 200,000 attempts to 30,000 destinations: bounded rows and attempts, none lost from the counts', () => {
    const events: ReportEvent[] = [];
    for (let i = 0; i < 200_000; i++)
      events.push({
        phase: 'install',
        package: ID,
        kind: 'http',
        host: `h${i % 30_000}.example.com`,
        ip: '81.2.3.4',
        port: 80,
        method: 'GET',
        path: `/${i}`,
        bytesOut: 10,
        atMs: i % 1000,
      });
    const r = judged(events);
    const v = checkView(r);
    const install = v.timelines.find((t) => t.phase === 'install');
    assert.equal(install?.rows.length, HTML_BOUNDS.rowsPerPhase);
    assert.equal(install?.moreRows, 30_000 - HTML_BOUNDS.rowsPerPhase);
    assert.ok(
      install?.rows.every(
        (x) =>
          x.attempts.length + x.more === Math.floor(200_000 / 30_000) ||
          x.attempts.length + x.more === Math.ceil(200_000 / 30_000),
      ),
    );
    assert.equal(v.findings.length, HTML_BOUNDS.findings);
    assert.ok(v.moreFindings > 0);
    assert.equal(r.verdict, 'fail');
  });
});
