/**
 * `check`: resolve and stage on the host, then in a fresh sandbox behind a fresh gateway run the
 * install, import and exercise phases, collect every egress attempt and build the report.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { CHECK_DEFAULTS } from './defaults.js';
import type { Bait } from '../core/bait.js';
import { boundFindings, summaryEvents } from '../core/bounds.js';
import type { EventLog } from '../core/events.js';
import {
  buildReport,
  phaseAt,
  type CheckReport,
  type PhaseResult,
  type PhaseWindow,
} from '../core/report.js';
import type { Phase } from '../core/terms.js';
import { buildImages } from '../images/build.js';
import { evaluate } from '../policy/evaluate.js';
import { loadPolicy, type LoadedPolicy } from '../policy/load.js';
import type { NpmConfig } from '../resolve/npmrc.js';
import { stage, type StagedPackage } from '../resolve/stage.js';
import type { IdentityProfile } from '../sandbox/identity.js';
import type { ImageStore, SandboxEngine } from '../sandbox/sandbox.js';
import { SANDBOX_RESOLVERS, SANDBOX_WORKDIR, type CaptureTopology } from '../sandbox/topology.js';
import { HARNESS_INPUT_VAR, type HarnessInput } from '../agent/harness.js';
import type { StepOutput } from '../agent/step.js';
import {
  HARNESS_SOURCE,
  installSteps,
  noteFor,
  parseHarness,
  runStepGroups,
  startProject,
  type StepConduct,
  type Step,
} from '../run/steps.js';
import { closure, idOf, packageSummary } from '../run/summaries.js';

export interface CheckOptions {
  npmConfig?: NpmConfig;
  /** What the sandbox looks like: a developer's laptop (default) or a CI runner. */
  as?: IdentityProfile;
  /**
   * Read inside TLS with a CA made for the run (default true); false leaves TLS as the package
   * sent it: the server name and ALPN are seen, nothing inside.
   */
  tlsIntercept?: boolean;
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

/** Harmless ways to run a command a package installs. */
const BIN_ARGUMENTS: string[][] = [['--help'], ['--version'], []];

/** A phase as data: its steps and time budget, run by one loop (see check()). */
interface PhasePlan {
  name: Phase;
  steps: Step[];
  budgetMs: number;
  /** Why there is nothing to run, when there is not. */
  nothing: string;
}

/** What the harness command line looks like to the observer, and how the report shows it. */
export function harnessNames(modes: readonly string[], suffix = ''): Record<string, string> {
  return Object.fromEntries(
    modes.map((mode) => [
      `node --input-type=module -e ${HARNESS_SOURCE} ${mode}${suffix}`,
      `node (phonehome harness: ${mode})`,
    ]),
  );
}

