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
  /** `name`, `version`, `config`, `engines`, `bin` of its package.json (npm_package_*). */
  pkg: Record<string, unknown>;
  /** Its place in the tree, as arborist's rebuild puts it in the environment. */
  tree: {
    resolved: string | null;
    integrity: string | null;
    optional: boolean;
    dev: boolean;
    peer: boolean;
    devOptional: boolean;
  };
}

type Env = Record<string, string | undefined>;

interface Helpers {
  template: NpmEnvTemplate;
  packageEnvs: (pkg: Record<string, unknown>) => Record<string, string>;
  setPATH: (path: string, binPaths: false, env: Env) => Env;
}

let helpers: Helpers | undefined;

function load(): Helpers {
  if (helpers) return helpers;
  const template = JSON.parse(readFileSync(NPM_ENV_FILE, 'utf8')) as NpmEnvTemplate;
  const req = createRequire(`${template.npmRoot}/node_modules/@npmcli/run-script/package.json`);
  helpers = {
    template,
    packageEnvs: req('./lib/package-envs.js') as Helpers['packageEnvs'],
    setPATH: req('./lib/set-path.js') as Helpers['setPATH'],
  };
  return helpers;
}

const boolEnv = (b: boolean) => (b ? '1' : '');

/** npm's defaults that come from the user's own variables (its config definitions). */
const FROM_ENV: Record<string, string[]> = {
  EDITOR: ['EDITOR', 'VISUAL'],
  npm_config_noproxy: ['NO_PROXY', 'no_proxy'],
};

/**
 * The environment of one install script: the step's own (the identity's) with what npm adds,
 * in the order npm's makeSpawnArgs builds it.
 */
export function scriptEnv(base: Env, run: ScriptRun): Env {
  const { template, packageEnvs, setPATH } = load();
  const home = base.HOME ?? '/root';
  const npm = base.GITHUB_ACTIONS === 'true' ? template.ci : template.laptop;
  const env: Env = { ...base };
  for (const [k, v] of Object.entries(npm)) {
    const own = FROM_ENV[k]?.map((name) => base[name]).find((x) => x);
    env[k] = own ?? v.split(HOME_MARK).join(home);
  }
  const t = run.tree;
  Object.assign(env, {
    npm_package_resolved: String(t.resolved),
    npm_package_integrity: String(t.integrity),
    npm_package_json: `${run.path}/package.json`,
    npm_package_optional: boolEnv(t.optional),
    npm_package_dev: boolEnv(t.dev),
    npm_package_peer: boolEnv(t.peer),
    npm_package_dev_optional: boolEnv(t.devOptional && !t.dev && !t.optional),
    ...packageEnvs(run.pkg),
  });
  Object.assign(env, {
    npm_package_json: `${run.path}/package.json`,
    npm_lifecycle_event: run.event,
    npm_lifecycle_script: run.command,
    npm_config_node_gyp: env.npm_config_node_gyp,
  });
  return setPATH(run.path, false, env);
}
