/**
 * `check`: resolve and stage on the host, then in a fresh sandbox behind a fresh gateway run the
 * install, import and exercise phases, collect every egress attempt and build the report.
 */
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { CHECK_DEFAULTS } from './defaults.js';
import { PhonehomeError } from '../core/errors.js';
import {
  buildReport,
  type CheckReport,
  type PhaseResult,
  type PhaseWindow,
} from '../core/report.js';
import type { Phase } from '../core/terms.js';
import { buildImages } from '../images/build.js';
import { evaluate } from '../policy/evaluate.js';
import { loadPolicy, type LoadedPolicy } from '../policy/load.js';
import { parseDeclaration } from '../policy/parse.js';
import type { Declaration } from '../policy/types.js';
import type { NpmConfig } from '../resolve/npmrc.js';
import { stage } from '../resolve/stage.js';
import { filesTar, makeIdentity, type IdentityProfile } from '../sandbox/identity.js';
import type { ImageStore, SandboxEngine, SandboxRun } from '../sandbox/sandbox.js';
import {
  AGENT_DIR,
  CaptureTopology,
  SANDBOX_RESOLVERS,
  SANDBOX_WORKDIR,
} from '../sandbox/topology.js';
import { HARNESS_INPUT_VAR, type HarnessInput, type HarnessResult } from '../agent/harness.js';
import type { StepInput, StepOutput } from '../agent/step.js';

export interface CheckOptions {
  npmConfig?: NpmConfig;
  /** What the sandbox looks like: a developer's laptop (default) or a CI runner. */
  as?: IdentityProfile;
  /** The policy that judges the run; default: the shipped defaults with the policy file found from the working directory. */
  policy?: LoadedPolicy;
  installTimeoutMs?: number;
  importTimeoutMs?: number;
  exerciseTimeoutMs?: number;
  /** Timeout of each run of a `bin` in the exercise phase. */
  binTimeoutMs?: number;
  /** How long processes that outlive a step (detached children) are watched before being killed. */
  settleMs?: number;
  log?: (line: string) => void;
  /** Called as each phase starts (progress display). */
  onPhase?: (phase: Phase) => void;
  signal?: AbortSignal;
}

export { CHECK_DEFAULTS };
const STEP_OUTPUT_MAX = 64 * 1024;

/** Environment of every step: npm's own update check would be egress that is not the package's. */
const STEP_ENV = {
  npm_config_update_notifier: 'false',
  npm_config_audit: 'false',
  npm_config_fund: 'false',
};

/** Harmless ways to run a command a package installs. */
const BIN_ARGUMENTS: string[][] = [['--help'], ['--version'], []];

export interface Step {
  label: string;
  cmd: string;
  args: string[];
  timeoutMs: number;
  env?: Record<string, string>;
  /** A non-zero exit is not the package failing (a bin run with odd arguments). */
  exitMayFail?: boolean;
}

/** The harness reads its input from the environment (and removes it), so command lines stay stable. */
export const HARNESS_SOURCE = `import { run } from '${AGENT_DIR}/harness.js';\nawait run((n) => import(n));`;