export async function check(
  engine: SandboxEngine,
  images: ImageStore,
  spec: string,
  opts: CheckOptions = {},
): Promise<CheckReport> {
  // Read before anything starts: a broken policy file is the user's to fix, not a run to waste.
  const judge = opts.policy ?? loadPolicy();
  opts.log?.(`[check] resolving ${spec}`);
  await using staged = await stage(spec, {
    ...(opts.npmConfig ? { npmConfig: opts.npmConfig } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  // Awaited here: the staged folder is removed when this function returns.
  return await checkStaged(engine, images, staged, { ...opts, policy: judge });
}

/**
 * What checkStaged needs of a staged tree: the package asked about, every package of the tree,
 * and the tree itself. `location` says where the package asked about is in the tree when it is
 * not at node_modules/<name> (a package of a lockfile, say).
 */
export type StagedSubject = Pick<
  StagedPackage,
  'name' | 'version' | 'integrity' | 'spec' | 'packages' | 'bins' | 'tar'
> & { location?: string };

/** Run the phases on a staged tree: the one loop check and gate share (audit: src/audit). */
export async function checkStaged(
  engine: SandboxEngine,
  images: ImageStore,
  staged: StagedSubject,
  opts: CheckOptions = {},
): Promise<CheckReport> {
  const o = { ...CHECK_DEFAULTS, ...opts };
  const log = opts.log ?? (() => undefined);
  const judge = opts.policy ?? loadPolicy();
  const spec = staged.spec;
  const { refs } = await buildImages(images, { log });
  const location = staged.location ?? `node_modules/${staged.name}`;
  // What the harness loads: by name from the project, as its code would; a nested package by path.
  const target =
    location === `node_modules/${staged.name}` ? staged.name : `${SANDBOX_WORKDIR}/${location}`;
  const binDir = `${SANDBOX_WORKDIR}/${location.slice(0, location.lastIndexOf('/'))}/.bin`;
  const scripted = staged.packages.filter((p) => p.installScripts.length > 0);
  log(
    `[check] ${staged.name}@${staged.version}: ${staged.packages.length} package(s), ${scripted.length} with install scripts`,
  );
  opts.signal?.throwIfAborted();
  await using run = engine.newRun();
  const topo = await startProject(run, refs, staged.tar(), opts.as, opts);
  const subject = idOf(staged);
  const subjectFolders = staged.packages.filter((p) => idOf(p) === subject).map((p) => p.location);
  const callerHost = newCallerHost();
  const harness = (phase: Phase, input: Omit<HarnessInput, 'name'>, timeoutMs: number): Step => ({
    label: `${input.mode} of ${subject}`,
    phase,
    package: subject,
    cmd: 'node',
    // The mode is repeated as an argument so the command line says which load made an attempt.
    args: ['--input-type=module', '-e', HARNESS_SOURCE, input.mode],
    env: { [HARNESS_INPUT_VAR]: JSON.stringify({ ...input, name: target }) },
    harness: true,
    timeoutMs,
    own: subjectFolders,
  });
  const plan: PhasePlan[] = [
    {
      name: 'install',
      steps: installSteps(staged.packages, o.installTimeoutMs),
      budgetMs: o.installTimeoutMs,
      nothing: 'no package in the tree has install scripts',
    },
    {
      // Fresh processes, require() then import(); each entry point may behave differently.
      name: 'import',
      steps: [
        harness('import', { mode: 'require' }, o.importTimeoutMs),
        harness('import', { mode: 'import' }, o.importTimeoutMs),
      ],
      budgetMs: o.importTimeoutMs * 2,
      nothing: 'nothing to load',
    },
    {
      // Call what the package exports, run the commands it installs.
      name: 'exercise',
      steps: [
        harness(
          'exercise',
          // A third of the phase for calling, so the commands it installs still get their turn.
          { mode: 'exercise', callerHost, callBudgetMs: Math.floor(o.exerciseTimeoutMs / 3) },
          o.exerciseTimeoutMs,
        ),
        ...staged.bins.flatMap((bin) =>
          BIN_ARGUMENTS.map((args): Step => ({
            label: `${[bin, ...args].join(' ')}`,
            phase: 'exercise',
            package: subject,
            cmd: `${binDir}/${bin}`,
            args,
            timeoutMs: o.binTimeoutMs,
            exitMayFail: true,
            own: subjectFolders,
          })),
        ),
      ],
      budgetMs: o.exerciseTimeoutMs,
      nothing: 'nothing to exercise',
    },
  ];

  const { phases, windows, tampering, conduct, outputs } = await runPlan(topo, plan, {
    settleMs: o.settleMs,
    signal: opts.signal,
    onPhase: (name) => {
      opts.onPhase?.(name);
      log(`[check] phase ${name}`);
    },
  });

  const imported = phases.find((p) => p.name === 'import');
  // A load that gave no result line did not finish as the harness would: the package ended the
  // process, or its output, before the harness could say what it loaded.
  const notLoadable = (outputs.get('import') ?? []).flatMap((r, i) => {
    const how = i === 0 ? 'require' : 'import';
    const result = parseHarness(r);
    if (!result) return r.timedOut ? [] : [`${how}(): no result from the harness`];
    return result.loadError ? [`${how}() not possible (${result.loadError})`] : [];
  });
  if (imported && notLoadable.length)
    imported.note = [imported.note, ...notLoadable].filter(Boolean).join('; ');
  const exercised = phases.find((p) => p.name === 'exercise');
  const harnessRun = outputs.get('exercise')?.[0];
  const calls = parseHarness(harnessRun);
  // The package ended or stopped the exercise before it was done: said, since its calls were cut.
  if (exercised && harnessRun && !calls)
    exercised.note = [
      exercised.note,
      harnessRun.timedOut
        ? 'the exercise ran out of time before its calls were done'
        : 'no result from the harness: the package ended the exercise before its calls were done',
    ]
      .filter(Boolean)
      .join('; ');
  // A package that replaced built-ins the harness relies on may have cut its calls short.
  const interfered = [
    ...new Set([
      ...(outputs.get('import') ?? []).flatMap((r) => parseHarness(r)?.interfered ?? []),
      ...(calls?.interfered ?? []),
    ]),
  ].slice(0, 8);
  if (exercised && interfered.length)
    exercised.note = [
      exercised.note,
      `the package replaced built-ins the exercise relies on (${interfered.join(', ')}); they were put back where they could be`,
    ]
      .filter(Boolean)
      .join('; ');
  if (exercised && calls?.uncalled)
    exercised.note = [
      exercised.note,
      `${calls.uncalled} of ${calls.functions + calls.classes} export(s) were not called: the exports' share of the calls ran out`,
    ]
      .filter(Boolean)
      .join('; ');
  const resumed = Math.min(harnessRun?.resumed ?? 0, 99);
  if (exercised && resumed)
    exercised.note = [
      exercised.note,
      `the exercise started again ${resumed} time(s), past a call in which the package ended or stalled its process`,
    ]
      .filter(Boolean)
      .join('; ');
  if (exercised && calls) {
    exercised.calls = {
      functions: calls.functions,
      classes: calls.classes,
      calls: calls.calls,
      methods: calls.methods,
      emitted: calls.emitted,
      iterated: calls.iterated,
      threw: calls.threw,
      pending: calls.pending,
      bins: staged.bins.length,
    };
  }

  const logs = [await topo.events()];
  const bait = [...topo.identity.bait];
  // Code that can tell a CI runner from a laptop runs again as the other one, in a sandbox of its
  // own, after this one's phases (its step windows never overlap these): the install phase when
  // install-time code (a scripted package or what it loads) shows it, every phase when the package
  // asked about does. Code that cannot be read (obfuscated) counts as showing it.
  const summaries = new Map(staged.packages.map((p) => [idOf(p), packageSummary(p)]));
  const tells = (ids: string[]) => [
    ...new Set(
      ids.flatMap((id) =>
        closure(id, summaries)
          .filter((p) => p.capabilities.some((c) => c === 'reads-identity' || c === 'obfuscated'))
          .map((p) => p.id),
      ),
    ),
  ];
  const atInstall = tells(scripted.map(idOf));
  // At run time only the package asked about itself: nearly every tree holds a colour or
  // CI-detection library (supports-color reads CI), and running every phase twice for it would
  // double the cost of most checks.
  const atRuntime = summaries
    .get(subject)
    ?.capabilities.some((c) => c === 'reads-identity' || c === 'obfuscated')
    ? [subject]
    : [];
  const twinPlan = atRuntime.length > 0 ? plan : atInstall.length > 0 ? plan.slice(0, 1) : [];
  const readers = [...new Set([...atInstall, ...atRuntime])];
  let identities: IdentityProfile[] | undefined;
  if (twinPlan.some((p) => p.steps.length > 0)) {
    const primary = topo.identity.profile;
    const other: IdentityProfile = primary === 'ci' ? 'laptop' : 'ci';
    identities = [primary, other];
    const which = twinPlan.map((p) => p.name).join(', ');
    log(`[check] ${which} again as ${other}: ${readers.join(', ')} can tell the identities apart`);
    opts.signal?.throwIfAborted();
    const twin = await runAs(engine, refs, staged, twinPlan, other, o.settleMs, opts);
    for (const w of windows) w.identity = primary;
    windows.push(...twin.windows.map((w) => ({ ...w, identity: other })));
    tampering.push(...twin.tampering);
    conduct.push(...twin.conduct);
    logs.push(twin.log);
    bait.push(...twin.bait);
    for (const again of twin.phases) {
      const own = phases.find((p) => p.name === again.name);
      if (!own || again.status === 'skipped') continue;
      own.note = [
        own.note,
        `also run as ${other} (${readers.join(', ')} can tell the identities apart): ${again.status}${again.note ? ` (${again.note})` : ''}`,
      ]
        .filter(Boolean)
        .join('; ');
    }
  }
  const truncated: Record<string, number> = {};
  for (const l of logs)
    for (const [k, n] of Object.entries(l.truncatedCounts ?? {}))
      truncated[k] = (truncated[k] ?? 0) + n;
  const report = buildReport({
    subject: { name: staged.name, version: staged.version, integrity: staged.integrity, spec },
    phases,
    windows,
    events: logs.flatMap((l) => l.events),
    processNames: harnessNames(['require', 'import', 'exercise']),
    bait,
    tampering,
    conduct,
    summaries: logs.flatMap((l) => summaryEvents(l)),
    captureFindings: logs.flatMap((l) => boundFindings(l, (t) => phaseAt(t, windows))),
    ...(Object.keys(truncated).length ? { truncated } : {}),
  });
  report.packages = [...summaries.values()];
  if (identities) report.identities = identities;
  if (phases.some((p) => p.name === 'exercise' && p.status !== 'skipped'))
    report.callerHosts = [callerHost, ...STRINGIFIED_ARGUMENTS];
  return evaluate(report, { ...judge, resolvers: SANDBOX_RESOLVERS });
}

/**
 * The exercise's other arguments as a client turns them into a host name (`String(undefined)`,
 * `String({})`, the number): a lookup of one of these is the package using what it was given.
 */
const STRINGIFIED_ARGUMENTS = ['undefined', 'null', '42', '[object object]'];

const SERVICES = ['api', 'db', 'cache', 'queue', 'mail', 'search', 'auth', 'files', 'redis', 'pg'];
const ZONES = ['corp', 'prod', 'svc', 'internal', 'eu', 'us', 'staging', 'data'];
const WORDS = [
  'acme',
  'northwind',
  'contoso',
  'initech',
  'globex',
  'umbrella',
  'hooli',
  'vandelay',
];
const TLDS = ['com', 'net', 'io', 'dev', 'cloud'];

/**
 * The host name the exercise passes as an argument, fresh per run (tens of bits, in one of several
 * shapes: `db.prod-4821.9f3a0c1e.com`, `cache-7d2a91.globex5e0c1d.net`, `api.eu3.hooli-a45216.io`), so that
 * nothing but the arguments produces it. It resolves like any other name in the sandbox: a client
 * told to connect there connects, and what it sends is seen.
 */
export function newCallerHost(): string {
  const pick = (l: readonly string[]) => l[randomInt(l.length)] as string;
  const hex = (n: number) => randomBytes(n).toString('hex');
  const shapes = [
    () => `${pick(SERVICES)}.${pick(ZONES)}-${randomInt(1000, 9999)}.${hex(4)}.${pick(TLDS)}`,
    () => `${pick(SERVICES)}-${hex(3)}.${pick(WORDS)}${hex(3)}.${pick(TLDS)}`,
    () =>
      `${pick(SERVICES)}.${pick(ZONES)}${randomInt(1, 9)}.${pick(WORDS)}-${hex(2)}${randomInt(1000, 9999)}.${pick(TLDS)}`,
  ];
  return (shapes[randomInt(shapes.length)] as () => string)();
}

/** The phases of a plan in a started sandbox, in order; a phase with nothing to run is skipped. */
async function runPlan(
  topo: CaptureTopology,
  plan: PhasePlan[],
  o: { settleMs: number; signal: AbortSignal | undefined; onPhase?: (name: Phase) => void },
): Promise<{
  phases: PhaseResult[];
  windows: PhaseWindow[];
  tampering: string[];
  conduct: StepConduct[];
  outputs: Map<Phase, StepOutput[]>;
}> {
  const out = {
    phases: [] as PhaseResult[],
    windows: [] as PhaseWindow[],
    tampering: [] as string[],
    conduct: [] as StepConduct[],
    outputs: new Map<Phase, StepOutput[]>(),
  };
  // Every phase in one exec of the batch driver (one driver start, not one per phase), each with
  // its own budget; the phases' order and results are as if each had its own.
  const running = plan.filter((p) => p.steps.length > 0);
  const runs = await runStepGroups(topo, running, {
    settleMs: o.settleMs,
    ...(o.signal ? { signal: o.signal } : {}),
    onGroup: (i) => {
      const p = running[i];
      if (p) o.onPhase?.(p.name);
    },
  });
  for (const p of plan) {
    const i = running.indexOf(p);
    const ran = runs[i];
    if (i < 0 || !ran) {
      out.phases.push({ name: p.name, status: 'skipped', durationMs: 0, note: p.nothing });
      continue;
    }
    out.windows.push(...ran.windows);
    out.tampering.push(...ran.tampering);
    out.conduct.push(...ran.conduct);
    out.outputs.set(p.name, ran.outputs);
    out.phases.push(phaseResult(p, ran.outputs, ran.notRun, ran.tampering.length > 0));
  }
  return out;
}

/** Phases once more, in a fresh sandbox that looks like `identity`. */
async function runAs(
  engine: SandboxEngine,
  refs: { runner: string; gateway: string },
  staged: StagedSubject,
  plan: PhasePlan[],
  identity: IdentityProfile,
  settleMs: number,
  opts: Pick<CheckOptions, 'signal' | 'tlsIntercept'>,
): Promise<Awaited<ReturnType<typeof runPlan>> & { log: EventLog; bait: Bait[] }> {
  await using run = engine.newRun();
  const topo = await startProject(run, refs, staged.tar(), identity, opts);
  const ran = await runPlan(topo, plan, { settleMs, signal: opts.signal });
  return { ...ran, log: await topo.events(), bait: topo.identity.bait };
}

/** How a phase went, from the outputs of its steps. */
function phaseResult(
  p: PhasePlan,
  results: StepOutput[],
  notRun: number,
  tampered: boolean,
): PhaseResult {
  const first = results[0];
  const last = results[results.length - 1];
  if (!first || !last) {
    return {
      name: p.name,
      // Steps that did not run for want of time are a timeout, never "nothing to run".
      status: tampered ? 'failed' : 'timeout',
      durationMs: 0,
      note: tampered ? 'no step result could be believed' : 'no time left to run any step',
    };
  }
  const steps = p.steps;
  const timedOut = results.find((r) => r.timedOut);
  const failed = results.find((r, i) => !r.timedOut && r.code !== 0 && !steps[i]?.exitMayFail);
  const leftovers = results.reduce((n, r) => n + r.leftoverCount, 0);
  const killed = results.reduce((n, r) => n + r.killed, 0);
  const survivors = results.reduce((n, r) => n + r.survivors, 0);
  const notes: string[] = [];
  if (timedOut) notes.push(`killed at its timeout (${steps[results.indexOf(timedOut)]?.label})`);
  else if (failed) notes.push(noteFor(failed, steps[results.indexOf(failed)] as Step));
  if (notRun > 0) notes.push(`${notRun} step(s) not run: the phase ran out of time`);
  if (tampered)
    notes.push(`${steps.length - results.length - notRun} step result(s) could not be believed`);
  if (leftovers > 0)
    notes.push(
      `${leftovers} process(es) outlived their step${killed ? `; ${killed} still running after the settle window were killed` : ''}`,
    );
  if (survivors > 0) notes.push(`${survivors} process(es) could not be killed`);
  return {
    name: p.name,
    status: tampered
      ? 'failed'
      : timedOut || notRun > 0
        ? 'timeout'
        : failed
          ? 'failed'
          : 'completed',
    durationMs: Math.round(last.settledAt - first.start),
    // A step killed at its timeout has no exit code.
    exitCode: timedOut ? null : failed ? failed.code : 0,
    outputBytes: results.reduce((n, r) => n + r.stdoutBytes + r.stderrBytes, 0),
    ...(leftovers > 0
      ? { leftovers: results.flatMap((r) => r.leftovers.map((l) => l.cmd)).slice(0, 20) }
      : {}),
    ...(notes.length ? { note: notes.join('; ') } : {}),
  };
}
