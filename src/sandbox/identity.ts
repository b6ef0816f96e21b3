/**
 * What the sandbox looks like from inside: a developer's laptop (default) or a CI runner, chosen
 * afresh for every run — host and user name, a home folder with the usual folders and dotfiles, a
 * git config, a shell history — and bait secrets in the places malware reads them (npm, GitHub and
 * AWS credentials, an SSH key, a project .env). Every bait value is unique to the run and has the
 * form of the real thing (never a textbook example), so a value seen in captured traffic can only
 * have come from the sandbox: that is a leak.
 */
import { generateKeyPairSync, randomBytes, randomInt } from 'node:crypto';
import { Readable } from 'node:stream';
import { Header, Pax, type HeaderData } from 'tar';
import type { Bait } from '../core/bait.js';

import type { IdentityProfile } from '../core/terms.js';
import { CI_RUNNER_ENV } from '../agent/lifecycle.js';

/**
 * The user's runtime folder as a desktop login makes it (XDG_RUNTIME_DIR): under the laptop
 * identity a tmpfs of the user's own in the sandbox (src/sandbox/topology.ts).
 */
export const RUNTIME_DIR = '/run/user/1000';
export type { IdentityProfile };

export interface IdentityFile {
  /** Absolute path in the sandbox. */
  path: string;
  content: string;
  mode: number;
}

export interface SandboxIdentity {
  profile: IdentityProfile;
  user: string;
  fullName: string;
  home: string;
  hostname: string;
  /** Environment of every process in the sandbox. */
  env: Record<string, string>;
  /** Files of the home folder (created as the sandbox user). */
  homeFiles: IdentityFile[];
  /** Folders of the home folder, relative to it. */
  homeDirs: string[];
  /** Files of the project folder (a .env). */
  projectFiles: IdentityFile[];
  bait: Bait[];
}

const PEOPLE: [string, string][] = [
  ['alex', 'Alex Moreau'],
  ['sam', 'Samira Haddad'],
  ['jordan', 'Jordan Ellis'],
  ['maria', 'Maria Lopez'],
  ['chen', 'Chen Wei'],
  ['priya', 'Priya Raman'],
  ['lukas', 'Lukas Becker'],
  ['emma', 'Emma Johansson'],
  ['diego', 'Diego Alvarez'],
  ['noah', 'Noah Fischer'],
  ['yuki', 'Yuki Tanaka'],
  ['olivia', 'Olivia Brennan'],
  ['tomas', 'Tomas Novak'],
  ['amara', 'Amara Okafor'],
];
const MACHINES = ['laptop', 'thinkpad', 'mbp', 'desktop', 'xps', 'workstation', 'dev', 'framework'];
const COMPANIES = [
  'northwind-labs.io',
  'brightpath.dev',
  'kestrelpay.com',
  'oakridge-analytics.com',
  'fernhill.tech',
  'lumenstack.io',
  'quarry-systems.com',
  'tidewater.app',
];
const REPOS = ['web-app', 'storefront', 'billing-api', 'dashboard', 'mobile-bff', 'admin-portal'];

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const B64 = `${ALNUM}+/`;

function pick<T>(list: readonly T[]): T {
  return list[randomInt(list.length)] as T;
}

/** What scanners and careful code take for a placeholder rather than a live secret. */
export const PLACEHOLDER = /EXAMPLE|xxxx|1234567890/i;

/** `n` random characters of `alphabet`, drawn again should they read as a placeholder. */
function chars(alphabet: string, n: number): string {
  for (;;) {
    let s = '';
    for (let i = 0; i < n; i++) s += alphabet[randomInt(alphabet.length)];
    if (!PLACEHOLDER.test(s)) return s;
  }
}

function sshString(b: Buffer | string): Buffer {
  const data = Buffer.isBuffer(b) ? b : Buffer.from(b);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  return Buffer.concat([len, data]);
}

