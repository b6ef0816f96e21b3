/**
 * The two-container topology of a run: a gateway that owns the network namespace and records
 * every egress attempt, and a sandbox that joins that namespace and runs package code as an
 * unprivileged user. Built on the sandbox port only, so any engine that implements it gets the
 * same isolation. Fail-closed: if the gateway cannot install its rules or start its capture, no
 * sandbox is started.
 */
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { PhonehomeError } from '../core/errors.js';
import { parseEventLog, type EventLog } from '../core/events.js';
import { filesTar, makeIdentity, type SandboxIdentity } from './identity.js';
import {
  LogWaitError,
  type ResourceLimits,
  type SandboxContainer,
  type SandboxRun,
} from './sandbox.js';

export const SANDBOX_USER = '1000:1000';
export const SANDBOX_WORKDIR = '/work';
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
  sandboxLimits?: ResourceLimits;
  /** Size of the writable tmpfs mounts of the sandbox (the root filesystem is read-only). */
  tmpfsSizes?: { work?: string; home?: string; tmp?: string };
  readyTimeoutMs?: number;
  /**
   * Start the observer that tells the capture which sandbox process made each attempt (default
   * true). Without it events carry no process and no package from the npm environment.
   */
  observer?: boolean;
}

export const DEFAULT_SANDBOX_LIMITS: Required<ResourceLimits> = {
  memoryBytes: 2 * 1024 * 1024 * 1024,
  pids: 512,
  nanoCpus: 1_500_000_000,
};

export interface StartupTimings {
  gatewayMs: number;
  sandboxMs: number;
}

export class CaptureTopology {
  private flushes = 0;

  private constructor(
    readonly gateway: SandboxContainer,
    readonly sandbox: SandboxContainer,
    readonly timings: StartupTimings,
    /** The observer's pid in the sandbox; steps never count it as a leftover process. */
    readonly observerPid: number | undefined,
    /** CLOCK_MONOTONIC ms by which the sandbox's own processes had started. */
    readonly readyMs: number,
    readonly identity: SandboxIdentity,
  ) {}

