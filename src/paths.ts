import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The installed package's root (holds sandbox-images/, policies/, dist/). */
export function packageRoot(): string {
  // This file compiles to dist/src/paths.js.
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
}

/** Where compiled capture program files live (copied into the gateway image). */
export function captureDistDir(): string {
  return join(packageRoot(), 'dist', 'src', 'capture');
}

/** Where compiled sandbox agent files live (copied into the runner image). */
export function agentDistDir(): string {
  return join(packageRoot(), 'dist', 'src', 'agent');
}

/** The user's cache directory for phonehome (XDG on Linux). */
export function cacheDir(): string {
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg && xdg.startsWith('/') ? xdg : join(homedir(), '.cache'), 'phonehome');
}

let version: string | undefined;
/** phonehome's own version, from its package.json. */
export function phonehomeVersion(): string {
  version ??= (
    JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }
  ).version;
  return version;
}
