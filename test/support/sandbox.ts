/**
 * Real Docker for integration tests: the engine from the environment and the images the current
 * inputs call for (built if missing, which is a no-op when `.ci/run` already built them).
 */
import { buildImages } from '../../src/images/build.js';
import type { ImageRefs } from '../../src/images/inputs.js';
import { DockerEngine } from '../../src/sandbox/docker/engine.js';
import { DockerImages } from '../../src/sandbox/docker/images.js';
import type { ContainerSpec, SandboxContainer, SandboxRun } from '../../src/sandbox/sandbox.js';

let refs: Promise<ImageRefs> | undefined;

export function engine(): DockerEngine {
  return new DockerEngine();
}

export function images(e: DockerEngine = engine()): Promise<ImageRefs> {
  refs ??= buildImages(new DockerImages(e.docker), {
    log: (l) => process.stderr.write(`${l}\n`),
  }).then((r) => r.refs);
  return refs;
}

/** A runner container that only sleeps, as the sandbox user, with no network. */
export function idleRunner(
  run: SandboxRun,
  runnerImage: string,
  extra: Partial<ContainerSpec> = {},
): Promise<SandboxContainer> {
  return run.start({
    role: 'sandbox',
    image: runnerImage,
    entrypoint: ['sleep', '120'],
    user: '1000:1000',
    network: { mode: 'none' },
    ...extra,
  });
}
