/**
 * `check`: resolve and stage on the host, then in a fresh sandbox behind a fresh gateway run the
 * install and import phases, collect every egress attempt and build the report.
 */
import { PhonehomeError } from '../core/errors.js';
import {
  buildReport,
  type CheckReport,
  type PhaseResult,
  type PhaseWindow,
} from '../core/report.js';
import type { Phase } from '../core/terms.js';
import { buildImages } from '../images/build.js';
import { stage } from '../resolve/stage.js';
import type { ImageStore, SandboxEngine } from '../sandbox/sandbox.js';
import { CaptureTopology, SANDBOX_HOME, SANDBOX_WORKDIR } from '../sandbox/topology.js';
import { DRIVER_SOURCE, type StepResult } from './driver.js';

export interface CheckOptions {
  registry?: string;
  installTimeoutMs?: number;
  importTimeoutMs?: number;
  /** How long to keep watching after the last phase for delayed and detached egress. */
  settleMs?: number;
  log?: (line: string) => void;
  signal?: AbortSignal;
}

const DEFAULTS = { installTimeoutMs: 180_000, importTimeoutMs: 30_000, settleMs: 3_000 };
const STEP_OUTPUT_MAX = 64 * 1024;

/** Environment of every step: npm's own update check would be egress that is not the package's. */
const STEP_ENV = {
  HOME: SANDBOX_HOME,
  npm_config_update_notifier: 'false',
  npm_config_audit: 'false',
  npm_config_fund: 'false',
};

export async function check(
  engine: SandboxEngine,
  images: ImageStore,
  spec: string,
  opts: CheckOptions = {},
): Promise<CheckReport> {
  const o = { ...DEFAULTS, ...opts };
  const log = opts.log ?? (() => undefined);
  const { refs } = await buildImages(images, { log });
  log(`[check] resolving ${spec}`);
  await using staged = await stage(spec, {
    ...(opts.registry ? { registry: opts.registry } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  log(
    `[check] ${staged.name}@${staged.version}: ${staged.packages.length} package(s), ${staged.packages.filter((p) => p.installScripts.length).length} with install scripts`,
  );
  opts.signal?.throwIfAborted();
  await using run = engine.newRun();
  const topo = await CaptureTopology.start(run, {
    runnerImage: refs.runner,
    gatewayImage: refs.gateway,
  });
  await topo.unpack(staged.tar());

  const phases: PhaseResult[] = [];
  const windows: PhaseWindow[] = [];
  const runStep = async (cmd: string, args: string[], timeoutMs: number): Promise<StepResult> => {
    opts.signal?.throwIfAborted();
    const r = await topo.sandbox.exec(
      ['node', '-e', DRIVER_SOURCE, JSON.stringify([cmd, args, timeoutMs, STEP_OUTPUT_MAX])],
      {
        env: STEP_ENV,
        workingDir: SANDBOX_WORKDIR,
        // The driver kills the step at its timeout; this only guards against the driver itself hanging.
        timeoutMs: timeoutMs + 15_000,
        maxOutputBytes: 4 * STEP_OUTPUT_MAX,
      },
    );
    const line = r.stdout.trim().split('\n').pop() ?? '';
    try {
      return JSON.parse(line) as StepResult;
    } catch {
      throw new PhonehomeError(
        'EINTERNAL',
        `The phase driver gave no result for ${cmd} (exit ${r.exitCode}${r.timedOut ? ', timed out' : ''}).`,
        { detail: r.stderr.slice(0, 2000) },
      );
    }
  };
  const phase = async (
    name: Phase,
    steps: [string, string[]][],
    timeoutMs: number,
  ): Promise<void> => {
    log(`[check] phase ${name}`);
    const results: StepResult[] = [];
    for (const [cmd, args] of steps) results.push(await runStep(cmd, args, timeoutMs));
    const first = results[0];
    const last = results[results.length - 1];
    if (!first || !last) return;
    windows.push({ name, startMs: first.start, endMs: last.end });
    const failed = results.find((r) => r.timedOut || r.code !== 0);
    phases.push({
      name,
      status: results.some((r) => r.timedOut) ? 'timeout' : failed ? 'failed' : 'completed',
      durationMs: Math.round(last.end - first.start),
      exitCode: failed ? failed.code : 0,
      outputBytes: results.reduce((n, r) => n + r.stdoutBytes + r.stderrBytes, 0),
      ...(failed ? { note: noteFor(failed) } : {}),
    });
  };

  await phase(
    'install',
    [['npm', ['rebuild', '--dangerously-allow-all-scripts', '--foreground-scripts']]],
    o.installTimeoutMs,
  );
  const name = JSON.stringify(staged.name);
  await phase(
    'import',
    [
      ['node', ['-e', `require(${name})`]],
      ['node', ['--input-type=module', '-e', `await import(${name})`]],
    ],
    o.importTimeoutMs,
  );
  phases.push({
    name: 'exercise',
    status: 'skipped',
    durationMs: 0,
    note: 'calling exports and bins is not built yet',
  });

  // Delayed payloads and detached children: keep the gateway listening a little longer.
  await new Promise((r) => setTimeout(r, o.settleMs));
  const eventLog = await topo.events();
  return buildReport({
    subject: { name: staged.name, version: staged.version, integrity: staged.integrity, spec },
    phases,
    windows,
    events: eventLog.events,
    truncated: eventLog.truncatedCounts,
  });
}

function noteFor(r: StepResult): string {
  if (r.timedOut) return 'killed at its timeout';
  if (r.error) return r.error;
  const lastLine = (
    r.stderr
      .trim()
      .split('\n')
      .filter((l) => l.trim())
      .pop() ?? ''
  ).slice(0, 200);
  return `exit ${r.code ?? r.signal}${lastLine ? `: ${lastLine}` : ''}`;
}
