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
  /** The engine at this `--engine` address (`default` is `sandbox()`), loaded on first use. */
  sandboxAt(address: string): Promise<CliSandbox>;
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
  const engines: DockerEngine[] = [];
  const loading = new Map<string, Promise<CliSandbox>>();
  const controller = new AbortController();
  const load = (address: string): Promise<CliSandbox> => {
    let l = loading.get(address);
    if (!l) {
      l = (async () => {
        const [{ DockerEngine }, { DockerImages }, { parseEngine }, { default: Docker }] =
          await Promise.all([
            import('../sandbox/docker/engine.js'),
            import('../sandbox/docker/images.js'),
            import('../sandbox/docker/connect.js'),
            import('dockerode'),
          ]);
        const at = parseEngine(address);
        const engine = new DockerEngine(
          at.options ? new Docker(at.options) : new Docker(),
          at.name,
        );
        engines.push(engine);
        return { engine, images: new DockerImages(engine.docker) };
      })();
      loading.set(address, l);
    }
    return l;
  };
  const ctx: CliContext = {
    sandbox: () => load('default'),
    sandboxAt: (address) => load(address.trim() || 'default'),
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
    if (!engines.length) process.exit(code);
    // Bounded: an engine that hangs (a frozen daemon, a machine gone) cannot hold the exit.
    setTimeout(() => process.exit(code), 30_000).unref();
    void Promise.allSettled(engines.map((e) => e.disposeAll())).finally(() => process.exit(code));
  };
  // However the process ends, no staging folder of it stays (an interrupt can come between a
  // folder's creation and the code that would remove it).
  process.on('exit', removeOwnStagingDirs);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return ctx;
}
