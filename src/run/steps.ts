/**
 * The host side of the step protocol, the one way check and audit run package code: a fresh
 * sandbox behind a fresh gateway holding the staged project, and steps run one after another by
 * the batch driver (src/agent/batch.ts), one `docker exec` for a list of steps.
 *
 * The driver runs as root out of the package's reach, and its results come back on the engine's
 * exec stream, which no package process can write to. They are still read as untrusted input:
 * every field is checked for type, size and possibility (times in order, one line per step, no
 * extra line). Anything else is tampering: the steps concerned get no window (their attempts are
 * then judged at their strictest) and the report carries a `tampering` finding; the check still
 * ends with a report.
 */
import { Readable } from 'node:stream';
import type { PhaseWindow } from '../core/report.js';
import type { Phase } from '../core/terms.js';
import { filesTar, makeIdentity, type IdentityProfile } from '../sandbox/identity.js';
import type { SandboxRun } from '../sandbox/sandbox.js';
import { agentCommand, AGENT_DIR, CaptureTopology, SANDBOX_WORKDIR } from '../sandbox/topology.js';
import { INSTALL_EVENTS, type TreePackageInfo } from '../resolve/stage.js';
import { packageEnv, type ScriptRun } from '../agent/lifecycle.js';
import type { HarnessResult } from '../agent/harness.js';
import { harnessResult } from '../agent/supervise.js';
import { idOf } from './summaries.js';
import type { BatchInput } from '../agent/batch.js';
import type { Leftover, StepInput, StepOutput } from '../agent/step.js';

export const STEP_OUTPUT_MAX = 64 * 1024;

/**
 * Environment of the install steps (npm's): npm's own update check would be egress that is not the
 * package's. Only npm gets it: in a plain `node` process these variables would give the sandbox
 * away, while npm hands scripts dozens of `npm_config_*` of its own.
 */
export const STEP_ENV = {
  npm_config_update_notifier: 'false',
  npm_config_audit: 'false',
  npm_config_fund: 'false',
};

/** The harness reads its input from the environment (and removes it), so command lines stay stable. */
export const HARNESS_SOURCE = `import { run } from '${AGENT_DIR}/harness.js';\nawait run((n) => import(n));`;

export interface Step {
  label: string;
  /** The phase the step belongs to and the package it is charged to (`name@version`). */
  phase: Phase;
  package: string;
  cmd: string;
  args: string[];
  timeoutMs: number;
  env?: Record<string, string>;
  /** A non-zero exit is not the package failing (a bin run with odd arguments). */
  exitMayFail?: boolean;
  /** The folders of the step's own package: files elsewhere in the project must not change. */
  own?: string[];
  /** A load or exercise by the harness, which reports on a channel to the driver (StepInput.harness). */
  harness?: boolean;
  /** Install scripts the driver runs itself, as npm would, in place of `cmd` (StepInput.scripts). */
  scripts?: ScriptRun[];
  /** More project paths a change to which is reported (guard.watch), besides the usual ones. */
  watch?: string[];
}

/** What a run of steps gave: one output per step that ran, and what could not be believed. */
export interface StepRun {
  /** In the order of the steps; shorter than the list when results are missing. */
  outputs: StepOutput[];
  /** Steps after those not run because the batch's time budget was spent. */
  notRun: number;
  /** When each step ran (the window its package is charged for). */
  windows: PhaseWindow[];
  /** Why results could not be believed: a `tampering` finding each. */
  tampering: string[];
  /** What steps did to the sandbox itself: a finding each (see StepConduct). */
  conduct: StepConduct[];
}

/**
 * A step that went after the sandbox rather than the network: it changed files of other packages
 * or npm's configuration, which later steps run under another package's name (tree-modified), or
 * it left processes that were still running when the settle window ended: whatever they were
 * waiting to do was never watched (outlived-watch).
 */
export interface StepConduct {
  id: 'tree-modified' | 'persistence' | 'outlived-watch';
  phase: Phase;
  package: string;
  step: string;
  /** For tree-modified: how many paths, and the first of them. */
  paths?: { count: number; shown: string[] };
  /** For outlived-watch: how many processes were still running when the settle window ended. */
  processes?: number;
}

