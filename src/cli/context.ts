/**
 * What every command shares: the engine, progress output on stderr, and Ctrl-C handling that
 * removes the run's containers before exiting.
 */
import { PhonehomeError } from '../core/errors.js';
import { DockerEngine } from '../sandbox/docker/engine.js';
import { DockerImages } from '../sandbox/docker/images.js';

export interface CliContext {
  engine: DockerEngine;
  images: DockerImages;
  log: (line: string) => void;
  /** Aborted on the first Ctrl-C / SIGTERM. */
  signal: AbortSignal;
}

let current: { ctx: CliContext; controller: AbortController } | undefined;

export function cliContext(): CliContext {
  if (current) return current.ctx;
  const engine = new DockerEngine();
  const controller = new AbortController();
  const ctx: CliContext = {
    engine,
    images: new DockerImages(engine.docker),
    log: (line) => process.stderr.write(`${line}\n`),
    signal: controller.signal,
  };
  current = { ctx, controller };
  let interrupts = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    interrupts++;
    if (interrupts > 1) process.exit(130);
    process.stderr.write(`\nphonehome: ${sig}: stopping and removing this run's containers...\n`);
    controller.abort(new PhonehomeError('EINTERRUPTED'));
    void engine.disposeAll().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return ctx;
}
