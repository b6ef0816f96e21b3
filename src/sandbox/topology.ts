/**
 * The two-container topology of a run: a gateway that owns the network namespace and records
 * every egress attempt, and a sandbox that joins that namespace and runs package code as an
 * unprivileged user. Built on the sandbox port only, so any engine that implements it gets the
 * same isolation. Fail-closed: if the gateway cannot install its rules or start its capture, no
 * sandbox is started.
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { PhonehomeError } from '../core/errors.js';
import { SANDBOX_WORKDIR } from '../core/terms.js';
import { parseEventLog, type EventLog } from '../core/events.js';
import { AGENT_CLOCK_ENV, REAL_NODE } from '../agent/clock.js';
import { filesTarBytes, makeIdentity, RUNTIME_DIR, type SandboxIdentity } from './identity.js';
import { sandboxSeccompProfile } from './seccomp.js';
import {
  LogWaitError,
  type CreatedContainer,
  type ExecOptions,
  type ResourceLimits,
  type SandboxContainer,
  type SandboxRun,
} from './sandbox.js';

/** The package's user (PACKAGE_UID/PACKAGE_GID in src/agent/step.ts). */
export const SANDBOX_USER = '1000:1000';
/**
 * The agents' privileges in the sandbox: root, every capability dropped but these, and
 * no-new-privileges. SYS_PTRACE and DAC_READ_SEARCH let the observer read the package's
 * /proc/<pid>/fd and environ; KILL lets the step driver stop and kill the package's processes;
 * CHOWN lets it lock the project's other packages for each step (root's, read-only to the user);
 * SETUID and SETGID let it start each step as the package's user, which then holds no
 * capability at all. (A container whose user is not root would give `docker exec -u 0` no
 * capabilities, so the container runs as root and package code never does.)
 */
const AGENT_CAPS = ['SYS_PTRACE', 'DAC_READ_SEARCH', 'KILL', 'SETUID', 'SETGID', 'CHOWN'];
/** How an agent is started: node with SIGUSR1's inspector disabled. */
export function agentCommand(program: string, ...args: string[]): string[] {
  return [REAL_NODE, '--disable-sigusr1', `${AGENT_DIR}/${program}`, ...args];
}
export { SANDBOX_WORKDIR };
/** Node's headers in the runner image, and the node-gyp that npm runs. */
const NODE_HEADERS = '/usr/local/include/node';
const NODE_GYP = '/usr/local/lib/node_modules/npm/node_modules/node-gyp';
const EVENTS_PATH = '/run/capture/events.ndjson';
/** Where the runner image keeps the programs phonehome runs in the sandbox (root-owned, read-only). */
export const AGENT_DIR = '/opt/agent';
/** The nameserver the sandbox's resolv.conf names (V4_RESOLVER in sandbox-images/gateway/setup.sh). */
export const SANDBOX_RESOLVERS: readonly string[] = ['192.168.1.1'];
const EVENTS_MAX_BYTES = 64 * 1024 * 1024;

export interface TopologyOptions {
  runnerImage: string;
  gatewayImage: string;
  /** Who the sandbox looks like (host, user, home, bait); default: a fresh laptop identity. */
  identity?: SandboxIdentity;
  ipv6?: boolean;
  /**
   * Answer TLS with certificates of a CA made for the run and read what is sent inside (default
   * true). The CA's key stays in the capture; its certificate joins the sandbox's trust store.
   */
  tlsIntercept?: boolean;
  sandboxLimits?: ResourceLimits;
  /** Size of the writable tmpfs mounts of the sandbox (the root filesystem is read-only). */
  tmpfsSizes?: { work?: string; home?: string; tmp?: string };
  readyTimeoutMs?: number;
  /**
   * Start the observer that tells the capture which sandbox process made each attempt (default
   * true). Without it events carry no process and no package from the npm environment.
   */
  observer?: boolean;
  /**
   * Tar streams unpacked into the project folder, in this order, while the gateway sets up: tar
   * is not package code, and no package code runs before the gateway is ready.
   */
  project?: Readable[];
}

export const DEFAULT_SANDBOX_LIMITS: Required<ResourceLimits> = {
  memoryBytes: 2 * 1024 * 1024 * 1024,
  pids: 512,
  nanoCpus: 1_500_000_000,
};