/** A fresh ed25519 key in OpenSSH's own private key format, as `ssh-keygen -t ed25519` writes. */
function sshKey(comment: string): { privateKey: string; publicKey: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const pub = Buffer.from(publicKey.export({ format: 'jwk' }).x as string, 'base64url');
  const priv = Buffer.from(privateKey.export({ format: 'jwk' }).d as string, 'base64url');
  const pubBlob = Buffer.concat([sshString('ssh-ed25519'), sshString(pub)]);
  const check = randomBytes(4);
  let section = Buffer.concat([
    check,
    check,
    sshString('ssh-ed25519'),
    sshString(pub),
    sshString(Buffer.concat([priv, pub])),
    sshString(comment),
  ]);
  const pad: number[] = [];
  for (let i = 1; (section.length + pad.length) % 8 !== 0; i++) pad.push(i);
  section = Buffer.concat([section, Buffer.from(pad)]);
  const body = Buffer.concat([
    Buffer.from('openssh-key-v1\0'),
    sshString('none'),
    sshString('none'),
    sshString(''),
    Buffer.from([0, 0, 0, 1]),
    sshString(pubBlob),
    sshString(section),
  ]).toString('base64');
  const lines = body.match(/.{1,70}/g) ?? [];
  return {
    privateKey: `-----BEGIN OPENSSH PRIVATE KEY-----\n${lines.join('\n')}\n-----END OPENSSH PRIVATE KEY-----\n`,
    publicKey: `ssh-ed25519 ${pubBlob.toString('base64')} ${comment}\n`,
  };
}

const HISTORY = (repo: string) => [
  'git status',
  `cd ~/code/${repo}`,
  'git pull --rebase',
  'npm install',
  'npm run dev',
  'git checkout -b fix/session-timeout',
  'npm test',
  'code .',
  'git add -p',
  'git commit -m "fix: refresh the session before it expires"',
  'git push -u origin HEAD',
  'npm outdated',
  'ls -la',
  'cat package.json | jq .scripts',
  'ssh deploy@staging',
  'aws s3 ls',
  'npm run build',
  'gh pr create --fill',
];

