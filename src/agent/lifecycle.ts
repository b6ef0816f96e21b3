/**
 * Install scripts as `npm install` runs them, run by the step driver itself: for each event, `sh
 * -c <script>` in the package's folder, with npm's variables (recorded from npm's own
 * configuration code when the image was built, see npm-env.ts), the package's `npm_package_*`
 * and the PATH npm's run-script builds (its own helpers, from the image's npm). One process per
 * script and nothing else: starting npm for each package (`npm rebuild <name>`) took about 300 ms
 * of start-up and a read of the whole tree, and showed the script `npm_command=rebuild` and
 * phonehome's flags.
 *
 * What the script runs comes from the host, which read it from the staged package.json: the root
 * driver parses no file a package can write.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

/** Stands for the user's home in the recorded variables. */
export const HOME_MARK = '/@home@';
/** Where the image build writes the recorded variables (AGENT_DIR in src/core/terms.ts). */
export const NPM_ENV_FILE = '/opt/agent/npm-env.json';

/**
 * What a GitHub-hosted runner sets that npm reads (its user agent names the CI and the kind of
 * runner): the CI identity's (src/sandbox/identity.ts), and the CI variant's when the image is
 * built.
 */
export const CI_RUNNER_ENV: Readonly<Record<string, string>> = {
  CI: 'true',
  GITHUB_ACTIONS: 'true',
  GITHUB_SERVER_URL: 'https://github.com',
  RUNNER_ENVIRONMENT: 'github-hosted',
};

export interface NpmEnvTemplate {
  /** npm's own folder, for the run-script helpers taken from it. */
  npmRoot: string;
  laptop: Record<string, string>;
  ci: Record<string, string>;
}

/** One install event of one package, as the host staged it. */
export interface ScriptRun {
  /** The package's folder in the sandbox. */
  path: string;
  event: string;
  command: string;
  /** The package's own `npm_package_*` variables (packageEnv), in npm's order. */
  env: Record<string, string>;
}

/** How deep and how large the package's own variables may get (npm's have no bound). */
const PACKAGE_ENV_DEPTH = 16;
const PACKAGE_ENV_BYTES = 64 * 1024;

/**
 * What npm puts in an install script's environment about the package: arborist's rebuild's view
 * of the node (resolved, integrity, optional, dev, peer), then run-script's `npm_package_*` of
 * the package.json's `name`, `version`, `config`, `engines` and `bin`, flattened as npm's
 * package-envs does it (objects by key, arrays by index, false and null as empty). Computed on
 * the host, bounded: a package.json nested thousands deep or megabytes wide gets what fits.
 */
export function packageEnv(
  pkg: { name: string; version: string; config?: unknown; engines?: unknown; bin?: unknown },
  tree: {
    resolved: string | null;
    integrity: string | null;
    optional: boolean;
    dev: boolean;
    peer: boolean;
    devOptional: boolean;
  },
  path: string,
): Record<string, string> {
  const flag = (b: boolean) => (b ? '1' : '');
  const env: Record<string, string> = {
    npm_package_resolved: String(tree.resolved),
    npm_package_integrity: String(tree.integrity),
    npm_package_json: `${path}/package.json`,
    npm_package_optional: flag(tree.optional),
    npm_package_dev: flag(tree.dev),
    npm_package_peer: flag(tree.peer),
    npm_package_dev_optional: flag(tree.devOptional && !tree.dev && !tree.optional),
  };
  let bytes = 0;
  const put = (key: string, val: string) => {
    bytes += key.length + val.length + 2;
    if (bytes <= PACKAGE_ENV_BYTES) env[key] = val;
  };
  const walk = (vals: Record<string, unknown>, prefix: string, depth: number) => {
    for (const [key, val] of Object.entries(vals)) {
      if (bytes > PACKAGE_ENV_BYTES) return;
      if (val === undefined) continue;
      else if (val === null || val === false) put(`${prefix}${key}`, '');
      else if (Array.isArray(val)) {
        if (depth < PACKAGE_ENV_DEPTH)
          val.forEach((item, i) => walk({ [`${key}_${i}`]: item }, prefix, depth + 1));
      } else if (typeof val === 'object') {
        if (depth < PACKAGE_ENV_DEPTH)
          walk(val as Record<string, unknown>, `${prefix}${key}_`, depth + 1);
      } else put(`${prefix}${key}`, String(val));
    }
  };
  walk(
    {
      name: pkg.name,
      version: pkg.version,
      config: pkg.config,
      engines: pkg.engines,
      bin: pkg.bin,
    },
    'npm_package_',
    0,
  );
  return env;
}

type Env = Record<string, string | undefined>;

interface Helpers {
  template: NpmEnvTemplate;
  setPATH: (path: string, binPaths: false, env: Env) => Env;
}

let helpers: Helpers | undefined;

function load(): Helpers {
  if (helpers) return helpers;
  const template = JSON.parse(readFileSync(NPM_ENV_FILE, 'utf8')) as NpmEnvTemplate;
  const req = createRequire(`${template.npmRoot}/node_modules/@npmcli/run-script/package.json`);
  helpers = { template, setPATH: req('./lib/set-path.js') as Helpers['setPATH'] };
  return helpers;
}

/** npm's defaults that come from the user's own variables (its config definitions). */
const FROM_ENV: Record<string, string[]> = {
  EDITOR: ['EDITOR', 'VISUAL'],
  npm_config_noproxy: ['NO_PROXY', 'no_proxy'],
};

/**
 * The environment of one install script: the step's own (the identity's) with what npm adds,
 * in the order npm's makeSpawnArgs builds it, and the PATH npm's run-script makes.
 */
export function scriptEnv(base: Env, run: ScriptRun): Env {
  const { template, setPATH } = load();
  const home = base.HOME ?? '/root';
  const npm = base.GITHUB_ACTIONS === 'true' ? template.ci : template.laptop;
  const env: Env = { ...base };
  for (const [k, v] of Object.entries(npm)) {
    const own = FROM_ENV[k]?.map((name) => base[name]).find((x) => x);
    env[k] = own ?? v.split(HOME_MARK).join(home);
  }
  Object.assign(env, run.env, {
    npm_package_json: `${run.path}/package.json`,
    npm_lifecycle_event: run.event,
    npm_lifecycle_script: run.command,
  });
  return setPATH(run.path, false, env);
}