  static async start(run: SandboxRun, opts: TopologyOptions): Promise<CaptureTopology> {
    const t0 = performance.now();
    const observer = opts.observer ?? true;
    // Abstract Unix socket names live in the network namespace both containers share.
    const socketName = randomBytes(12).toString('hex');
    const identity = opts.identity ?? makeIdentity();
    const gateway = await startGatewayContainer(
      run,
      opts,
      identity.hostname,
      observer ? socketName : undefined,
    );
    // The sandbox is created while the gateway sets up: its network namespace exists from the
    // start and leads nowhere, and no package code runs until the gateway said READY below.
    const gatewayReady = waitGatewayReady(gateway, opts);
    gatewayReady.catch(() => undefined);
    const t1 = performance.now();
    const limits = { ...DEFAULT_SANDBOX_LIMITS, ...opts.sandboxLimits };
    const sizes = { work: '1g', home: '256m', tmp: '512m', ...opts.tmpfsSizes };
    const sandbox = await run.start({
      role: 'sandbox',
      image: opts.runnerImage,
      // Process 1 is a shell that only waits: the kernel does not deliver signals to a
      // namespace's init from inside it, so package code cannot stop the container, and its
      // waits reap orphans (a fork bomb's zombies would otherwise keep holding the pids limit).
      // The observer is its child; package code runs through exec.
      entrypoint: [
        '/bin/sh',
        '-c',
        `trap "exit 0" TERM; ${observer ? `node ${AGENT_DIR}/observer.js ${socketName} & ` : ''}while :; do sleep 2147483647 & wait $!; done`,
      ],
      user: SANDBOX_USER,
      workingDir: SANDBOX_WORKDIR,
      network: { mode: 'join', container: gateway },
      capDropAll: true,
      noNewPrivileges: true,
      readOnlyRootFs: true,
      tmpfs: {
        [SANDBOX_WORKDIR]: `rw,exec,nosuid,nodev,size=${sizes.work},uid=1000,gid=1000,mode=0755`,
        // All of /home, so only this run's user has a folder there.
        '/home': `rw,exec,nosuid,nodev,size=${sizes.home},uid=1000,gid=1000,mode=0755`,
        '/tmp': `rw,exec,nosuid,nodev,size=${sizes.tmp},mode=1777`,
        // /etc/passwd and /etc/group of the runner image point here: the user's name is per run.
        [IDENTITY_DIR]: 'rw,noexec,nosuid,nodev,size=1m,mode=0755',
      },
      limits,
      env: identity.env,
    });
    await Promise.all([gatewayReady, writeIdentity(sandbox, identity)]);
    let observerPid: number | undefined;
    let readyMs = 0;
    if (observer) {
      try {
        const m = await sandbox.waitForLog(/^READY (\d+) (\d+)$/m, opts.readyTimeoutMs ?? 15_000);
        observerPid = Number(m[1]);
        readyMs = Number(m[2]);
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
    const t2 = performance.now();
    return new CaptureTopology(
      gateway,
      sandbox,
      { gatewayMs: t1 - t0, sandboxMs: t2 - t1 },
      observerPid,
      readyMs,
      identity,
    );
  }

  /**
   * Unpack a tar stream into the sandbox's project folder as the sandbox user. (The engine's
   * archive API refuses containers with a read-only root filesystem, even for a tmpfs path.)
   */
  async unpack(archive: Readable, dir = SANDBOX_WORKDIR): Promise<void> {
    const r = await this.sandbox.exec(['tar', '-x', '--no-same-owner', '-C', dir, '-f', '-'], {
      stdin: archive,
      timeoutMs: 300_000,
      maxOutputBytes: 16_384,
    });
    if (r.exitCode !== 0) {
      const full = /No space left on device/i.test(r.stderr);
      throw new PhonehomeError(
        full ? 'EDISK_FULL' : 'EINTERNAL',
        full
          ? `The staged package does not fit in the sandbox's ${dir}.`
          : `Unpacking the staged package in the sandbox failed (exit ${r.exitCode}${r.timedOut ? ', timed out' : ''}).`,
        { detail: r.stderr.slice(0, 4000) },
      );
    }
  }

  /** Whether the capture program still runs (if it does not, the sandbox has no network at all). */
  gatewayRunning(): Promise<boolean> {
    return this.gateway.isRunning();
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

/** Where the runner image's /etc/passwd and /etc/group point (sandbox-images/runner/Dockerfile). */
const IDENTITY_DIR = '/run/identity';

/**
 * Give the sandbox its identity before any package code runs: the user in passwd and group (as
 * root, in the identity tmpfs), then the home folder and its files (as the user).
 */
async function writeIdentity(sandbox: SandboxContainer, id: SandboxIdentity): Promise<void> {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const users = [
    `grep -v '^node:' /etc/passwd.base > ${IDENTITY_DIR}/passwd`,
    `echo ${q(`${id.user}:x:1000:1000:${id.fullName},,,:${id.home}:/bin/bash`)} >> ${IDENTITY_DIR}/passwd`,
    `grep -v '^node:' /etc/group.base > ${IDENTITY_DIR}/group`,
    `echo ${q(`${id.user}:x:1000:`)} >> ${IDENTITY_DIR}/group`,
  ].join(' && ');
  const root = await sandbox.exec(['sh', '-c', users], { user: '0:0', timeoutMs: 30_000 });
  if (root.exitCode !== 0)
    throw new PhonehomeError('EINTERNAL', 'Could not set up the sandbox user.', {
      detail: root.stderr.slice(0, 2000),
    });
  const pack = filesTar(
    id.homeFiles,
    id.homeDirs.map((d) => `${id.home.slice(1)}/${d}`),
  );
  const r = await sandbox.exec(['tar', '-x', '--no-same-owner', '-C', '/', '-f', '-'], {
    stdin: pack,
    timeoutMs: 30_000,
    maxOutputBytes: 16_384,
  });
  if (r.exitCode !== 0)
    throw new PhonehomeError('EINTERNAL', 'Could not set up the sandbox home folder.', {
      detail: r.stderr.slice(0, 2000),
    });
}

function startGatewayContainer(
  run: SandboxRun,
  opts: TopologyOptions,
  hostname: string,
  observerSocket: string | undefined,
): Promise<SandboxContainer> {
  const ipv6 = opts.ipv6 ?? true;
  return run.start({
    role: 'gateway',
    image: opts.gatewayImage,
    network: { mode: 'none' },
    hostname,
    capAdd: ['NET_ADMIN'],
    noNewPrivileges: true,
    sysctls: {
      'net.ipv6.conf.all.disable_ipv6': ipv6 ? '0' : '1',
      // Lets the unprivileged sandbox user ping (ICMP datagram sockets), so pings are recorded
      // instead of failing before they are sent.
      'net.ipv4.ping_group_range': '0 2147483647',
    },
    limits: { memoryBytes: 512 * 1024 * 1024, pids: 128, nanoCpus: 1_000_000_000 },
    ...(observerSocket ? { env: { OBSERVER_SOCKET: observerSocket } } : {}),
  });
}

async function waitGatewayReady(gateway: SandboxContainer, opts: TopologyOptions): Promise<void> {
  try {
    await gateway.waitForLog(/^READY$/m, opts.readyTimeoutMs ?? 15_000);
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
