/**
 * What every command shares: the engine, progress output on stderr, and Ctrl-C handling that
 * removes the run's containers before exiting.
 */
import { PhonehomeError } from '../core/errors.js';
import { forTerminal } from '../core/escape.js';
import { removeOwnStagingDirs } from '../resolve/staging-dirs.js';
import type { DockerEngine } from '../sandbox/docker/engine.js';
import type { DockerImages } from '../sandbox/docker/images.js';

export interface CliSandbox {
  engine: DockerEngine;
  images: DockerImages;
}

export interface CliContext {
  /**
   * The Docker engine, loaded on first use: a command answered from the result store never loads
   * the Docker client.
   */
  sandbox(): Promise<CliSandbox>;
  /**
   * A progress line to stderr. Lines name packages and quote what they printed, so the sink
   * escapes them (forTerminal): a line is one line, and no control reaches the terminal.
   */
  log: (line: string) => void;
  /** Aborted on the first Ctrl-C / SIGTERM. */
  signal: AbortSignal;
}

let current: { ctx: CliContext; controller: AbortController } | undefined;

export function cliContext(): CliContext {
  if (current) return current.ctx;
  let engine: DockerEngine | undefined;
  let loading: Promise<CliSandbox> | undefined;
  const controller = new AbortController();
  const ctx: CliContext = {
    sandbox: () =>
      (loading ??= (async () => {
        const [{ DockerEngine }, { DockerImages }] = await Promise.all([
          import('../sandbox/docker/engine.js'),
          import('../sandbox/docker/images.js'),
        ]);
        engine = new DockerEngine();
        return { engine, images: new DockerImages(engine.docker) };
      })()),
    log: (line) => process.stderr.write(`${forTerminal(line)}\n`),
    signal: controller.signal,
  };
  current = { ctx, controller };
  let interrupts = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    interrupts++;
    if (interrupts > 1) process.exit(130);
    process.stderr.write(`\nphonehome: ${sig}: stopping and removing this run's containers...\n`);
    controller.abort(new PhonehomeError('EINTERRUPTED'));
    const code = sig === 'SIGINT' ? 130 : 143;
    if (!engine) process.exit(code);
    void engine.disposeAll().finally(() => process.exit(code));
  };
  // However the process ends, no staging folder of it stays (an interrupt can come between a
  // folder's creation and the code that would remove it).
  process.on('exit', removeOwnStagingDirs);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return ctx;
}
