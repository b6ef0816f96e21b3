/**
 * The real package managers (pnpm, Yarn classic, Yarn Berry, Bun: dev dependencies of phonehome)
 * writing a project's lockfile against the loopback test registry, as their users would. No
 * install script runs; what they download goes to folders of the test's own, removed with it.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../src/paths.js';

export const MANAGERS = ['pnpm', 'yarn-classic', 'yarn-berry', 'bun'] as const;
export type Manager = (typeof MANAGERS)[number];

const bin = (...p: string[]) => join(packageRoot(), 'node_modules', ...p);

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    c.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}\n${out}`)),
    );
  });
}

/** Write `dir`'s lockfile with `manager`, resolving against `registry`. */
export async function lockWith(manager: Manager, dir: string, registry: string): Promise<void> {
  const scratch = mkdtempSync(join(tmpdir(), `phonehome-${manager}-`));
  // As in a user's shell: without the npm_config_* variables `npm test` exports, and not in CI
  // mode (Yarn Berry refuses to write a lockfile there).
  const env = {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_config_/i.test(k))),
    CI: '',
    HOME: scratch,
    XDG_CACHE_HOME: join(scratch, 'cache'),
  };
  try {
    switch (manager) {
      case 'pnpm':
        await run(
          process.execPath,
          [
            bin('pnpm', 'bin', 'pnpm.cjs'),
            'install',
            '--lockfile-only',
            '--ignore-scripts',
            '--registry',
            registry,
            '--store-dir',
            join(scratch, 'store'),
          ],
          dir,
          env,
        );
        break;
      case 'yarn-classic':
        await run(
          process.execPath,
          [
            bin('yarn', 'bin', 'yarn.js'),
            'install',
            '--ignore-scripts',
            '--non-interactive',
            '--no-progress',
            '--registry',
            registry,
            '--cache-folder',
            join(scratch, 'cache'),
            '--modules-folder',
            join(scratch, 'node_modules'),
          ],
          dir,
          env,
        );
        break;
      case 'yarn-berry':
        writeFileSync(join(dir, 'yarn.lock'), '');
        await run(
          process.execPath,
          [bin('@yarnpkg', 'cli-dist', 'bin', 'yarn.js'), 'install', '--mode=update-lockfile'],
          dir,
          {
            ...env,
            YARN_NPM_REGISTRY_SERVER: registry.replace(/\/$/, ''),
            YARN_UNSAFE_HTTP_WHITELIST: '127.0.0.1',
            YARN_ENABLE_TELEMETRY: '0',
            // Yarn 4 quarantines versions published in the last days: the fixtures were just published.
            YARN_NPM_MINIMAL_AGE_GATE: '0',
            YARN_ENABLE_GLOBAL_CACHE: '0',
            YARN_ENABLE_IMMUTABLE_INSTALLS: '0',
            YARN_CACHE_FOLDER: join(scratch, 'berry-cache'),
            YARN_NODE_LINKER: 'node-modules',
            YARN_GLOBAL_FOLDER: join(scratch, 'berry'),
          },
        );
        rmSync(join(dir, '.yarn'), { recursive: true, force: true });
        rmSync(join(dir, 'node_modules'), { recursive: true, force: true });
        break;
      case 'bun':
        await run(
          bin('bun', 'bin', 'bun.exe'),
          ['install', '--lockfile-only', '--ignore-scripts', '--registry', registry],
          dir,
          { ...env, BUN_INSTALL_CACHE_DIR: join(scratch, 'bun-cache') },
        );
        break;
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}
