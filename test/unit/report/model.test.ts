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
import { checkView, type DestinationRow } from '../../../src/report/model.js';
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
});