export function makeIdentity(profile: IdentityProfile = 'laptop'): SandboxIdentity {
  const [user0, fullName] = profile === 'ci' ? ['runner', 'GitHub Actions'] : pick(PEOPLE);
  const user = user0;
  const home = `/home/${user}`;
  const company = pick(COMPANIES);
  const repo = pick(REPOS);
  const org = company.split(/[.-]/)[0] as string;
  const email = `${fullName.toLowerCase().split(' ').join('.')}@${company}`;
  const hostname =
    profile === 'ci'
      ? `fv-az${randomInt(100, 999)}-${randomInt(100, 999)}`
      : `${user}-${pick(MACHINES)}`;

  const npmToken = `npm_${chars(ALNUM, 36)}`;
  const ghToken = profile === 'ci' ? `ghs_${chars(ALNUM, 36)}` : `ghp_${chars(ALNUM, 36)}`;
  const awsKey = `AKIA${chars(B32, 16)}`;
  const awsSecret = chars(B64, 40);
  const dbPassword = chars(ALNUM, 20);
  const stripeKey = `sk_live_${chars(ALNUM, 32)}`;
  // The key is long: a slice of one line of its body (the public key bytes, random) identifies
  // it wherever it is sent, whole or in part. A key whose slice reads as a placeholder is drawn
  // again, as the other secrets are.
  let ssh = sshKey(`${email}`);
  while (PLACEHOLDER.test(ssh.privateKey.split('\n')[2]?.slice(0, 60) ?? '')) ssh = sshKey(email);
  const sshLine = ssh.privateKey.split('\n')[2] ?? '';

  const bait: Bait[] = [
    {
      id: 'npm-token',
      label: 'npm access token',
      where: ['~/.npmrc', 'NPM_TOKEN'],
      value: npmToken,
    },
    {
      id: 'github-token',
      label: 'GitHub token',
      where: profile === 'ci' ? ['GITHUB_TOKEN'] : ['~/.config/gh/hosts.yml', 'GITHUB_TOKEN'],
      value: ghToken,
    },
    {
      id: 'aws-access-key-id',
      label: 'AWS access key id',
      where: ['~/.aws/credentials', 'AWS_ACCESS_KEY_ID'],
      value: awsKey,
    },
    {
      id: 'aws-secret-access-key',
      label: 'AWS secret access key',
      where: ['~/.aws/credentials', 'AWS_SECRET_ACCESS_KEY'],
      value: awsSecret,
    },
    {
      id: 'ssh-private-key',
      label: 'SSH private key',
      where: ['~/.ssh/id_ed25519'],
      value: sshLine.slice(0, 60),
    },
    { id: 'database-password', label: 'database password', where: ['.env'], value: dbPassword },
    { id: 'stripe-secret-key', label: 'Stripe secret key', where: ['.env'], value: stripeKey },
  ];

  const path =
    profile === 'ci'
      ? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
      : `${home}/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`;
  const env: Record<string, string> = {
    HOME: home,
    USER: user,
    LOGNAME: user,
    SHELL: '/bin/bash',
    LANG: 'en_US.UTF-8',
    PATH: path,
    NPM_TOKEN: npmToken,
    GITHUB_TOKEN: ghToken,
    AWS_ACCESS_KEY_ID: awsKey,
    AWS_SECRET_ACCESS_KEY: awsSecret,
    AWS_DEFAULT_REGION: pick(['us-east-1', 'eu-west-1', 'eu-central-1', 'us-west-2']),
  };
  if (profile === 'ci') {
    const runId = String(randomInt(1_000_000_000, 9_999_999_999));
    Object.assign(env, {
      ...CI_RUNNER_ENV,
      GITHUB_WORKFLOW: 'CI',
      GITHUB_REPOSITORY: `${org}/${repo}`,
      GITHUB_REF: 'refs/heads/main',
      GITHUB_SHA: randomBytes(20).toString('hex'),
      GITHUB_RUN_ID: runId,
      GITHUB_ACTOR: pick(PEOPLE)[0],
      GITHUB_API_URL: 'https://api.github.com',
      RUNNER_OS: 'Linux',
      RUNNER_ARCH: 'X64',
      RUNNER_NAME: `GitHub Actions ${randomInt(1, 40)}`,
      RUNNER_TEMP: `${home}/work/_temp`,
      RUNNER_TOOL_CACHE: '/opt/hostedtoolcache',
      RUNNER_WORKSPACE: `${home}/work/${repo}`,
      GITHUB_WORKSPACE: `${home}/work/${repo}/${repo}`,
      GITHUB_EVENT_NAME: 'push',
      GITHUB_EVENT_PATH: `${home}/work/_temp/_github_workflow/event.json`,
      GITHUB_ENV: `${home}/work/_temp/_runner_file_commands/set_env_${randomBytes(16).toString('hex')}`,
      GITHUB_OUTPUT: `${home}/work/_temp/_runner_file_commands/set_output_${randomBytes(16).toString('hex')}`,
      GITHUB_PATH: `${home}/work/_temp/_runner_file_commands/add_path_${randomBytes(16).toString('hex')}`,
      GITHUB_REF_NAME: 'main',
      GITHUB_RUN_NUMBER: String(randomInt(1, 2000)),
      GITHUB_JOB: 'build',
      ImageOS: 'ubuntu24',
      ImageVersion: `20261${randomInt(100, 130)}.${randomInt(1, 60)}.1`,
    });
  } else {
    Object.assign(env, {
      TERM: 'xterm-256color',
      COLORTERM: 'truecolor',
      EDITOR: 'vim',
      XDG_RUNTIME_DIR: RUNTIME_DIR,
      SSH_AUTH_SOCK: `${RUNTIME_DIR}/keyring/ssh`,
    });
  }

  const f = (rel: string, content: string, mode = 0o644): IdentityFile => ({
    path: `${home}/${rel}`,
    content,
    mode,
  });
  const [first, ...rest] = fullName.split(' ');
  const homeFiles: IdentityFile[] = [
    f('.npmrc', `//registry.npmjs.org/:_authToken=${npmToken}\n`, 0o600),
    f(
      '.aws/credentials',
      `[default]\naws_access_key_id = ${awsKey}\naws_secret_access_key = ${awsSecret}\n`,
      0o600,
    ),
    f('.aws/config', `[default]\nregion = ${env.AWS_DEFAULT_REGION}\noutput = json\n`),
    f('.ssh/id_ed25519', ssh.privateKey, 0o600),
    f('.ssh/id_ed25519.pub', ssh.publicKey),
    f(
      '.ssh/known_hosts',
      'github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n',
    ),
    f(
      '.gitconfig',
      `[user]\n\tname = ${fullName}\n\temail = ${email}\n[init]\n\tdefaultBranch = main\n[pull]\n\trebase = true\n`,
    ),
    f(
      '.bashrc',
      `export PATH="$HOME/.local/bin:$PATH"\nalias ll='ls -alF'\nalias gs='git status'\n`,
    ),
    f('.profile', `[ -f ~/.bashrc ] && . ~/.bashrc\n`),
  ];
  if (profile === 'ci') {
    // What a runner's workspace holds: the event that started the workflow, the files of the
    // runner's commands.
    const event = {
      ref: 'refs/heads/main',
      repository: { full_name: `${org}/${repo}`, name: repo },
      after: env.GITHUB_SHA,
    };
    homeFiles.push(
      f('work/_temp/_github_workflow/event.json', `${JSON.stringify(event, null, 2)}\n`),
      ...['GITHUB_ENV', 'GITHUB_OUTPUT', 'GITHUB_PATH'].map((k) =>
        f((env[k] as string).slice(home.length + 1), ''),
      ),
    );
  }
  if (profile === 'laptop')
    homeFiles.push(f('.bash_history', HISTORY(repo).join('\n') + '\n', 0o600));
  if (profile === 'laptop')
    homeFiles.push(
      f(
        '.config/gh/hosts.yml',
        `github.com:\n    user: ${first?.toLowerCase()}${rest.join('').toLowerCase().slice(0, 3)}\n    oauth_token: ${ghToken}\n    git_protocol: ssh\n`,
        0o600,
      ),
    );
  const homeDirs =
    profile === 'ci'
      ? ['work', `work/${repo}/${repo}`, '.cache', '.config']
      : [
          'Desktop',
          'Documents',
          'Downloads',
          'Music',
          'Pictures',
          'Videos',
          `code/${repo}`,
          '.cache',
          '.config',
          '.local/bin',
          '.local/share',
        ];
  const projectFiles: IdentityFile[] = [
    {
      path: '.env',
      content: `NODE_ENV=development\nDATABASE_URL=postgres://${repo.replace(/-/g, '_')}:${dbPassword}@db.internal:5432/${repo.replace(/-/g, '_')}\nSTRIPE_SECRET_KEY=${stripeKey}\nSESSION_TTL=3600\n`,
      mode: 0o600,
    },
  ];
  return { profile, user, fullName, home, hostname, env, homeFiles, homeDirs, projectFiles, bait };
}