export async function check(
  engine: SandboxEngine,
  images: ImageStore,
  spec: string,
  opts: CheckOptions = {},
): Promise<CheckReport> {
  const o = { ...CHECK_DEFAULTS, ...opts };
  const log = opts.log ?? (() => undefined);
  // Read before anything starts: a broken policy file is the user's to fix, not a run to waste.
  const judge = opts.policy ?? loadPolicy();
  const { refs } = await buildImages(images, { log });
  log(`[check] resolving ${spec}`);
  await using staged = await stage(spec, {
    ...(opts.npmConfig ? { npmConfig: opts.npmConfig } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  const scripted = staged.packages.filter((p) => p.installScripts.length > 0);
  log(
    `[check] ${staged.name}@${staged.version}: ${staged.packages.length} package(s), ${scripted.length} with install scripts`,
  );
  opts.signal?.throwIfAborted();
  await using run = engine.newRun();
  const topo = await startProject(run, refs, staged.tar(), opts.as);
  const identity = topo.identity;

  const phases: PhaseResult[] = [];
  const windows: PhaseWindow[] = [];
  const marker = `@@${randomBytes(8).toString('hex')}@@`;

  const runStep = (step: Step): Promise<StepOutput> =>
    runSandboxStep(topo, step, {
      settleMs: o.settleMs,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });

  const harness = (input: Omit<HarnessInput, 'marker'>, timeoutMs: number): Step => ({
    label: `${input.mode} of ${input.name}`,
    cmd: 'node',
    // The mode is repeated as an argument so the command line says which load made an attempt.
    args: ['--input-type=module', '-e', HARNESS_SOURCE, input.mode],
    env: { [HARNESS_INPUT_VAR]: JSON.stringify({ ...input, marker }) },
    timeoutMs,
  });

  /** Run a phase's steps one after another within the phase's time budget, and record it. */
  const phase = async (
    name: Phase,
    steps: Step[],
    budgetMs: number,
  ): Promise<{ outputs: StepOutput[]; result: PhaseResult }> => {
    opts.onPhase?.(name);
    log(`[check] phase ${name}`);
    const results: StepOutput[] = [];
    const started = performance.now();
    for (const s of steps) {
      const left = budgetMs - (performance.now() - started);
      if (left <= 0) break;
      results.push(await runStep({ ...s, timeoutMs: Math.min(s.timeoutMs, left) }));
    }
    const first = results[0];
    const last = results[results.length - 1];
    if (!first || !last) {
      const result: PhaseResult = {
        name,
        // Steps that did not run for want of time are a timeout, never "nothing to run".
        status: steps.length ? 'timeout' : 'skipped',
        durationMs: 0,
        note: steps.length ? 'no time left to run any step' : 'nothing to run',
      };
      phases.push(result);
      return { outputs: results, result };
    }
    windows.push({ name, startMs: first.start, endMs: last.settledAt });
    const timedOut = results.find((r) => r.timedOut);
    const failed = results.find((r, i) => !r.timedOut && r.code !== 0 && !steps[i]?.exitMayFail);
    const leftovers = results.reduce((n, r) => n + r.leftoverCount, 0);
    const killed = results.reduce((n, r) => n + r.killed, 0);
    const notes: string[] = [];
    if (timedOut) notes.push(`killed at its timeout (${steps[results.indexOf(timedOut)]?.label})`);
    else if (failed) notes.push(noteFor(failed, steps[results.indexOf(failed)] as Step));
    if (results.length < steps.length)
      notes.push(`${steps.length - results.length} step(s) not run: the phase ran out of time`);
    if (leftovers > 0)
      notes.push(
        `${leftovers} process(es) outlived their step${killed ? `; ${killed} still running after the settle window were killed` : ''}`,
      );
    const result: PhaseResult = {
      name,
      status:
        timedOut || results.length < steps.length ? 'timeout' : failed ? 'failed' : 'completed',
      durationMs: Math.round(last.settledAt - first.start),
      // A step killed at its timeout has no exit code.
      exitCode: timedOut ? null : failed ? failed.code : 0,
      outputBytes: results.reduce((n, r) => n + r.stdoutBytes + r.stderrBytes, 0),
      ...(leftovers > 0
        ? { leftovers: results.flatMap((r) => r.leftovers.map((l) => l.cmd)).slice(0, 20) }
        : {}),
      ...(notes.length ? { note: notes.join('; ') } : {}),
    };
    phases.push(result);
    return { outputs: results, result };
  };

  // install: npm runs every package's install scripts, dependencies first, with npm's environment.
  if (scripted.length > 0) {
    await phase(
      'install',
      [
        {
          label: 'npm rebuild',
          cmd: 'npm',
          args: ['rebuild', '--dangerously-allow-all-scripts', '--foreground-scripts'],
          timeoutMs: o.installTimeoutMs,
        },
      ],
      o.installTimeoutMs,
    );
  } else {
    phases.push({
      name: 'install',
      status: 'skipped',
      durationMs: 0,
      note: 'no package in the tree has install scripts',
    });
  }

  // import: fresh processes, require() then import(); each entry point may behave differently.
  const imported = await phase(
    'import',
    [
      harness({ mode: 'require', name: staged.name }, o.importTimeoutMs),
      harness({ mode: 'import', name: staged.name }, o.importTimeoutMs),
    ],
    o.importTimeoutMs * 2,
  );
  const notLoadable = imported.outputs
    .map((r, i) => [i === 0 ? 'require' : 'import', parseHarness(r.stdout, marker)?.loadError])
    .filter(([, code]) => code)
    .map(([how, code]) => `${how}() not possible (${code})`);
  if (notLoadable.length)
    imported.result.note = [imported.result.note, ...notLoadable].filter(Boolean).join('; ');

  // exercise: call what the package exports, run the commands it installs.
  const exercised = await phase(
    'exercise',
    [
      harness({ mode: 'exercise', name: staged.name }, o.exerciseTimeoutMs),
      ...staged.bins.flatMap((bin) =>
        BIN_ARGUMENTS.map((args) => ({
          label: `${[bin, ...args].join(' ')}`,
          cmd: `${SANDBOX_WORKDIR}/node_modules/.bin/${bin}`,
          args,
          timeoutMs: o.binTimeoutMs,
          exitMayFail: true,
        })),
      ),
    ],
    o.exerciseTimeoutMs,
  );
  const calls = parseHarness(exercised.outputs[0]?.stdout ?? '', marker);
  if (calls) {
    exercised.result.calls = {
      functions: calls.functions,
      classes: calls.classes,
      calls: calls.calls,
      threw: calls.threw,
      pending: calls.pending,
      bins: staged.bins.length,
    };
  }

  const eventLog = await topo.events();
  const report = buildReport({
    subject: { name: staged.name, version: staged.version, integrity: staged.integrity, spec },
    phases,
    windows,
    events: eventLog.events,
    processNames: Object.fromEntries(
      (['require', 'import', 'exercise'] as const).map((mode) => [
        `node --input-type=module -e ${HARNESS_SOURCE} ${mode}`,
        `node (phonehome harness: ${mode})`,
      ]),
    ),
    packages: staged.packages.map((p) => ({
      id: `${p.name}@${p.version}`,
      installScripts: p.installScripts,
    })),
    bait: identity.bait,
    ...(eventLog.truncatedCounts ? { truncated: eventLog.truncatedCounts } : {}),
  });
  const ids = (p: { name: string; version: string }) => `${p.name}@${p.version}`;
  report.packages = staged.packages.map((p) => {
    const declared = p.egress !== undefined ? parseDeclaration(p.egress) : undefined;
    return {
      id: ids(p),
      installScripts: p.installScripts,
      ...(Object.keys(p.scripts).length ? { scripts: p.scripts } : {}),
      capabilities: p.capabilities,
      ...(declared ? { declares: declaredTexts(declared) } : {}),
      ...(declared?.problems.length ? { declarationProblems: declared.problems } : {}),
      dependencies: p.dependencies,
    };
  });
  return evaluate(report, { ...judge, resolvers: SANDBOX_RESOLVERS });
}

/** A declaration's destinations per phase as written, for the report. */
function declaredTexts(d: Declaration): Partial<Record<Phase, string[]>> {
  return Object.fromEntries(
    Object.entries(d.byPhase).map(([phase, list]) => [phase, list.map((p) => p.text)]),
  );
}

export function parseHarness(stdout: string, marker: string): HarnessResult | undefined {
  const line = stdout
    .split('\n')
    .reverse()
    .find((l) => l.startsWith(marker));
  if (!line) return undefined;
  try {
    return JSON.parse(line.slice(marker.length)) as HarnessResult;
  } catch {
    return undefined;
  }
}

/** npm's own closing lines, which say nothing about why the script failed. */
const NPM_TRAILER =
  /A complete log of this run can be found in|^npm (error|ERR!) (code|path|command|workdir|signal|errno)\b|^npm (error|ERR!)\s*$/;

function noteFor(r: StepOutput, s: Step): string {
  if (r.error) return `${s.label}: ${r.error}`;
  const lines = r.stderr
    .trim()
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !NPM_TRAILER.test(l));
  // The line that names the error says more than a closing brace of a stack dump.
  const telling =
    [...lines].reverse().find((l) => /\b\w*(Error|ERR!?)\b|\berror\b/.test(l)) ??
    [...lines].reverse().find((l) => /\w{3}/.test(l)) ??
    '';
  const line = telling.replace(/^npm (error|ERR!)\s*/, '');
  const shown = line.length > 300 ? `${line.slice(0, line.lastIndexOf(' ', 300))} …` : line;
  return `${s.label}: exit ${r.code ?? r.signal}${shown ? `: ${shown}` : ''}`;
}

function toStepInput(topo: CaptureTopology, step: Step, settleMs: number): StepInput {
  return {
    cmd: step.cmd,
    args: step.args,
    timeoutMs: step.timeoutMs,
    maxOutputBytes: STEP_OUTPUT_MAX,
    settleMs,
    keepPids: topo.observerPid !== undefined ? [topo.observerPid] : [],
    sandboxReadyMs: topo.readyMs,
    ...(step.env ? { env: step.env } : {}),
  };
}

/** Run one step in the sandbox, as the sandbox user, in the project. */
export async function runSandboxStep(
  topo: CaptureTopology,
  step: Step,
  o: { settleMs: number; signal?: AbortSignal },
): Promise<StepOutput> {
  const [out] = await runSandboxBatch(topo, [step], o);
  return out as StepOutput;
}

/**
 * Run steps one after another in the sandbox in one exec (the batch driver), each exactly as the
 * step driver would; one result per step, in order.
 */
export async function runSandboxBatch(
  topo: CaptureTopology,
  steps: Step[],
  o: { settleMs: number; signal?: AbortSignal },
): Promise<StepOutput[]> {
  o.signal?.throwIfAborted();
  const inputs = steps.map((s) => toStepInput(topo, s, o.settleMs));
  const r = await topo.sandbox.exec(['node', `${AGENT_DIR}/batch.js`, JSON.stringify(inputs)], {
    env: { ...STEP_ENV, HOME: topo.identity.home },
    workingDir: SANDBOX_WORKDIR,
    // The driver kills each step at its timeout; this only guards against the driver hanging.
    timeoutMs: steps.reduce((n, s) => n + s.timeoutMs + o.settleMs, 0) + 15_000,
    maxOutputBytes: 4 * STEP_OUTPUT_MAX * steps.length,
  });
  const lines = r.stdout.trim().split('\n').filter(Boolean);
  const outs: StepOutput[] = [];
  for (const line of lines) {
    try {
      outs.push(JSON.parse(line) as StepOutput);
    } catch {
      // Not a result line; the count below says whether one is missing.
    }
  }
  if (outs.length !== steps.length) {
    // Ctrl-C removes the containers under a running step: that is the interruption, not a bug.
    o.signal?.throwIfAborted();
    const missing = steps[outs.length];
    throw new PhonehomeError(
      'EINTERNAL',
      `The step driver gave no result for ${missing?.label ?? 'a step'} (exit ${r.exitCode}${r.timedOut ? ', timed out' : ''}).`,
      { detail: r.stderr.slice(0, 2000) },
    );
  }
  return outs;
}

/**
 * A fresh sandbox behind a fresh gateway, with a fresh identity, holding the staged project and
 * the identity's project files (.env).
 */
export async function startProject(
  run: SandboxRun,
  refs: { runner: string; gateway: string },
  project: Readable,
  as: IdentityProfile = 'laptop',
): Promise<CaptureTopology> {
  const identity = makeIdentity(as);
  const topo = await CaptureTopology.start(run, {
    identity,
    runnerImage: refs.runner,
    gatewayImage: refs.gateway,
  });
  await topo.unpack(project);
  await topo.unpack(filesTar(identity.projectFiles));
  return topo;
}
