/**
 * The one catalogue of phonehome's own failures (what breaks the tool, not what the package does).
 * Each code maps to a summary, a fix and an exit code; every thrown PhonehomeError carries a code
 * from here, so the CLI can print the fix and exit with the right status.
 */

export const ExitCode = {
  pass: 0,
  findings: 1,
  usage: 2,
  environment: 3,
  internal: 4,
  interrupted: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

interface CatalogueEntry {
  summary: string;
  fix: string;
  exit: ExitCode;
}

export const errorCatalogue = {
  EDOCKER_UNREACHABLE: {
    summary: 'The Docker daemon does not answer.',
    fix: 'Start Docker (as root: `dockerd &`, or `systemctl start docker`), or point DOCKER_HOST at a running engine. On Debian without an engine: `apt-get install -y docker.io`. `phonehome doctor` checks again.',
    exit: ExitCode.environment,
  },
  EDOCKER_PERMISSION: {
    summary: 'The Docker socket refused this user.',
    fix: 'Run phonehome as root or as a member of the `docker` group, or set DOCKER_HOST to an engine you may use.',
    exit: ExitCode.environment,
  },
  EDOCKER_API: {
    summary: 'The Docker engine answered with an error.',
    fix: 'Read the engine message above; `phonehome doctor` checks the engine, images and gateway rules.',
    exit: ExitCode.environment,
  },
  EENGINE: {
    summary: 'An --engine value does not name a Docker engine phonehome can reach safely.',
    fix: 'Write it as unix:///path/docker.sock, tcp://host:2376?tls=/folder (ca.pem, cert.pem, key.pem), ssh://user@host, or default.',
    exit: ExitCode.usage,
  },
  EIMAGE_MISSING: {
    summary: 'A sandbox image is not built.',
    fix: 'Run `phonehome images build`.',
    exit: ExitCode.environment,
  },
  EIMAGE_BUILD: {
    summary: 'Building a sandbox image failed; no image was tagged.',
    fix: 'Read the step output above. Check that Debian packages and the npm registry are reachable and that the disk has a few GB free, then run `phonehome images build` again.',
    exit: ExitCode.environment,
  },
  EIMAGE_PREREQ: {
    summary: 'A tool the offline image build needs is missing.',
    fix: 'Install it (as root: `apt-get install -y debootstrap`) or build from the official node image with `phonehome images build --from-registry` where a container registry is reachable.',
    exit: ExitCode.environment,
  },
  EDISK_FULL: {
    summary: 'The disk ran out of space.',
    fix: 'Free space where the cache and Docker live (`docker system df`, `phonehome sweep`), then retry.',
    exit: ExitCode.environment,
  },
  EGATEWAY_SETUP: {
    summary: 'The capture gateway could not be set up, so no package code was run.',
    fix: 'The kernel or engine lacks something the isolation needs (iptables nat/filter, a VXLAN or veth link, conntrack). `phonehome doctor` shows which step failed.',
    exit: ExitCode.environment,
  },
  ESECCOMP: {
    summary: 'The sandbox seccomp profile is missing or not valid, so no package code was run.',
    fix: 'Reinstall phonehome (it ships sandbox-images/seccomp/sandbox.json), or restore the file if it was edited; the problems above say what is wrong. `phonehome doctor` checks the profile.',
    exit: ExitCode.environment,
  },
  EGATEWAY_DIED: {
    summary:
      'The capture gateway stopped during the run; the run was stopped and its results are incomplete.',
    fix: 'Run again; if it repeats, run `phonehome doctor` and report the gateway log printed above.',
    exit: ExitCode.environment,
  },
  ESPEC: {
    summary: 'The package spec is not valid.',
    fix: 'Give a registry spec (`name`, `name@1.2.3`, `name@^1`, `@scope/name@tag`), a path to a .tgz, or a package folder.',
    exit: ExitCode.usage,
  },
  ESPEC_NOT_FOUND: {
    summary: 'The package or version does not exist in the registry.',
    fix: 'Check the name and version (`npm view <name> versions`), or pass `--registry` for a private registry.',
    exit: ExitCode.usage,
  },
  ESPEC_CORRUPT: {
    summary: 'The package tarball or its package.json is corrupt.',
    fix: 'Re-download or re-pack the package; a registry tarball that fails its integrity check may have been tampered with.',
    exit: ExitCode.usage,
  },
  ELOCKFILE: {
    summary: 'The lockfile cannot be audited as it is.',
    fix: 'Point at a package-lock.json (lockfileVersion 2 or 3), npm-shrinkwrap.json, pnpm-lock.yaml (6 or 9), yarn.lock (classic or Berry) or bun.lock, or a project folder with one; regenerate a damaged or old lockfile with its package manager (`npm install --package-lock-only`, `pnpm install --lockfile-only`, `yarn install`, `bun install`).',
    exit: ExitCode.usage,
  },
  ELOCKFILE_SOURCE: {
    summary:
      'The lockfile points phonehome at sources it does not fetch from without your consent.',
    fix: 'Check why those packages come from there; if you trust them, run again with --allow-remote-sources (internal addresses are never fetched unless they are your configured registry).',
    exit: ExitCode.usage,
  },
  EREGISTRY_AUTH: {
    summary: 'The registry refused the request: missing or wrong credentials.',
    fix: 'Log in (`npm login --registry <url>`) or set `//<registry host>/:_authToken` in your .npmrc; phonehome reads the same npm configuration as npm.',
    exit: ExitCode.environment,
  },
  ERESOLVE: {
    summary: 'Resolving the dependency tree failed.',
    fix: 'Check that the registry is reachable (`npm ping`) and your npm configuration; `--registry` selects another registry.',
    exit: ExitCode.environment,
  },
  EPOLICY: {
    summary: 'The policy file is not valid.',
    fix: 'Fix each entry named above (file:line); `phonehome policy check <file>` validates, and docs/policy.md and policies/policy.schema.json describe the format.',
    exit: ExitCode.usage,
  },
  ESTORE: {
    summary: 'The result store cannot be used.',
    fix: 'Check that the cache directory is writable (XDG_CACHE_HOME or ~/.cache/phonehome), or pass --store with another file.',
    exit: ExitCode.environment,
  },
  ESTORE_FILE: {
    summary: 'The store export file cannot be read; nothing was imported.',
    fix: 'Pass a file written by `phonehome store export` (JSON lines), whole and unchanged.',
    exit: ExitCode.usage,
  },
  EINTEL: {
    summary: 'The known-malicious records cannot be imported.',
    fix: 'Pass a folder of OSV records (a clone of github.com/ossf/malicious-packages) or a zip of them (osv.dev: npm/all.zip); nothing was changed in the store.',
    exit: ExitCode.usage,
  },
  EOUTPUT: {
    summary: 'An output file cannot be written.',
    fix: 'Give --html, --sarif or --comment-file a file in a folder that exists and that you may write; nothing was run.',
    exit: ExitCode.usage,
  },
  EUSAGE: {
    summary: 'The command line is not valid.',
    fix: 'See `phonehome --help` or `phonehome <command> --help`.',
    exit: ExitCode.usage,
  },
  EINTERRUPTED: {
    summary: 'Interrupted; the run was stopped and its containers removed.',
    fix: 'Run the command again.',
    exit: ExitCode.interrupted,
  },
  EINTERNAL: {
    summary: 'phonehome failed unexpectedly.',
    fix: 'This is a bug in phonehome; please report it with the message above.',
    exit: ExitCode.internal,
  },
} as const satisfies Record<string, CatalogueEntry>;

export type ErrorCode = keyof typeof errorCatalogue;

export class PhonehomeError extends Error {
  readonly code: ErrorCode;
  readonly detail: string | undefined;
  readonly fix: string;
  readonly exitCode: ExitCode;

  constructor(
    code: ErrorCode,
    message?: string,
    opts: { detail?: string; fix?: string; cause?: unknown } = {},
  ) {
    const entry: CatalogueEntry = errorCatalogue[code];
    super(message ?? entry.summary, { cause: opts.cause });
    this.name = 'PhonehomeError';
    this.code = code;
    this.detail = opts.detail;
    this.fix = opts.fix ?? entry.fix;
    this.exitCode = entry.exit;
  }
}

export function isPhonehomeError(e: unknown): e is PhonehomeError {
  return e instanceof PhonehomeError;
}

/** Human rendering used by the CLI: what, detail, fix. */
export function formatError(e: PhonehomeError): string {
  const lines = [`phonehome: error ${e.code}: ${e.message}`];
  if (e.detail) lines.push(...e.detail.split('\n').map((l) => `  ${l}`));
  lines.push(`  fix: ${e.fix}`);
  return lines.join('\n');
}