export class CaptureTopology {
  private flushes = 0;

  private constructor(
    readonly gateway: SandboxContainer,
    readonly sandbox: SandboxContainer,
    readonly identity: SandboxIdentity,
  ) {}

  static async start(run: SandboxRun, opts: TopologyOptions): Promise<CaptureTopology> {
    const observer = opts.observer ?? true;
    // Abstract Unix socket names live in the network namespace both containers share.
    const socketName = randomBytes(12).toString('hex');
    const identity = opts.identity ?? makeIdentity();
    const created = await createGatewayContainer(
      run,
      opts,
      identity.hostname,
      observer ? socketName : undefined,
    );
    const starting = created.start();
    starting.catch(() => undefined);
    const limits = { ...DEFAULT_SANDBOX_LIMITS, ...opts.sandboxLimits };
    const sizes = { work: '1g', home: '256m', tmp: '512m', ...opts.tmpfsSizes };
    // The sandbox is created while the gateway starts, and started while it sets up: its network
    // namespace exists from the start and leads nowhere, and no package code runs until the
    // gateway said READY below.
    const sandboxCreated = run.create({
      role: 'sandbox',
      image: opts.runnerImage,
      // Process 1 is /sbin/init (sandbox-images/runner/init.c; root, like the observer it starts
      // from INIT_EXEC) that only waits: package code cannot signal it, and its waits reap
      // orphans (a fork bomb's zombies would otherwise keep holding the pids limit). Package code
      // runs through exec, as SANDBOX_USER.
      entrypoint: ['/sbin/init'],
      user: '0:0',
      workingDir: SANDBOX_WORKDIR,
      network: { mode: 'join', container: created },
      capDropAll: true,
      capAdd: AGENT_CAPS,
      // Docker's default profile minus the socket families a package does not need (AF_VSOCK
      // above all), io_uring and the 32-bit syscall path (sandbox-images/seccomp/README.md).
      seccompProfile: sandboxSeccompProfile().json,
      noNewPrivileges: true,
      readOnlyRootFs: true,
      tmpfs: {
        [SANDBOX_WORKDIR]: `rw,exec,nosuid,nodev,size=${sizes.work},uid=1000,gid=1000,mode=0755`,
        // The run's home alone: /home itself stays the image's (root's, with no other user's
        // folder), as on a machine, where a user cannot make folders beside their own.
        [identity.home]: `rw,exec,nosuid,nodev,size=${sizes.home},uid=1000,gid=1000,mode=0755`,
        '/tmp': `rw,exec,nosuid,nodev,size=${sizes.tmp},mode=1777`,
        // /etc/passwd and /etc/group of the runner image point here: the user's name is per run.
        // So do the system's certificate bundle and the run CA's file (trust store, below).
        [IDENTITY_DIR]: 'rw,noexec,nosuid,nodev,size=2m,mode=0755',
        // The user's runtime folder, as a desktop login makes it (XDG_RUNTIME_DIR): the laptop
        // identity's alone.
        ...(identity.env.XDG_RUNTIME_DIR === RUNTIME_DIR
          ? { [RUNTIME_DIR]: 'rw,nosuid,nodev,size=1m,uid=1000,gid=1000,mode=0700' }
          : {}),
      },
      limits,
      // The observer's socket name and the kernel's clock are the agents' alone: the step driver
      // passes neither on (AGENT_ONLY_ENV).
      env: {
        ...identity.env,
        ...AGENT_CLOCK_ENV,
        ...(observer
          ? { OBSERVER_SOCKET: socketName, INIT_EXEC: agentCommand('observer.js').join(' ') }
          : {}),
      },
    });
    sandboxCreated.catch(() => undefined);
    const gateway = await starting;
    const gatewayReady = waitGatewayReady(gateway, opts);
    gatewayReady.catch(() => undefined);
    const container = await (await sandboxCreated).start();
    const sandbox = asPackageUser(container);
    // The home folder and the project in one exec; the user and the trust store wait for the
    // run's CA, which the capture makes as it starts.
    const unpacked = writeHomeAndProject(
      sandbox,
      identity,
      opts.project?.length ? joined(opts.project) : undefined,
    );
    const trusted = gatewayReady.then((ca) => writeUserAndTrust(sandbox, identity, ca));
    await Promise.all([gatewayReady, trusted, unpacked]);
    if (observer) {
      try {
        await sandbox.waitForLog(/^READY \d+ \d+$/m, opts.readyTimeoutMs ?? 15_000);
      } catch (e) {
        if (e instanceof LogWaitError)
          throw new PhonehomeError(
            'EGATEWAY_SETUP',
            'The sandbox observer did not connect to the capture. No package code was run.',
            { detail: e.output.trim() || e.message },
          );
        throw e;
      }
    }
    return new CaptureTopology(gateway, sandbox, identity);
  }

