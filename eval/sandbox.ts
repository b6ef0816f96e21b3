/**
 * What both suites start with: a Docker engine, the sandbox images built, Ctrl-C cleaning up, and
 * the shipped default policy (no policy file from the working directory).
 */
import { buildImages } from '../src/images/build.js';
import { loadPolicy, type LoadedPolicy } from '../src/policy/load.js';
import { DockerEngine } from '../src/sandbox/docker/engine.js';
import { DockerImages } from '../src/sandbox/docker/images.js';

export async function evalSandbox(): Promise<{
  engine: DockerEngine;
  images: DockerImages;
  policy: LoadedPolicy;
}> {
  const engine = new DockerEngine();
  const images = new DockerImages(engine.docker);
  await buildImages(images, { log: (l) => process.stderr.write(`${l}\n`) });
  process.on('SIGINT', () => void engine.disposeAll().finally(() => process.exit(130)));
  return { engine, images, policy: loadPolicy({ discover: false }) };
}
