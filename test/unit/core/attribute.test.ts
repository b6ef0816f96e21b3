/**
 * Attribution from facts the package cannot forge: step windows and process start times. The
 * npm variables a process claims never decide who is charged, and no event is ever dropped.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { attribute, buildReport, type PhaseWindow } from '../../../src/core/report.js';
import type { CaptureEvent, DnsEvent, ProcessInfo } from '../../../src/core/terms.js';

const windows: PhaseWindow[] = [
  { name: 'install', package: 'dep@1.0.0', startMs: 1000, endMs: 2000 },
  { name: 'install', package: 'app@1.0.0', startMs: 2010, endMs: 3000 },
  { name: 'import', package: 'app@1.0.0', startMs: 3100, endMs: 3500 },
];
const dns = (t: number, proc?: ProcessInfo): DnsEvent => ({
  kind: 'dns',
  seq: t,
  t,
  qname: 'x.example',
  qtype: 'A',
  resolver: '192.168.1.1',
  resolverPort: 53,
  transport: 'udp',
  answer: '198.18.0.1',
  ...(proc ? { proc } : {}),
});

describe('attribute', () => {
  it('charges the package of the step that was running', () => {
    assert.deepEqual(attribute(dns(1500), windows, 'app@1.0.0'), {
      phase: 'install',
      package: 'dep@1.0.0',
      noProcess: true,
    });
    assert.equal(attribute(dns(3200), windows, 'app@1.0.0').phase, 'import');
  });

  it('ignores the npm identity a process claims', () => {
    const forged = {
      pid: 9,
      cmd: 'node x.js',
      startMs: 2500,
      package: 'bcrypt@5.1.1',
      script: 'install',
    };
    const who = attribute(dns(2600, forged), windows, 'app@1.0.0');
    assert.equal(who.package, 'app@1.0.0');
    assert.equal(who.script, 'install', 'kept as a hint for display');
  });

  it("charges a process's attempts to the step that started it", () => {
    const early = { pid: 9, cmd: 'node later.js', startMs: 1900 };
    assert.equal(attribute(dns(2500, early), windows, 'app@1.0.0').package, 'dep@1.0.0');
  });

  it('an attempt just after a step (capture lag) is that step’s; one outside every step is the subject’s, in install', () => {
    assert.equal(attribute(dns(3050), windows, 'app@1.0.0').package, 'app@1.0.0');
    assert.equal(attribute(dns(3050), windows, 'app@1.0.0').phase, 'install');
    const outside = attribute(dns(9000), windows, 'app@1.0.0');
    assert.deepEqual(outside, {
      phase: 'install',
      package: 'app@1.0.0',
      outside: true,
      noProcess: true,
    });
    assert.deepEqual(attribute(dns(10), [], 'app@1.0.0').outside, true);
  });
});

describe('buildReport', () => {
  it('a summary of many attempts is charged where they were made, both steps when they span two', () => {
    const subject = { name: 'app', version: '1.0.0', integrity: null, spec: 'app' };
    const event = dns(1500);
    const r = buildReport({
      subject,
      phases: [],
      windows,
      events: [],
      summaries: [{ event, count: 900, firstT: 1500, lastT: 3200 }],
    });
    assert.deepEqual(
      r.events.map((e) => [e.phase, e.package, e.count]),
      [
        ['install', 'dep@1.0.0', 900],
        ['import', 'app@1.0.0', 900],
      ],
    );
  });

  const subject = { name: 'app', version: '1.0.0', integrity: null, spec: 'app' };
  it('drops no event, counts those without process or outside steps, and makes tampering critical', () => {
    const events: CaptureEvent[] = [
      dns(1500),
      dns(9000),
      dns(3200, { pid: 3, cmd: 'node', startMs: 3150 }),
    ];
    const r = buildReport({ subject, phases: [], windows, events, tampering: ['a forged line'] });
    assert.equal(r.events.length, 3);
    assert.deepEqual(r.attribution, { withoutProcess: 1, outsideSteps: 1 });
    const ids = r.findings.map((f) => [f.id, f.severity]);
    assert.deepEqual(ids, [
      ['tampering', 'critical'],
      ['unattributed', 'medium'],
    ]);
    assert.equal(r.verdict, 'fail');
  });
});
