/**
 * A real npm registry (verdaccio) on loopback for end-to-end tests: started as a child process
 * with no uplinks (it never reaches another registry), fixtures published to it with the npm
 * CLI as a user would publish, stopped when the tests end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../src/paths.js';

export interface Verdaccio {
  url: string;
  /** An npmrc file with this registry and a token that may publish. */
  npmrc: string;
  publish(folder: string): Promise<void>;
  /** Write the package-lock.json of a project folder against this registry (no scripts run). */
  lock(dir: string): Promise<void>;
  close(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    c.on('close', (code) =>
      code === 0
        ? resolve(out)
        : reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}\n${out}`)),
    );
  });
}

export async function startVerdaccio(): Promise<Verdaccio> {
  const dir = await mkdtemp(join(tmpdir(), 'phonehome-verdaccio-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/`;
  const config = join(dir, 'config.yaml');
  await writeFile(
    config,
    [
      `storage: ${join(dir, 'storage')}`,
      'auth:',
      '  htpasswd:',
      `    file: ${join(dir, 'htpasswd')}`,
      '    max_users: 10',
      // No uplinks: nothing is fetched from any other registry.
      'uplinks: {}',
      'packages:',
      "  '@*/*':",
      '    access: $all',
      '    publish: $authenticated',
      "  '**':",
      '    access: $all',
      '    publish: $authenticated',
      'web:',
      '  enable: false',
      'log: { type: stdout, format: json, level: warn }',
      '',
    ].join('\n'),
  );
  const bin = join(packageRoot(), 'node_modules', 'verdaccio', 'bin', 'verdaccio');
  const child: ChildProcess = spawn(
    process.execPath,
    [bin, '--config', config, '--listen', `127.0.0.1:${port}`],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_ENV: 'production' } },
  );
  let log = '';
  child.stdout?.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (log += d.toString()));
  const close = async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`verdaccio exited: ${log}`);
      const ok = await fetch(`${url}-/ping`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) break;
      if (Date.now() > deadline) throw new Error(`verdaccio did not answer: ${log}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    // A user for publishing, as `npm adduser` would create it.
    const user = `publisher${port}`;
    const res = await fetch(`${url}-/user/org.couchdb.user:${user}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        name: user,
        password: `pw-${port}-${Date.now()}`,
        type: 'user',
        roles: [],
      }),
    });
    const token = ((await res.json()) as { token?: string }).token;
    if (!token) throw new Error(`verdaccio gave no token (${res.status})`);
    const npmrc = join(dir, 'npmrc');
    await writeFile(npmrc, `registry=${url}\n//127.0.0.1:${port}/:_authToken=${token}\n`);
    // As in a user's shell: without the npm_config_* variables `npm test` exports.
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !/^npm_config_/i.test(k)),
    );
    const publishEnv = { ...env, NPM_CONFIG_USERCONFIG: npmrc };
    return {
      url,
      npmrc,
      publish: async (folder) => {
        // Scripts are not run: publishing a fixture must not execute it on this machine.
        await run('npm', ['publish', folder, '--ignore-scripts', '--registry', url], publishEnv);
      },
      lock: async (project) => {
        await run(
          'npm',
          [
            'install',
            '--package-lock-only',
            '--ignore-scripts',
            '--registry',
            url,
            '--prefix',
            project,
          ],
          publishEnv,
        );
      },
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}