  /**
   * Unpack a tar stream into the sandbox's project folder as the sandbox user. (The engine's
   * archive API refuses containers with a read-only root filesystem, even for a tmpfs path.)
   */
  async unpack(archive: Readable, dir = SANDBOX_WORKDIR): Promise<void> {
    await unpackInto(this.sandbox, archive, dir);
  }

  /**
   * Make the capture write out everything it saw so far (with ICMP and drop counts) and read the
   * event log back.
   */
  async events(timeoutMs = 15_000): Promise<EventLog> {
    const n = ++this.flushes;
    if (!(await this.gateway.isRunning())) {
      throw new PhonehomeError('EGATEWAY_DIED', undefined, {
        detail: await this.gateway.logs(8192),
      });
    }
    await this.gateway.kill('SIGUSR1');
    try {
      await this.gateway.waitForLog(new RegExp(`^FLUSHED ${n} \\d+$`, 'm'), timeoutMs);
    } catch (e) {
      if (e instanceof LogWaitError)
        throw new PhonehomeError(
          'EGATEWAY_DIED',
          `The capture did not write out its events (${e.message}).`,
          { detail: e.output },
        );
      throw e;
    }
    const text = (await this.gateway.readFile(EVENTS_PATH, EVENTS_MAX_BYTES)).toString('utf8');
    return parseEventLog(text);
  }
}

/**
 * The sandbox container with commands run as the package's user unless a caller names another:
 * the container itself runs as root (for the agents), and nothing may run package code with the
 * agents' capabilities by leaving the user out.
 */
