/**
 * What a package's code could do, read from its files on the host without running anything. This
 * is an inferred, weak declaration: a pattern in a file proves nothing about behaviour, but a
 * package with none of them that still reaches the network has hidden how it does so.
 */
import { open, readdir } from 'node:fs/promises';
import { extname, join, resolve, sep } from 'node:path';
import type { Capability } from '../core/terms.js';

const CODE_EXTENSIONS = new Set(['.js', '.cjs', '.mjs', '.jsx']);
/** Bounds, so a hostile package with a million files or a 2 GB file cannot stall the host. */
const MAX_FILES = 5000;
const MAX_FILE_BYTES = 4 * 1024 * 1024;
const MAX_TOTAL_BYTES = 128 * 1024 * 1024;

const NET_MODULES = '(?:node:)?(?:http|https|http2|net|tls|dgram|dns|dns/promises|undici)';
const PATTERNS: [Capability, RegExp][] = [
  [
    'network',
    new RegExp(
      [
        `require\\(\\s*['"\`]${NET_MODULES}['"\`]\\s*\\)`,
        `\\bfrom\\s*['"]${NET_MODULES}['"]`,
        `import\\(\\s*['"\`]${NET_MODULES}['"\`]\\s*\\)`,
        `\\bfetch\\s*\\(`,
        `\\bXMLHttpRequest\\b`,
        `\\bWebSocket\\b`,
        `process\\.binding\\(\\s*['"](?:tcp_wrap|udp_wrap|cares_wrap|tls_wrap)`,
      ].join('|'),
    ),
  ],
  ['child-process', /['"`](?:node:)?child_process['"`]/],
  [
    'dynamic-code',
    /\beval\s*\(|\bnew\s+Function\s*\(|\bFunction\s*\(\s*['"`]|['"`](?:node:)?vm['"`]/,
  ],
  // require() of something that is not a literal: the module name is computed at run time.
  ['dynamic-require', /\brequire\s*\(\s*(?!['"`)\s])|\bimport\s*\(\s*(?!['"`)\s])/],
];

/**
 * Code that can tell a CI runner from a laptop: the variables CI services set, a whole-environment
 * read (a dump, or a lookup by computed name), or a CI-detection package. When install-time code
 * shows one, the install phase also runs under the other identity (src/check/check.ts).
 */
const CI_VARIABLES =
  'CI|CONTINUOUS_INTEGRATION|BUILD_NUMBER|RUN_ID|GITHUB_[A-Z_]+|GITLAB_[A-Z_]+|RUNNER_[A-Z_]+|' +
  'BUILDKITE[A-Z_]*|CIRCLECI|CIRCLE_[A-Z_]+|TRAVIS[A-Z_]*|JENKINS_[A-Z_]+|BUILD_ID|TEAMCITY_[A-Z_]+|' +
  'TF_BUILD|SYSTEM_TEAMFOUNDATIONCOLLECTIONURI|BITBUCKET_[A-Z_]+|CODEBUILD_[A-Z_]+|DRONE[A-Z_]*|' +
  'APPVEYOR[A-Z_]*|NETLIFY|VERCEL[A-Z_]*|SEMAPHORE|CF_PAGES|HEROKU_TEST_RUN_ID';
const READS_IDENTITY = new RegExp(
  [
    `\\b(?:${CI_VARIABLES}|ImageOS|ImageVersion)\\b`,
    // The environment other than by a literal name: enumerated, aliased, indexed by a computed
    // name, read from /proc.
    `process\\.env\\b(?!\\s*(?:\\.\\s*[A-Za-z_$][\\w$]*|\\[\\s*['"\`][A-Za-z_]+['"\`]\\s*\\]))`,
    `/proc/(?:self|\\d+|\\$\\{?[\\w.]+\\}?)/environ`,
    `\\b(?:printenv|os\\.environ|ENV\\[)`,
    // Who and where: the user, the host name.
    `\\.\\s*userInfo\\s*\\(|\\.\\s*hostname\\s*\\(\\s*\\)|\\$\\(\\s*(?:whoami|hostname|id)\\b|\\$(?:USER|HOSTNAME)\\b`,
    // What a developer's home has and a runner's does not.
    `['"\`/](?:Desktop|Documents|Downloads|\\.bash_history|\\.zsh_history)\\b`,
    `^\\s*(?:env|set|export -p)\\s*(?:[|>;&]|$)`,
    `['"\`](?:is-ci|ci-info|env-ci|@actions/core|@actions/github)['"\`]`,
  ].join('|'),
  'm',
);
/**
 * Code that reaches for the secrets a machine keeps: credential files, the variables that hold
 * tokens and keys, a dump of the whole environment, wallets. Its traffic over TLS (unread) gets no
 * own-vendor excuse (src/policy/vendor.ts): what it sent cannot be checked for planted secrets.
 */
const READS_SECRETS = new RegExp(
  [
    `\\.npmrc\\b|_authToken\\b|\\.yarnrc|\\.git-credentials|\\.netrc\\b|\\.pgpass\\b`,
    `['"\`/]\\.ssh\\b|\\bid_(?:rsa|ed25519|ecdsa|dsa)\\b|\\.aws/credentials|\\.docker/config\\.json`,
    `\\.kube/config|\\.config/(?:gh|gcloud|hub)\\b|\\.azure/`,
    `\\b(?:NPM_TOKEN|NODE_AUTH_TOKEN|GITHUB_TOKEN|GH_TOKEN|GITLAB_TOKEN|AWS_SECRET_ACCESS_KEY|AWS_SESSION_TOKEN)\\b`,
    `JSON\\.stringify\\(\\s*process\\.env\\s*[,)]|Object\\.(?:entries|values)\\(\\s*process\\.env\\s*\\)`,
    `wallet\\.dat|\\.ethereum/|\\.electrum|\\.bitcoin/|Local Storage/leveldb|Login Data`,
  ].join('|'),
);
/** Files read for READS_IDENTITY besides JavaScript: the shell and python an install script runs. */
const SCRIPT_EXTENSIONS = new Set(['.sh', '.bash', '.py']);

/** `require('./x.dat')`: a local file by a literal path. */
const LOCAL_REQUIRE = /\brequire\s*\(\s*['"`](\.\.?\/[^'"`]+)['"`]\s*\)/g;
/** Extensions require() does not run as JavaScript (or that carry no code). */
const NOT_CODE = new Set(['.json', '.node', '.ts', '.cts', '.mts']);

/** Install-script commands that are not `node <file>` run a shell with whatever it finds. */
const NODE_FILE_SCRIPT = /^node\s+[\w./@-]+(\s+[\w./=@-]+)*$/;

export async function scanCapabilities(
  folder: string,
  scripts: Record<string, string>,
): Promise<Capability[]> {
  const found = new Set<Capability>();
  for (const cmd of Object.values(scripts)) {
    if (!NODE_FILE_SCRIPT.test(cmd.trim())) found.add('shell-script');
    if (READS_IDENTITY.test(cmd) || /\$\{?(?:CI|GITHUB_|GITLAB_|RUNNER_)/.test(cmd))
      found.add('reads-identity');
    if (READS_SECRETS.test(cmd)) found.add('reads-secrets');
  }
  let files = 0;
  let total = 0;
  const requiredElsewhere = new Set<string>();
  const walk = async (dir: string, depth: number): Promise<void> => {
    if (depth > 20) return;
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const ent of entries) {
      if (found.has('not-scanned')) return;
      const path = join(dir, ent.name);
      // Nested packages are scanned as packages of their own.
      if (ent.isDirectory()) {
        if (ent.name !== 'node_modules') await walk(path, depth + 1);
        continue;
      }
      if (!ent.isFile()) continue;
      const ext = extname(ent.name);
      if (ext === '.node' || ent.name === 'binding.gyp') found.add('native-code');
      const script = SCRIPT_EXTENSIONS.has(ext);
      if (!CODE_EXTENSIONS.has(ext) && !script) continue;
      if (++files > MAX_FILES || total > MAX_TOTAL_BYTES) {
        found.add('not-scanned');
        return;
      }
      const text = await readHead(path);
      total += text.length;
      // require() loads a file of any other extension as JavaScript: those are read as code too.
      if (!script)
        for (const m of text.matchAll(LOCAL_REQUIRE)) {
          const target = resolve(dir, m[1] as string);
          if (!CODE_EXTENSIONS.has(extname(target)) && !NOT_CODE.has(extname(target)))
            requiredElsewhere.add(target);
        }
      if (!found.has('reads-identity') && READS_IDENTITY.test(text)) found.add('reads-identity');
      if (!found.has('reads-secrets') && READS_SECRETS.test(text)) found.add('reads-secrets');
      if (script) continue;
      for (const [cap, re] of PATTERNS) if (!found.has(cap) && re.test(text)) found.add(cap);
      if (looksMinified(text)) found.add('minified');
      if (looksObfuscated(text)) found.add('obfuscated');
    }
  };
  await walk(folder, 0);
  // The files install scripts run, whatever their extension (`node lib/setup.dat` runs as JS),
  // and the files the code requires by a path with another extension.
  const runs = Object.values(scripts).flatMap((cmd) =>
    cmd
      .split(/\s+/)
      .filter(
        (word) =>
          /^[\w./@-]+$/.test(word) && !word.startsWith('-') && !CODE_EXTENSIONS.has(extname(word)),
      )
      .map((word) => resolve(folder, word)),
  );
  for (const path of [...runs, ...requiredElsewhere].slice(0, MAX_FILES)) {
    if (!path.startsWith(`${resolve(folder)}${sep}`)) continue;
    let text: string;
    try {
      text = await readHead(path);
    } catch {
      continue;
    }
    if (READS_IDENTITY.test(text)) found.add('reads-identity');
    if (READS_SECRETS.test(text)) found.add('reads-secrets');
    for (const [cap, re] of PATTERNS) if (re.test(text)) found.add(cap);
    if (looksMinified(text)) found.add('minified');
    if (looksObfuscated(text)) found.add('obfuscated');
  }
  return [...found].sort();
}

async function readHead(path: string): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const size = Math.min((await fh.stat()).size, MAX_FILE_BYTES);
    const buf = Buffer.alloc(size);
    const { bytesRead } = await fh.read(buf, 0, size, 0);
    return buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await fh.close();
  }
}

function looksMinified(text: string): boolean {
  if (text.length < 20_000) return false;
  const lines = text.split('\n').length;
  return text.length / lines > 500;
}

/** Identifier mangling of the common obfuscators, or code written mostly as escapes. */
function looksObfuscated(text: string): boolean {
  const mangled = text.match(/\b_0x[0-9a-f]{4,6}\b/g)?.length ?? 0;
  if (mangled >= 20) return true;
  // Escaped ASCII ('\x68\x74…', '\u0068'): strings hidden from a reader. Escapes beyond ASCII are
  // what Unicode tables (emoji-regex, punycode) are made of.
  const escapes = text.match(/\\x[0-7][0-9a-f]|\\u00[0-7][0-9a-f]/gi)?.length ?? 0;
  return escapes >= 200 && (escapes * 4) / text.length > 0.2;
}