/**
 * Read the batch driver's output: one JSON line per step. Pure; every value is checked, and the
 * first line that fails ends the reading (later lines cannot be trusted to belong to later steps).
 */
export function readStepResults(
  stdout: string,
  steps: readonly Pick<Step, 'label' | 'timeoutMs'>[],
  limits: { settleMs: number; maxOutputBytes: number; after?: number },
): { outputs: StepOutput[]; notRun: number; tampering: string[] } {
  const lines = stdout.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const outputs: StepOutput[] = [];
  const tampering: string[] = [];
  let notRun = 0;
  let previousEnd = limits.after ?? -Infinity;
  for (const [i, line] of lines.entries()) {
    const step = steps[i];
    if (!step) {
      tampering.push(
        `the step driver wrote ${lines.length - steps.length} line(s) more than the ${steps.length} step(s) it ran`,
      );
      break;
    }
    if (line === NOT_RUN) {
      notRun++;
      continue;
    }
    if (notRun > 0) {
      tampering.push(`the step driver ran ${step.label} after it had run out of time`);
      break;
    }
    const problem = checkOutput(line, step, previousEnd, limits);
    if (typeof problem === 'string') {
      tampering.push(
        `the result of ${step.label} is not one the step driver could have written: ${problem}`,
      );
      break;
    }
    outputs.push(problem);
    previousEnd = problem.settledAt;
  }
  const missing = steps.length - outputs.length - notRun;
  if (tampering.length === 0 && missing > 0)
    tampering.push(
      `the step driver gave no result for ${steps[outputs.length + notRun]?.label ?? 'a step'} (${missing} of ${steps.length} missing)`,
    );
  return { outputs, notRun, tampering };
}

/** The line the batch driver writes for a step it did not start because its budget was spent. */
export const NOT_RUN = '{"notRun":true}';

/**
 * The longest line the driver can write: two streams of STEP_OUTPUT_MAX bytes, each control byte
 * escaped by JSON as six characters, plus 50 leftover command lines and the fixed fields.
 */
const LINE_MAX = 2 * 6 * STEP_OUTPUT_MAX + 128 * 1024;

function checkOutput(
  line: string,
  step: Pick<Step, 'timeoutMs'>,
  previousEnd: number,
  limits: { settleMs: number; maxOutputBytes: number },
): StepOutput | string {
  if (line.length > LINE_MAX) return `a line of ${line.length} characters`;
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return 'not JSON';
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return 'not an object';
  const o = v as Record<string, unknown>;
  const num = (k: string) =>
    typeof o[k] === 'number' && Number.isFinite(o[k]) && (o[k] as number) >= 0;
  for (const k of [
    'start',
    'end',
    'settledAt',
    'stdoutBytes',
    'stderrBytes',
    'leftoverCount',
    'killed',
    'survivors',
  ])
    if (!num(k)) return `${k} is not a number`;
  if (o.strays !== undefined && !num('strays')) return 'strays is not a number';
  if (o.resumed !== undefined && !num('resumed')) return 'resumed is not a number';
  if (o.modified !== undefined) {
    const m = o.modified as { count?: unknown; paths?: unknown };
    if (
      typeof m !== 'object' ||
      !m ||
      typeof m.count !== 'number' ||
      !Array.isArray(m.paths) ||
      m.paths.length > 20 ||
      !m.paths.every((x) => typeof x === 'string' && x.length <= 4096)
    )
      return 'modified is not a bounded list';
  }
  if (
    o.harness !== undefined &&
    (!o.harness ||
      typeof o.harness !== 'object' ||
      Array.isArray(o.harness) ||
      JSON.stringify(o.harness).length > 4096)
  )
    return 'harness is not a bounded object';
  const strOrNull = (k: string) => o[k] === null || typeof o[k] === 'string';
  if (!(o.code === null || (typeof o.code === 'number' && Number.isInteger(o.code))))
    return 'code is not an exit code';
  if (!strOrNull('signal') || !strOrNull('error')) return 'signal or error is not text';
  if (typeof o.timedOut !== 'boolean') return 'timedOut is not a boolean';
  // The driver keeps at most maxOutputBytes bytes of each stream; decoding can only shrink that.
  for (const k of ['stdout', 'stderr'])
    if (typeof o[k] !== 'string' || (o[k] as string).length > limits.maxOutputBytes)
      return `${k} is not bounded text`;
  if (
    !Array.isArray(o.leftovers) ||
    o.leftovers.length > 50 ||
    !o.leftovers.every(
      (l: unknown) =>
        !!l &&
        typeof (l as Leftover).pid === 'number' &&
        typeof (l as Leftover).cmd === 'string' &&
        (l as Leftover).cmd.length <= 300,
    )
  )
    return 'leftovers is not a bounded list';
  const out = o as unknown as StepOutput;
  if (!(out.start <= out.end && out.end <= out.settledAt)) return 'its times are out of order';
  if (out.start < previousEnd) return 'it started before the step before it ended';
  // The driver kills a step at its timeout and leftovers after the settle window; the killing
  // itself is bounded (100 rounds of at most 50 ms), so a step cannot last much longer.
  const longest = step.timeoutMs + limits.settleMs + 10_000;
  if (out.settledAt - out.start > longest)
    return `it lasted ${Math.round(out.settledAt - out.start)} ms, more than ${longest}`;
  return out;
}