function asPackageUser(c: SandboxContainer): SandboxContainer {
  return new Proxy(c, {
    get(target, key, receiver) {
      if (key === 'exec')
        return (cmd: string[], opts: ExecOptions = {}) =>
          target.exec(cmd, { ...opts, user: opts.user ?? SANDBOX_USER });
      const v: unknown = Reflect.get(target, key, receiver);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** Where the runner image's /etc/passwd and /etc/group point (sandbox-images/runner/Dockerfile). */
export const IDENTITY_DIR = '/run/identity';
/** The run CA's certificate in the sandbox, and the system bundle that includes it. */
export const TRUST_FILES = {
  ca: `${IDENTITY_DIR}/ca.pem`,
  bundle: `${IDENTITY_DIR}/ca-certificates.crt`,
  /** The runner image's system certificate bundle as Debian built it (the live one is per run). */
  base: '/etc/ssl/certs/ca-certificates.crt.base',
} as const;

/** Unpack a tar stream into a folder of the sandbox as the sandbox user. */
/** Tar streams one after another, as one stream (which `tar --ignore-zeros` reads whole). */
function joined(archives: readonly Readable[]): Readable {
  if (archives.length === 1) return archives[0] as Readable;
  return Readable.from(
    (async function* () {
      for (const a of archives) for await (const chunk of a) yield chunk as Buffer;
    })(),
  );
}

async function unpackInto(
  sandbox: SandboxContainer,
  archive: Readable,
  dir: string,
): Promise<void> {
  const r = await sandbox.exec(
    ['tar', '-x', '--ignore-zeros', '--no-same-owner', '-C', dir, '-f', '-'],
    {
      stdin: archive,
      timeoutMs: 300_000,
      maxOutputBytes: 16_384,
    },
  );
  if (r.exitCode !== 0) unpackFailed(r, dir);
}

function unpackFailed(
  r: { exitCode: number | null; timedOut?: boolean; stderr: string },
  dir: string,
): never {
  const full = /No space left on device/i.test(r.stderr);
  throw new PhonehomeError(
    full ? 'EDISK_FULL' : 'EINTERNAL',
    full
      ? `The staged package does not fit in the sandbox's ${dir}.`
      : `Unpacking the staged package in the sandbox failed (exit ${r.exitCode}${r.timedOut ? ', timed out' : ''}).`,
    { detail: r.stderr.slice(0, 4000) },
  );
}

const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * As root: the user in passwd and group, and the trust store: the system bundle (the runner
 * image's /etc/ssl/certs/ca-certificates.crt points into the identity tmpfs) with the run's CA
 * appended, and the CA on its own where the hashed certificate folder and node's start-up look
 * for it (sandbox-images/runner/Dockerfile, extraca.c); without interception, the bundle as
 * shipped. One exec.
 */
async function writeUserAndTrust(
  sandbox: SandboxContainer,
  id: SandboxIdentity,
  caPem: string | undefined,
): Promise<void> {
  const { ca, bundle, base } = TRUST_FILES;
  const script = [
    'umask 022',
    `grep -v '^node:' /etc/passwd.base > ${IDENTITY_DIR}/passwd`,
    `echo ${shq(`${id.user}:x:1000:1000:${id.fullName},,,:${id.home}:/bin/bash`)} >> ${IDENTITY_DIR}/passwd`,
    `grep -v '^node:' /etc/group.base > ${IDENTITY_DIR}/group`,
    `echo ${shq(`${id.user}:x:1000:`)} >> ${IDENTITY_DIR}/group`,
    ...(caPem ? [`cat > ${ca}`, `cat ${base} ${ca} > ${bundle}`] : [`cp ${base} ${bundle}`]),
  ].join(' && ');
  const r = await sandbox.exec(['sh', '-c', script], {
    user: '0:0',
    timeoutMs: 30_000,
    ...(caPem ? { stdin: Readable.from([Buffer.from(caPem)]) } : {}),
  });
  if (r.exitCode !== 0)
    throw new PhonehomeError(
      'EGATEWAY_SETUP',
      "Could not set up the sandbox's user and trust store. No package code was run.",
      { detail: r.stderr.slice(0, 2000) },
    );
}

/**
 * As the user, in one exec: the home folder, its files and node-gyp's header cache, then the
 * project (tar archives one after another, read with --ignore-zeros). The home's archive goes
 * first with its length, so one standard input carries both. Before any package code runs; not
 * written by process 1 at start: its command line is readable by package code, and would say how
 * the user was made.
 */
async function writeHomeAndProject(
  sandbox: SandboxContainer,
  id: SandboxIdentity,
  project: Readable | undefined,
): Promise<void> {
  const q = shq;
  const home = filesTarBytes(
    id.homeFiles,
    id.homeDirs.map((d) => `${id.home.slice(1)}/${d}`),
    { aged: true },
  );
  // node-gyp's cache of Node's headers, as on a machine that has built an addon before: the
  // runner image's own headers, so a binding.gyp reaches its configure step (and what its `<!(…)`
  // expansions run) without a download the sandbox cannot make.
  const devDir = [
    `v=$(sed -n 's/^#define NODE_\\(MAJOR\\|MINOR\\|PATCH\\)_VERSION \\([0-9]*\\)$/\\2/p' ${NODE_HEADERS}/node_version.h | paste -sd.)`,
    `iv=$(sed -n 's/.*"installVersion": *\\([0-9]*\\).*/\\1/p' ${NODE_GYP}/package.json)`,
    `d=${q(id.home)}/.cache/node-gyp/$v`,
    `{ [ -z "$v" ] || [ -z "$iv" ] || { mkdir -p "$d/include" && ln -s ${NODE_HEADERS} "$d/include/node" && echo "$iv" > "$d/installVersion" && touch -h -d '37 days ago' "$d/include/node" "$d/installVersion" "$d/include" "$d"; }; }`,
  ].join('; ');
  const unpackProject = project
    ? `tar -x --ignore-zeros --no-same-owner -C ${SANDBOX_WORKDIR} -f - || exit 4`
    : 'true';
  const r = await sandbox.exec(
    [
      'sh',
      '-c',
      // head -c reads exactly the home's bytes and leaves the rest of the input to the project's tar.
      `head -c ${home.length} | tar -x --no-same-owner -C / -f - || exit 3; { ${devDir}; } || exit 3; ${unpackProject}`,
    ],
    {
      stdin: Readable.from(
        (async function* () {
          yield home;
          if (project) for await (const chunk of project) yield chunk as Buffer;
        })(),
      ),
      timeoutMs: 300_000,
      maxOutputBytes: 16_384,
    },
  );
  if (r.exitCode === 3)
    throw new PhonehomeError('EINTERNAL', 'Could not set up the sandbox home folder.', {
      detail: r.stderr.slice(0, 2000),
    });
  if (r.exitCode !== 0) unpackFailed(r, SANDBOX_WORKDIR);
}

function createGatewayContainer(
  run: SandboxRun,
  opts: TopologyOptions,
  hostname: string,
  observerSocket: string | undefined,
): Promise<CreatedContainer> {
  const ipv6 = opts.ipv6 ?? true;
  return run.create({
    role: 'gateway',
    image: opts.gatewayImage,
    network: { mode: 'none' },
    hostname,
    // As Debian's installer writes it: a machine's own name resolves to loopback without a lookup
    // (clients that resolve os.hostname() do not query DNS on a developer's machine).
    extraHosts: [`${hostname}:127.0.1.1`],
    capAdd: ['NET_ADMIN'],
    noNewPrivileges: true,
    sysctls: {
      'net.ipv6.conf.all.disable_ipv6': ipv6 ? '0' : '1',
      // Lets the unprivileged sandbox user ping (ICMP datagram sockets), so pings are recorded
      // instead of failing before they are sent.
      'net.ipv4.ping_group_range': '0 2147483647',
      // A laptop forwards nothing (the engine's namespaces start with forwarding on).
      'net.ipv4.ip_forward': '0',
    },
    limits: { memoryBytes: 512 * 1024 * 1024, pids: 128, nanoCpus: 1_000_000_000 },
    env: {
      ...(observerSocket ? { OBSERVER_SOCKET: observerSocket } : {}),
      ...((opts.tlsIntercept ?? true) ? {} : { TLS_INTERCEPT: 'off' }),
    },
  });
}

/**
 * Wait for the capture's READY; the run's CA certificate (PEM) when it intercepts TLS. A gateway
 * asked to intercept that says READY without a CA is a setup failure: the sandbox would trust
 * nothing of the run's and every HTTPS request would fail (fail closed, not quietly blind).
 */
async function waitGatewayReady(
  gateway: SandboxContainer,
  opts: TopologyOptions,
): Promise<string | undefined> {
  try {
    const m = await gateway.waitForLog(
      /^READY(?: CA ([A-Za-z0-9+/]+=*))?$/m,
      opts.readyTimeoutMs ?? 15_000,
    );
    const der = m[1];
    if ((opts.tlsIntercept ?? true) && !der)
      throw new PhonehomeError(
        'EGATEWAY_SETUP',
        "The capture gateway started without the run's TLS certificate authority. No package code was run.",
        { detail: m.input.slice(0, 4000) },
      );
    if (!der) return undefined;
    const b64 = Buffer.from(der, 'base64').toString('base64');
    return `-----BEGIN CERTIFICATE-----\n${b64.replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END CERTIFICATE-----\n`;
  } catch (e) {
    if (e instanceof LogWaitError) {
      const failed = /SETUP-FAILED: (.*)/.exec(e.output)?.[1];
      throw new PhonehomeError(
        'EGATEWAY_SETUP',
        failed
          ? `The capture gateway could not be set up: ${failed}. No package code was run.`
          : undefined,
        { detail: e.output.trim() || e.message },
      );
    }
    throw e;
  }
}

/** Start a gateway that only installs its rules and exits; for `doctor`. */
export async function checkGatewayRules(
  run: SandboxRun,
  gatewayImage: string,
): Promise<{ ok: boolean; ipv6: boolean; output: string }> {
  const gateway = await run.start({
    role: 'probe',
    image: gatewayImage,
    cmd: ['--rules-only'],
    network: { mode: 'none' },
    capAdd: ['NET_ADMIN'],
    sysctls: { 'net.ipv6.conf.all.disable_ipv6': '0' },
  });
  const code = await gateway.wait(20_000);
  const output = await gateway.logs(16_384);
  return {
    ok: code === 0 && /RULES-OK/.test(output),
    ipv6: /RULES-OK ipv6/.test(output),
    output: output.trim(),
  };
}