const BLOCK = 512;

/**
 * A tar stream of files (paths relative to where it is unpacked) and folders (mode 0755), owned by
 * uid 0. Written block by block with node-tar's header encoder: node-tar's Pack archives files
 * from disk, and these exist only in memory (writing them out to pack them back would put the
 * run's bait secrets in a temp folder of the host for nothing).
 */
export function filesTar(
  files: IdentityFile[],
  dirs: string[] = [],
  opts: { aged?: boolean } = {},
): Readable {
  return Readable.from([filesTarBytes(files, dirs, opts)]);
}

/** filesTar's archive, as bytes. */
export function filesTarBytes(
  files: IdentityFile[],
  dirs: string[] = [],
  opts: { aged?: boolean } = {},
): Buffer {
  const blocks: Buffer[] = [];
  const now = Date.now();
  const DAY = 86_400_000;
  // A lived-in home's files were written over the past months, not a moment before the run.
  const mtimeOf = () =>
    new Date(opts.aged ? now - randomInt(2, 400) * DAY - randomInt(0, DAY) : now);
  const entry = (path: string, type: 'File' | 'Directory', mode: number, body: Buffer): void => {
    const mtime = mtimeOf();
    const fields: HeaderData = { path, type, mode, size: body.length, mtime, uid: 0, gid: 0 };
    const header = Buffer.alloc(BLOCK);
    // A path too long (or not ASCII) for the ustar fields goes in a pax header before it.
    if (new Header(fields).encode(header)) blocks.push(new Pax(fields).encode());
    blocks.push(header, body, Buffer.alloc((BLOCK - (body.length % BLOCK)) % BLOCK));
  };
  for (const dir of dirs) entry(dir, 'Directory', 0o755, Buffer.alloc(0));
  for (const f of files) entry(f.path.replace(/^\//, ''), 'File', f.mode, Buffer.from(f.content));
  // The end of the archive: two empty blocks.
  blocks.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(blocks);
}
