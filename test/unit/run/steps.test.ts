/**
 * The host's reader of the step driver's results: what the driver could have written is taken,
 * anything else is tampering (never an internal error), and nothing after a bad line is believed.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { StepOutput } from '../../../src/agent/step.js';
import { installSteps, NOT_RUN, parseHarness, readStepResults } from '../../../src/run/steps.js';
import type { TreePackageInfo } from '../../../src/resolve/stage.js';

const limits = { settleMs: 1000, maxOutputBytes: 1024 };
const steps = [
  { label: 'a', timeoutMs: 5000 },
  { label: 'b', timeoutMs: 5000 },
];
const out = (start: number, over: Partial<StepOutput> = {}): StepOutput => ({
  start,
  end: start + 100,
  settledAt: start + 150,
  code: 0,
  signal: null,
  timedOut: false,
  error: null,
  stdout: '',
  stderr: '',
  stdoutBytes: 0,
  stderrBytes: 0,
  leftovers: [],
  leftoverCount: 0,
  killed: 0,
  survivors: 0,
  ...over,
});
const lines = (...o: unknown[]) =>
  o.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join('\n') + '\n';

describe('readStepResults', () => {
  it('takes one valid line per step', () => {
    const r = readStepResults(lines(out(1000), out(1200)), steps, limits);
    assert.deepEqual(r.tampering, []);
    assert.equal(r.outputs.length, 2);
    assert.equal(r.notRun, 0);
  });

  it('counts steps the budget left unrun, and refuses a step run after them', () => {
    assert.deepEqual(readStepResults(lines(out(1000), NOT_RUN), steps, limits), {
      outputs: [out(1000)],
      notRun: 1,
      tampering: [],
    });
    const r = readStepResults(lines(NOT_RUN, out(1000)), steps, limits);
    assert.equal(r.tampering.length, 1);
    assert.match(r.tampering[0] ?? '', /after it had run out of time/);
  });

  it('calls an extra line, a missing line, or a torn line tampering', () => {
    const extra = readStepResults(lines(out(1000), out(1200), out(1400)), steps, limits);
    assert.match(extra.tampering.join(), /1 line\(s\) more/);
    const missing = readStepResults(lines(out(1000)), steps, limits);
    assert.match(missing.tampering.join(), /no result for b/);
    const torn = readStepResults(`${JSON.stringify(out(1000))}\x00\n`, steps, limits);
    assert.match(torn.tampering.join(), /the result of a .*not JSON/);
    assert.equal(torn.outputs.length, 0, 'nothing after a bad line is believed');
  });

  it('refuses impossible values: times out of order, overlapping steps, a step longer than it may last', () => {
    const cases: [unknown[], RegExp][] = [
      [[out(1000, { end: 900 })], /out of order/],
      [[out(1000), out(1100)], /started before the step before it ended/],
      [[out(1000, { settledAt: 1000 + 5000 + 1000 + 10_001 })], /lasted/],
      [[out(1000, { start: Number.NaN })], /start is not a number/],
      [[out(1000, { stdout: 'x'.repeat(2000) })], /stdout is not bounded/],
      [[{ ...out(1000), leftovers: [{ pid: 1, cmd: 'y'.repeat(400) }] }], /leftovers/],
      [[out(1000, { code: 1.5 })], /exit code/],
      [['[1,2]'], /not an object/],
    ];
    for (const [input, why] of cases) {
      const r = readStepResults(lines(...input), steps, limits);
      assert.match(r.tampering[0] ?? '', why, JSON.stringify(input).slice(0, 80));
    }
  });
});

describe('parseHarness', () => {
  it('keeps only bounded, typed fields of what the driver relayed', () => {
    const r = parseHarness({
      harness: { functions: 3.7, calls: -1, loadError: 'E'.repeat(100), x: 1 },
    });
    assert.deepEqual(r, {
      functions: 3,
      classes: 0,
      calls: 0,
      methods: 0,
      threw: 0,
      pending: 0,
      emitted: 0,
      iterated: 0,
      loadError: 'E'.repeat(64),
    });
    assert.equal(parseHarness({}), undefined);
    assert.equal(parseHarness(undefined), undefined);
    // Restarts of a supervised exercise are the driver's count (StepOutput.resumed), checked with
    // the rest of its line; what the harness says about them is not taken.
    assert.equal(
      (parseHarness({ harness: { resumed: 2, emitted: 3 } }) as unknown as Record<string, unknown>)
        .resumed,
      undefined,
    );
    assert.equal(
      readStepResults(
        lines(out(1000, { resumed: 2 })),
        [steps[0] as (typeof steps)[number]],
        limits,
      ).outputs[0]?.resumed,
      2,
    );
    assert.match(
      readStepResults(
        lines(out(1000, { resumed: 'x' as unknown as number })),
        [steps[0] as (typeof steps)[number]],
        limits,
      ).tampering[0] ?? '',
      /resumed is not a number/,
    );
  });
});

describe('installSteps', () => {
  const pkg = (
    name: string,
    scripts: string[],
    bundledBy?: string,
    commands: Record<string, string> = {},
  ): TreePackageInfo => ({
    name,
    version: '1.0.0',
    location: `node_modules/${name}`,
    integrity: null,
    installScripts: scripts,
    scripts: Object.fromEntries(Object.entries(commands).map(([e, command]) => [e, { command }])),
    capabilities: [],
    dependencies: [],
    fromRegistry: true,
    ...(bundledBy ? { bundledBy } : {}),
  });

  it('one step per package with install scripts, a bundled one with its bundler, in order', () => {
    const s = installSteps(
      [
        pkg('dep', ['postinstall'], undefined, { postinstall: 'node dep.js' }),
        pkg('inner', ['install'], 'outer@1.0.0'),
        pkg('plain', []),
        pkg('outer', ['preinstall', 'postinstall'], undefined, {
          preinstall: 'echo pre',
          postinstall: 'echo post',
        }),
      ],
      9000,
    );
    // npm's order: every preinstall, then every install, then every postinstall, a step per
    // package and event; an install with no script of its own is binding.gyp's implicit one.
    assert.deepEqual(
      s.map((x) => [x.label, x.package, x.phase, x.timeoutMs]),
      [
        ['preinstall of outer@1.0.0', 'outer@1.0.0', 'install', 9000],
        ['install of outer@1.0.0', 'outer@1.0.0', 'install', 9000],
        ['postinstall of dep@1.0.0', 'dep@1.0.0', 'install', 9000],
        ['postinstall of outer@1.0.0', 'outer@1.0.0', 'install', 9000],
      ],
    );
    assert.deepEqual(
      s.map((x) => x.scripts?.map((r) => [r.path, r.event, r.command])),
      [
        [['/work/node_modules/outer', 'preinstall', 'echo pre']],
        [['/work/node_modules/inner', 'install', 'node-gyp rebuild']],
        [['/work/node_modules/dep', 'postinstall', 'node dep.js']],
        [['/work/node_modules/outer', 'postinstall', 'echo post']],
      ],
    );
    assert.equal(s[2]?.scripts?.[0]?.env.npm_package_name, 'dep');
    assert.equal(s[2]?.scripts?.[0]?.env.npm_package_json, '/work/node_modules/dep/package.json');
    assert.deepEqual(s[1]?.own?.slice().sort(), ['node_modules/inner', 'node_modules/outer']);
    // What a step must not touch: the PATH folders of the other packages' scripts.
    assert.deepEqual(s[2]?.watch, [
      'node_modules/inner/node_modules/.bin',
      'node_modules/node_modules/.bin',
      'node_modules/outer/node_modules/.bin',
    ]);
    assert.ok(!s[2]?.watch?.includes('node_modules/dep/node_modules/.bin'), 'its own is its own');
    assert.equal(
      s[0]?.env,
      undefined,
      'no npm of its own: no npm configuration in its environment',
    );
  });
});