/**
 * What a step may write: its own package's folders (and the project folder and the top
 * node_modules, for caches); what is watched besides: npm's configuration files, the project's
 * manifest and lockfile, bin links (see StepInput.guard).
 */
/**
 * Files that run code later, on the user's machine, with no package manager involved: shell
 * start-up files, git's and ssh's configuration (fsmonitor, ProxyCommand), desktop autostart,
 * editor tasks that run when the folder opens. A package that writes one has planted something
 * (a `persistence` finding); what it will do there happens after the run.
 */
const PERSISTENCE_HOME = [
  // Shells and terminals.
  '.bashrc',
  '.bash_profile',
  '.bash_login',
  '.bash_logout',
  '.profile',
  '.zshrc',
  '.zprofile',
  '.zshenv',
  '.zlogin',
  '.zlogout',
  '.config/fish',
  '.tmux.conf',
  '.pam_environment',
  '.config/environment.d',
  // What runs first on the PATH, or is required from outside any project.
  '.local/bin',
  '.node_modules',
  '.node_libraries',
  // Git, ssh, git hooks managers, package managers' own configuration.
  '.gitconfig',
  '.config/git',
  '.ssh',
  '.config/husky',
  '.huskyrc',
  '.yarnrc',
  '.yarnrc.yml',
  // Desktop and service autostart, editors.
  '.config/autostart',
  '.config/systemd',
  '.local/share/systemd',
  '.vimrc',
  '.config/nvim',
  '.bash_aliases',
  '.bashrc.d',
  '.oh-my-zsh',
  '.xprofile',
  '.xsessionrc',
  '.emacs',
  '.emacs.d',
  '.vim',
  '.config/Code',
  '.local/share/applications',
  // Code other programs load when they start: python's site-packages (.pth files run), npm's
  // init script, tools' configuration that names a command to run.
  '.local/lib',
  '.npm-init.js',
  '.ipython',
  '.config/pip',
  '.pip',
  '.config/direnv',
  '.config/gh',
  '.aws/config',
  '.kube',
  '.docker',
  '.cargo',
  '.gradle',
  '.m2',
  // A CI runner's command files: what is written there changes every later step of the workflow.
  'work/_temp/_runner_file_commands',
];
const PERSISTENCE_PROJECT = [
  // The staged project has no repository; a package that makes one plants hooks in the real one.
  '.git',
  '.vscode',
  '.idea',
  '.devcontainer',
  '.github',
  '.husky',
  '.envrc',
  '.pnpmfile.cjs',
  '.yarnrc',
  '.yarnrc.yml',
];

