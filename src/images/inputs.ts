/**
 * What the sandbox images are made of, and the tags derived from it: a tag is a hash of every
 * input, so a changed input means a new tag and a rebuild, and an unchanged one means no work.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { agentDistDir, captureDistDir, packageRoot } from '../paths.js';

export interface ImageVersions {
  debianSuite: string;
  node: string;
  npm: string;
}

export interface ImageRefs {
  base: string;
  runner: string;
  gateway: string;
}

export function imagesDir(): string {
  return join(packageRoot(), 'sandbox-images');
}

export function defaultVersions(): ImageVersions {
  const v = JSON.parse(readFileSync(join(imagesDir(), 'versions.json'), 'utf8')) as ImageVersions;
  return { debianSuite: v.debianSuite, node: v.node, npm: v.npm };
}

export function debianPackages(): string[] {
  return readFileSync(join(imagesDir(), 'base', 'packages.txt'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
}

function listFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...listFiles(p));
    else out.push(p);
  }
  return out;
}

function hashFiles(
  h: ReturnType<typeof createHash>,
  dir: string,
  filter: (p: string) => boolean = () => true,
): void {
  for (const f of listFiles(dir).filter(filter)) {
    h.update(relative(dir, f)).update('\0').update(readFileSync(f)).update('\0');
  }
}

/** Capture program files that go into the gateway image (compiled JS, no maps or typings). */
export function captureFiles(): string[] {
  return listFiles(captureDistDir()).filter((f) => f.endsWith('.js'));
}

/** Sandbox agent files (observer, step driver, harness) that go into the runner image. */
export function agentFiles(): string[] {
  return listFiles(agentDistDir()).filter((f) => f.endsWith('.js'));
}

export function resolveVersions(v: Partial<ImageVersions> = {}): ImageVersions {
  return {
    ...defaultVersions(),
    ...Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined)),
  };
}

const refsCache = new Map<string, ImageRefs>();

/** The image tags: hashes of every input (read once per process; the inputs do not change). */
export function imageRefs(versions: ImageVersions): ImageRefs {
  const key = JSON.stringify(versions);
  const known = refsCache.get(key);
  if (known) return known;
  const refs = computeRefs(versions);
  refsCache.set(key, refs);
  return refs;
}

function computeRefs(versions: ImageVersions): ImageRefs {
  const base = createHash('sha256').update(JSON.stringify(versions)).update('\0');
  hashFiles(base, join(imagesDir(), 'base'));
  const baseTag = base.digest('hex').slice(0, 16);

  const runner = createHash('sha256').update(baseTag).update('\0');
  hashFiles(runner, join(imagesDir(), 'runner'));
  hashFiles(runner, agentDistDir(), (f) => f.endsWith('.js'));

  const gateway = createHash('sha256').update(baseTag).update('\0');
  hashFiles(gateway, join(imagesDir(), 'gateway'));
  hashFiles(gateway, captureDistDir(), (f) => f.endsWith('.js'));
  // The capture program imports types only from core; its runtime files are all in capture/.
  return {
    base: `phonehome-base:${baseTag}`,
    runner: `phonehome-runner:${runner.digest('hex').slice(0, 16)}`,
    gateway: `phonehome-gateway:${gateway.digest('hex').slice(0, 16)}`,
  };
}
