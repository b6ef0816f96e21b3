/**
 * Running the built CLI as a user would, for end-to-end tests, and asking Docker and the temp
 * folder what a finished run left behind.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CheckReport } from '../../src/core/report.js';
import { packageRoot } from '../../src/paths.js';
import { LABEL_OWNER } from '../../src/sandbox/sandbox.js';
import { engine } from './sandbox.js';

export const CLI = join(packageRoot(), 'dist', 'src', 'cli', 'main.js');
export const fixture = (name: string) => join(packageRoot(), 'fixtures', 'packages', name);

/** Past this the CLI is taken to hang: it gets Ctrl-C (its own cleanup), then SIGKILL. */
export const HANG_MS = 150_000;

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  pid: number;
  hung: boolean;
  /** Wall-clock bounds of the run, for the engine's event log (not asserted on). */
  startedAt: number;
  endedAt: number;
}

export function cli(
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
  opts: { cwd?: string } = {},
): Promise<CliResult> {
  return new Promise((resolve) => {
    const startedAt = Date.now();
    const child = spawn(process.execPath, [CLI, ...args], {
      env,
      ...(opts.cwd ? { cwd: opts.cwd } : {}),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let hung = false;
    const guard = setTimeout(() => {
      hung = true;
      child.kill('SIGINT');
      setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
    }, HANG_MS);
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => {
      clearTimeout(guard);
      resolve({
        code,
        stdout,
        stderr,
        pid: child.pid ?? 0,
        hung,
        startedAt,
        endedAt: Date.now(),
      });
    });
  });
}

/** The label value that names the CLI process owning a container. */
export const owner = (pid: number) => `${LABEL_OWNER}=${hostname()}:${pid}`;

/** Containers a CLI process has (or, once finished, left behind). */
export async function leftovers(pid: number): Promise<number> {
  const list = await engine().docker.listContainers({
    all: true,
    filters: { label: [owner(pid)] },
  });
  return list.length;
}

/** Staging directories a CLI process left in the temp folder. */
export function staging(pid: number): string[] {
  return readdirSync(tmpdir()).filter((n) => n.startsWith(`phonehome-stage-${pid}-`));
}

/**
 * `phonehome check <fixture> --json --no-cache` through the CLI: it ends, leaves no container, and
 * exits 0 or 1 with a report.
 */
export async function checkFixture(
  name: string,
): Promise<{ code: number | null; report: CheckReport }> {
  const r = await cli(['check', fixture(name), '--json', '--no-cache']);
  assert.equal(r.hung, false, `${name}: the CLI did not end`);
  assert.equal(await leftovers(r.pid), 0, `${name}: no container is left`);
  assert.ok(r.code === 0 || r.code === 1, `${name}: exit ${r.code}:\n${r.stderr}`);
  return { code: r.code, report: JSON.parse(r.stdout) as CheckReport };
}