function persistencePaths(home: string): string[] {
  return [
    ...PERSISTENCE_HOME.map((p) => `${home}/${p}`),
    ...PERSISTENCE_PROJECT.map((p) => `${SANDBOX_WORKDIR}/${p}`),
  ];
}

function isPersistence(path: string, home: string): boolean {
  const under = (base: string, rel: string) =>
    path === `${base}/${rel}` || path.startsWith(`${base}/${rel}/`);
  return (
    PERSISTENCE_HOME.some((p) => under(home, p)) ||
    PERSISTENCE_PROJECT.some((p) => under(SANDBOX_WORKDIR, p))
  );
}

function guardFor(step: Step, home: string): StepInput['guard'] {
  if (!step.own) return undefined;
  const planted = persistencePaths(home);
  return {
    project: SANDBOX_WORKDIR,
    own: step.own.map((l) => `${SANDBOX_WORKDIR}/${l}`),
    watch: [
      `${SANDBOX_WORKDIR}/package.json`,
      `${SANDBOX_WORKDIR}/package-lock.json`,
      `${SANDBOX_WORKDIR}/.npmrc`,
      `${SANDBOX_WORKDIR}/node_modules/.bin`,
      `${SANDBOX_WORKDIR}/node_modules/.package-lock.json`,
      `${home}/.npmrc`,
      `${home}/.config/npm`,
      // libfaketime's per-user settings: a file here takes later steps off the virtual clock.
      `${home}/.faketimerc`,
      // Where code is planted to run later on a real machine (PERSISTENCE).
      ...planted,
      // What node-gyp reads to build the next package's addon (common.gypi may run commands).
      `${home}/.cache/node-gyp`,
      `${home}/.node-gyp`,
      `${home}/.gyp`,
      ...(step.watch ?? []).map((l) => `${SANDBOX_WORKDIR}/${l}`),
    ],
    // Named first when a step changed more files than the driver lists.
    first: planted,
  };
}

function toStepInput(step: Step, settleMs: number, home: string): StepInput {
  const guard = guardFor(step, home);
  return {
    cmd: step.cmd,
    args: step.args,
    timeoutMs: step.timeoutMs,
    maxOutputBytes: STEP_OUTPUT_MAX,
    settleMs,
    ...(step.env ? { env: step.env } : {}),
    ...(step.harness ? { harness: true } : {}),
    ...(step.scripts ? { scripts: step.scripts } : {}),
    ...(guard ? { guard } : {}),
  };
}

/**
 * Run steps one after another in the sandbox in one exec of the batch driver, each exactly as the
 * step driver runs one, as the package's user, in the project.
 */
export async function runSteps(
  topo: CaptureTopology,
  steps: Step[],
  o: { settleMs: number; signal?: AbortSignal; budgetMs?: number },
): Promise<StepRun> {
  const [ran] = await runStepGroups(topo, [{ steps, budgetMs: o.budgetMs }], o);
  return ran as StepRun;
}

/**
 * Run groups of steps (the phases of a check) in one exec of the batch driver: each group's
 * budget counts from its start, and `onGroup` hears when each starts, as the driver's lines come.
 * One exec and one driver start for all of them, instead of one per phase.
 */
