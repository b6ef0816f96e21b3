/**
 * Run once when the runner image is built (see its Dockerfile): writes, as JSON, the variables
 * the image's npm gives an install script when a user runs `npm install` in the project folder,
 * from npm's own configuration code (`@npmcli/config` with npm's definitions, exactly as npm's
 * start-up uses them). The step driver (lifecycle.ts) runs install scripts itself with these
 * variables, instead of starting npm for every package (npm's start-up and its read of the whole
 * tree took about 300 ms per package with scripts), so scripts see what they would see under
 * `npm install`, not `npm rebuild` with phonehome's flags.
 *
 * The user's home is a placeholder (HOME_MARK) that the driver replaces with the run's home. Two
 * variants: a machine, and a GitHub Actions runner (npm's user agent names the CI it detects).
 * Nothing here is read at run time: no file a package could write is parsed by the root driver.
 */
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { CI_RUNNER_ENV, HOME_MARK, type NpmEnvTemplate } from './lifecycle.js';

interface NpmConfig {
  load(): Promise<void>;
  readonly flat: unknown;
}

async function variant(npmRoot: string): Promise<Record<string, string>> {
  const req = createRequire(`${npmRoot}/package.json`);
  const Config = req('@npmcli/config') as new (o: object) => NpmConfig;
  const defs = req('@npmcli/config/lib/definitions') as Record<string, unknown>;
  const npmVersion = (req('./package.json') as { version: string }).version;
  const before = { ...process.env };
  const env = { ...process.env };
  // As npm's lib/npm.js builds it for `npm install`.
  const config = new Config({
    npmPath: npmRoot,
    definitions: defs.definitions,
    flatten: defs.flatten,
    nerfDarts: defs.nerfDarts,
    shorthands: defs.shorthands,
    argv: [process.execPath, `${npmRoot}/bin/npm-cli.js`, 'install'],
    env,
    execPath: process.execPath,
    cwd: process.cwd(),
    excludeNpmCwd: true,
    npmVersion,
  });
  await config.load();
  // Flattening sets the user agent in the process's own environment.
  void config.flat;
  const out: Record<string, string> = {};
  for (const src of [env, process.env])
    for (const [k, v] of Object.entries(src))
      if (v !== undefined && before[k] !== v && k !== 'PWD' && k !== 'OLDPWD') out[k] = v;
  // lib/npm.js, in its order: colour off (scripts' output is piped, not a terminal), then the
  // command.
  out.COLOR = '0';
  out.npm_command = 'install';
  return out;
}

async function main(): Promise<void> {
  // Where node's own installer puts npm: <prefix>/lib/node_modules/npm, next to <prefix>/bin/node.
  const npmRoot = `${dirname(dirname(process.execPath))}/lib/node_modules/npm`;
  if (process.argv[2] === 'variant') {
    process.stdout.write(JSON.stringify(await variant(npmRoot)));
    return;
  }
  // ci-info reads the environment when it loads: each variant in a process of its own.
  const base: Record<string, string | undefined> = { ...process.env, HOME: HOME_MARK };
  for (const k of ['CI', 'GITHUB_ACTIONS', 'CONTINUOUS_INTEGRATION', 'BUILD_NUMBER'])
    delete base[k];
  const run = (extra: Record<string, string>) => {
    const r = spawnSync(process.execPath, [process.argv[1] as string, 'variant'], {
      env: { ...base, ...extra },
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`npm-env variant failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as Record<string, string>;
  };
  const out: NpmEnvTemplate = {
    npmRoot,
    laptop: run({}),
    ci: run(CI_RUNNER_ENV),
  };
  process.stdout.write(JSON.stringify(out, null, 1) + '\n');
}

await main();