export async function runStepGroups(
  topo: CaptureTopology,
  groups: readonly { steps: Step[]; budgetMs?: number | undefined }[],
  o: { settleMs: number; signal?: AbortSignal; onGroup?: (index: number) => void },
): Promise<StepRun[]> {
  o.signal?.throwIfAborted();
  const steps = groups.flatMap((g) => g.steps);
  if (steps.length === 0)
    return groups.map(() => ({ outputs: [], notRun: 0, windows: [], tampering: [], conduct: [] }));
  const batch: BatchInput = {
    steps: steps.map((s) => toStepInput(s, o.settleMs, topo.identity.home)),
    groups: groups.map((g) => ({
      steps: g.steps.length,
      ...(g.budgetMs !== undefined ? { budgetMs: g.budgetMs } : {}),
    })),
  };
  // Where each group starts in the driver's lines, for onGroup.
  const starts = groups.map((_, i) => groups.slice(0, i).reduce((n, g) => n + g.steps.length, 0));
  let lines = 0;
  let told = 0;
  const tell = () => {
    while (told < groups.length && (starts[told] as number) <= lines) {
      if ((groups[told]?.steps.length ?? 0) > 0) o.onGroup?.(told);
      told++;
    }
  };
  tell();
  const input = JSON.stringify(batch);
  const r = await topo.sandbox.exec(agentCommand('batch.js'), {
    user: '0:0',
    stdin: Readable.from([Buffer.from(input)]),
    env: { HOME: topo.identity.home },
    workingDir: SANDBOX_WORKDIR,
    // The driver kills each step at its timeout; this only guards against the driver hanging.
    timeoutMs: steps.reduce((n, s) => n + s.timeoutMs + o.settleMs + 2_000, 0) + 15_000,
    maxOutputBytes: LINE_MAX * steps.length,
    onStdout: (chunk) => {
      for (const byte of chunk) if (byte === 10) lines++;
      tell();
    },
  });
  // Ctrl-C removes the containers under a running step: that is the interruption, not tampering.
  o.signal?.throwIfAborted();
  const all = r.stdout.split('\n');
  let after = -Infinity;
  return groups.map((g, gi) => {
    const start = starts[gi] as number;
    // The last group also gets any lines past the steps (the driver said too much).
    const mine =
      gi === groups.length - 1 ? all.slice(start) : all.slice(start, start + g.steps.length);
    const { outputs, notRun, tampering } = readStepResults(mine.join('\n'), g.steps, {
      settleMs: o.settleMs,
      maxOutputBytes: STEP_OUTPUT_MAX,
      after,
    });
    after = outputs[outputs.length - 1]?.settledAt ?? after;
    if (tampering.length && (r.exitCode !== 0 || r.timedOut))
      tampering.push(
        `the step driver ended with exit ${r.exitCode ?? 'unknown'}${r.timedOut ? ' after its time ran out' : ''}${r.stderr.trim() ? `: ${r.stderr.trim().slice(0, 300)}` : ''}`,
      );
    return summarize(topo, g.steps, outputs, notRun, tampering);
  });
}

/** A group's outputs with the windows its packages are charged for and what its steps did to the sandbox. */
function summarize(
  topo: CaptureTopology,
  steps: readonly Step[],
  outputs: StepOutput[],
  notRun: number,
  tampering: string[],
): StepRun {
  const windows = outputs.map((out, i) => {
    const s = steps[i] as Step;
    return { name: s.phase, package: s.package, startMs: out.start, endMs: out.settledAt };
  });
  const shown = (paths: string[]) =>
    paths.map((p) =>
      p.startsWith(`${SANDBOX_WORKDIR}/`) ? p.slice(SANDBOX_WORKDIR.length + 1) : p,
    );
  const conduct = outputs.flatMap((out, i): StepConduct[] => {
    const s = steps[i] as Step;
    const who = { phase: s.phase, package: s.package, step: s.label };
    const home = topo.identity.home;
    const planted = out.modified?.paths.filter((p) => isPersistence(p, home)) ?? [];
    const others = out.modified?.paths.filter((p) => !isPersistence(p, home)) ?? [];
    const rest = (out.modified?.count ?? 0) - planted.length;
    return [
      ...(planted.length
        ? [
            {
              id: 'persistence' as const,
              ...who,
              paths: { count: planted.length, shown: shown(planted) },
            },
          ]
        : []),
      ...(rest > 0
        ? [{ id: 'tree-modified' as const, ...who, paths: { count: rest, shown: shown(others) } }]
        : []),
      ...(out.killed > 0 ? [{ id: 'outlived-watch' as const, ...who, processes: out.killed }] : []),
    ];
  });
  return { outputs, notRun, windows, tampering, conduct };
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
  opts: { tlsIntercept?: boolean } = {},
): Promise<CaptureTopology> {
  const identity = makeIdentity(as);
  // The tree, then the project's own files, unpacked while the gateway sets up.
  return CaptureTopology.start(run, {
    identity,
    runnerImage: refs.runner,
    gatewayImage: refs.gateway,
    project: [project, filesTar(identity.projectFiles)],
    tlsIntercept: opts.tlsIntercept ?? true,
  });
}

/**
 * The harness's result, as the step driver relayed it from the harness's channel (display only:
 * the package runs in the harness's process and can change what it counts).
 */
export function parseHarness(out: { harness?: unknown } | undefined): HarnessResult | undefined {
  return harnessResult(out?.harness);
}

/** npm's own closing lines, which say nothing about why the script failed. */
const NPM_TRAILER =
  /A complete log of this run can be found in|^npm (error|ERR!) (code|path|command|workdir|signal|errno)\b|^npm (error|ERR!)\s*$/;

/**
 * The install phase's steps, in npm's order: every package's preinstall, then every install, then
 * every postinstall, dependencies first within each, so no package's postinstall runs before
 * another's preinstall, as under npm. One step per package and event, so the step, not the
 * process's npm variables, says whose script made an attempt. The driver runs each script as `npm
 * install` would (src/agent/lifecycle.ts). A bundled package's scripts run in the steps of the
 * package that bundles it (npm never rebuilds a bundled package by name: its identity is its
 * bundler's tarball). `chargeTo` picks the package a step is charged to (default: the package
 * whose scripts run).
 */
export function installSteps(
  packages: readonly TreePackageInfo[],
  timeoutMs: number,
  chargeTo: (owner: string, scripted: TreePackageInfo[]) => string = (owner) => owner,
): Step[] {
  const owners = new Map<string, TreePackageInfo[]>();
  for (const p of packages) {
    if (!p.installScripts.length) continue;
    const owner = p.bundledBy ?? idOf(p);
    owners.set(owner, [...(owners.get(owner) ?? []), p]);
  }
  // A step's own folders: its package's, and what that package bundles (its tarball's code).
  const ownOf = (id: string) =>
    packages.filter((p) => idOf(p) === id || p.bundledBy === id).map((p) => p.location);
  // The folders on the PATH npm gives each package's scripts (every node_modules/.bin from its
  // folder up): one package's step that adds a command there would run as another's.
  const pathOf = (p: TreePackageInfo) => {
    const out: string[] = [];
    for (let at = p.location; at; at = at.includes('/') ? at.slice(0, at.lastIndexOf('/')) : '')
      out.push(`${at}/node_modules/.bin`);
    return out;
  };
  const run = (p: TreePackageInfo, event: string): ScriptRun => {
    const path = `${SANDBOX_WORKDIR}/${p.location}`;
    return {
      path,
      event,
      command: p.scripts[event]?.command ?? 'node-gyp rebuild',
      env:
        p.scriptEnv ??
        packageEnv(
          { name: p.name, version: p.version },
          {
            resolved: null,
            integrity: p.integrity,
            optional: false,
            dev: false,
            peer: false,
            devOptional: false,
          },
          path,
        ),
    };
  };
  const bins = new Map([...owners].map(([owner, scripted]) => [owner, scripted.flatMap(pathOf)]));
  return INSTALL_EVENTS.flatMap((event) =>
    [...owners].flatMap(([owner, scripted]): Step[] => {
      const others = [...bins].filter(([o]) => o !== owner).flatMap(([, b]) => b);
      const scripts = scripted
        .filter((p) => p.installScripts.includes(event))
        .map((p) => run(p, event));
      if (!scripts.length) return [];
      return [
        {
          label: `${event} of ${owner}`,
          phase: 'install',
          package: chargeTo(owner, scripted),
          cmd: 'sh',
          args: ['-c', scripts.map((r) => r.command).join(' && ')],
          scripts,
          timeoutMs,
          own: [...new Set([...ownOf(owner), ...scripted.map((p) => p.location)])],
          watch: [...new Set(others)].sort(),
        },
      ];
    }),
  );
}

/** A line on why a step failed, from its error or its stderr. */
export function noteFor(r: StepOutput, s: Pick<Step, 'label'>): string {
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
