/**
 * The dockerode implementation of the sandbox port. dockerode is imported only in this folder.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { Readable } from 'node:stream';
import Docker from 'dockerode';
import * as tar from 'tar';
import { PhonehomeError } from '../../core/errors.js';
import {
  LABEL_OWNER,
  LABEL_ROLE,
  LABEL_RUN,
  LogWaitError,
  type ContainerRole,
  type ContainerSpec,
  type CreatedContainer,
  type EngineCapacity,
  type EngineInfo,
  type ExecOptions,
  type ExecResult,
  type SandboxContainer,
  type SandboxEngine,
  type SandboxRun,
  type SweepResult,
} from '../sandbox.js';
import { BoundedBuffer, Demuxer } from './demux.js';
import { dockerError, isNotFound } from './errors.js';

const DEFAULT_MAX_OUTPUT = 1024 * 1024;

export function newRunId(): string {
  return randomBytes(6).toString('hex');
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists but is someone else's.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class DockerEngine implements SandboxEngine {
  readonly docker: Docker;
  private readonly runs = new Set<DockerRun>();

  /** Connects the way the docker CLI does: DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH, else the local socket. */
  constructor(
    docker?: Docker,
    readonly name = 'default',
  ) {
    this.docker = docker ?? new Docker();
  }

  async capacity(): Promise<EngineCapacity> {
    try {
      const i = (await this.docker.info()) as {
        ID?: string;
        DockerRootDir?: string;
        NCPU?: number;
        MemTotal?: number;
      };
      // The daemon id alone is shared by daemons of one machine that share /etc/docker; with its
      // data root it names one daemon.
      return {
        id: i.ID ? `${i.ID} ${i.DockerRootDir ?? ''}` : '',
        cpus: Math.max(1, i.NCPU ?? 1),
        memoryBytes: i.MemTotal ?? 0,
      };
    } catch (e) {
      throw dockerError(e, `asking the engine ${this.name} what its machine has`);
    }
  }

  async info(): Promise<EngineInfo> {
    try {
      const v = await this.docker.version();
      return {
        clientApiVersion: (this.docker.modem as { version?: string }).version ?? 'negotiated',
        serverVersion: v.Version,
        serverApiVersion: v.ApiVersion,
        os: `${v.Os}/${v.Arch}`,
        kernel: v.KernelVersion,
      };
    } catch (e) {
      throw dockerError(e, 'asking the engine for its version');
    }
  }

  async imageExists(ref: string): Promise<boolean> {
    try {
      await this.docker.getImage(ref).inspect();
      return true;
    } catch (e) {
      if (isNotFound(e)) return false;
      throw dockerError(e, `inspecting image ${ref}`);
    }
  }

  newRun(runId: string = newRunId()): SandboxRun {
    const run = new DockerRun(this, runId, () => this.runs.delete(run));
    this.runs.add(run);
    return run;
  }

  /** Remove every container of every run this engine object started (Ctrl-C path). */
  async disposeAll(): Promise<void> {
    await Promise.allSettled([...this.runs].map((r) => r.dispose()));
  }

  async sweep(opts: { foreignMinAgeMs?: number } = {}): Promise<SweepResult> {
    const foreignMinAgeMs = opts.foreignMinAgeMs ?? 6 * 3600 * 1000;
    const keep = new Set([...this.runs].map((r) => r.id));
    const now = Date.now();
    const stale = (labels: Record<string, string> | undefined, createdMs: number): boolean => {
      const run = labels?.[LABEL_RUN];
      if (!run || keep.has(run)) return false;
      const [host, pid] = (labels?.[LABEL_OWNER] ?? '').split(':');
      if (host === hostname() && pid) return !processAlive(Number(pid));
      return now - createdMs >= foreignMinAgeMs;
    };
    const result: SweepResult = { removedContainers: [] };
    try {
      const containers = await this.docker.listContainers({
        all: true,
        filters: { label: [LABEL_RUN] },
      });
      for (const c of containers) {
        if (!stale(c.Labels, c.Created * 1000)) continue;
        try {
          await this.docker.getContainer(c.Id).remove({ force: true, v: true });
          result.removedContainers.push(c.Id.slice(0, 12));
        } catch (e) {
          if (!isNotFound(e)) throw e;
        }
      }
    } catch (e) {
      throw dockerError(e, 'sweeping stale phonehome containers');
    }
    return result;
  }
}

/** no-new-privileges and the seccomp profile. An empty or non-JSON profile is refused: the engine
 * would read `seccomp=` as its default profile and `seccomp=unconfined` as none. */
function securityOpt(spec: ContainerSpec): string[] | undefined {
  const opts = spec.noNewPrivileges ? ['no-new-privileges'] : [];
  if (spec.seccompProfile !== undefined) {
    if (!spec.seccompProfile.trimStart().startsWith('{')) {
      throw new PhonehomeError(
        'ESECCOMP',
        `The seccomp profile for the ${spec.role} container is not a JSON object.`,
      );
    }
    opts.push(`seccomp=${spec.seccompProfile}`);
  }
  return opts.length > 0 ? opts : undefined;
}

class DockerRun implements SandboxRun {
  private readonly containers: DockerContainer[] = [];
  private disposed = false;

  constructor(
    private readonly engine: DockerEngine,
    readonly id: string,
    private readonly onDisposed: () => void,
  ) {}

  async start(spec: ContainerSpec): Promise<SandboxContainer> {
    return (await this.create(spec)).start();
  }

  async create(spec: ContainerSpec): Promise<CreatedContainer> {
    if (this.disposed) throw new PhonehomeError('EINTERRUPTED', 'The run was already stopped.');
    const docker = this.engine.docker;
    const networkMode =
      spec.network.mode === 'none' ? 'none' : `container:${spec.network.container.id}`;
    // CgroupnsMode (API 1.41) is missing from @types/dockerode.
    const hostConfig: Docker.HostConfig & { CgroupnsMode?: 'private' | 'host' } = {
      NetworkMode: networkMode,
      CapAdd: spec.capAdd,
      CapDrop: spec.capDropAll ? ['ALL'] : undefined,
      SecurityOpt: securityOpt(spec),
      ReadonlyRootfs: spec.readOnlyRootFs ?? false,
      Tmpfs: spec.tmpfs,
      Memory: spec.limits?.memoryBytes,
      // Same as Memory: no swap on top of the limit.
      MemorySwap: spec.limits?.memoryBytes,
      PidsLimit: spec.limits?.pids,
      NanoCpus: spec.limits?.nanoCpus,
      Sysctls: spec.sysctls,
      ExtraHosts: spec.network.mode === 'none' ? spec.extraHosts : undefined,
      // Its own cgroup namespace: /proc/self/cgroup shows "/" rather than the engine's
      // /docker/<id> path, one fewer sign of a container for code that looks.
      CgroupnsMode: 'private',
      // No host mounts, no devices, no privileged mode, ever.
      Privileged: false,
      Binds: [],
      LogConfig: { Type: 'json-file', Config: { 'max-size': '1m', 'max-file': '1' } },
    };
    let created: Docker.Container;
    try {
      created = await docker.createContainer({
        Image: spec.image,
        Cmd: spec.cmd,
        Entrypoint: spec.entrypoint,
        User: spec.user,
        Env: spec.env ? Object.entries(spec.env).map(([k, v]) => `${k}=${v}`) : undefined,
        WorkingDir: spec.workingDir,
        Hostname: spec.network.mode === 'none' ? spec.hostname : undefined,
        Labels: {
          [LABEL_RUN]: this.id,
          [LABEL_ROLE]: spec.role,
          [LABEL_OWNER]: `${hostname()}:${process.pid}`,
        },
        HostConfig: hostConfig,
      });
    } catch (e) {
      if (isNotFound(e)) {
        throw new PhonehomeError('EIMAGE_MISSING', `Image ${spec.image} is not present.`, {
          cause: e,
        });
      }
      throw dockerError(e, `creating the ${spec.role} container`);
    }
    const container = new DockerContainer(docker, created, spec.role);
    this.containers.push(container);
    if (this.disposed) {
      // Stopped while it was being created: the removal may have missed it.
      await container.remove();
      throw new PhonehomeError('EINTERRUPTED');
    }
    return {
      id: created.id,
      start: async () => {
        if (this.disposed) throw new PhonehomeError('EINTERRUPTED');
        try {
          await created.start();
        } catch (e) {
          throw dockerError(e, `starting the ${spec.role} container`);
        }
        if (this.disposed) {
          // Interrupted while starting: do not leave this one behind.
          await container.remove();
          throw new PhonehomeError('EINTERRUPTED');
        }
        return container;
      },
    };
  }

  private disposing: Promise<void> | undefined;

  /** Idempotent, and safe to call concurrently (Ctrl-C and `await using` may both call it). */
  dispose(): Promise<void> {
    this.disposed = true;
    this.disposing ??= (async () => {
      // All at once, each in one call (a forced removal kills it first): the sandbox holding the
      // gateway's namespace does not stop the gateway's removal. Every container is tried even if
      // one removal fails, then the first failure is reported.
      const removed = await Promise.allSettled(this.containers.map((c) => c.remove()));
      const errors = removed.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
      this.onDisposed();
      if (errors.length > 0) throw errors[0];
    })();
    return this.disposing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }
}

class DockerContainer implements SandboxContainer {
  private removed = false;

  constructor(
    private readonly docker: Docker,
    private readonly container: Docker.Container,
    readonly role: ContainerRole,
  ) {}

  get id(): string {
    return this.container.id;
  }

  async exec(cmd: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const max = opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT;
    const stdout = new BoundedBuffer(max, opts.onStdout);
    const stderr = new BoundedBuffer(max);
    let exec: Docker.Exec;
    let stream: NodeJS.ReadWriteStream;
    try {
      exec = await this.container.exec({
        Cmd: cmd,
        AttachStdout: true,
        AttachStderr: true,
        AttachStdin: opts.stdin !== undefined,
        User: opts.user,
        Env: opts.env ? Object.entries(opts.env).map(([k, v]) => `${k}=${v}`) : undefined,
        WorkingDir: opts.workingDir,
      });
      stream = (await exec.start({
        hijack: true,
        stdin: opts.stdin !== undefined,
      })) as NodeJS.ReadWriteStream;
    } catch (e) {
      throw dockerError(e, `running ${cmd[0] ?? 'a command'} in the ${this.role} container`);
    }
    const demux = new Demuxer(stdout, stderr);
    if (opts.stdin) {
      // end() half-closes the hijacked connection, which the engine passes on as end of input.
      opts.stdin.on('error', () => (stream as unknown as Readable).destroy());
      opts.stdin.pipe(stream as unknown as NodeJS.WritableStream);
    }
    const timedOut = await new Promise<boolean>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      if (opts.timeoutMs !== undefined) {
        timer = setTimeout(() => {
          (stream as unknown as Readable).destroy();
          resolve(true);
        }, opts.timeoutMs);
      }
      stream.on('data', (d: Buffer) => demux.write(d));
      stream.on('end', () => {
        clearTimeout(timer);
        resolve(false);
      });
      stream.on('close', () => {
        clearTimeout(timer);
        resolve(false);
      });
      stream.on('error', (e) => {
        clearTimeout(timer);
        reject(dockerError(e, `reading output of ${cmd[0] ?? 'a command'}`));
      });
    });
    let exitCode: number | null = null;
    if (!timedOut) {
      try {
        // The stream can end a moment before the engine records the exit code.
        for (let i = 0; i < 50; i++) {
          const info = await exec.inspect();
          if (!info.Running) {
            exitCode = info.ExitCode;
            break;
          }
          await new Promise((r) => setTimeout(r, 20));
        }
      } catch (e) {
        throw dockerError(e, 'reading an exit code');
      }
    }
    return {
      exitCode,
      stdout: stdout.toString(),
      stderr: stderr.toString(),
      stdoutBytes: stdout.total,
      stderrBytes: stderr.total,
      truncated: stdout.truncated || stderr.truncated,
      timedOut,
    };
  }

  async putArchive(archive: Readable | Buffer, dir: string): Promise<void> {
    try {
      const body = Buffer.isBuffer(archive) ? Readable.from([archive]) : archive;
      await this.container.putArchive(body as unknown as NodeJS.ReadableStream, { path: dir });
    } catch (e) {
      throw dockerError(e, `copying files into ${dir} of the ${this.role} container`);
    }
  }

  async getArchive(path: string): Promise<Readable> {
    try {
      return (await this.container.getArchive({ path })) as unknown as Readable;
    } catch (e) {
      throw dockerError(e, `copying ${path} out of the ${this.role} container`);
    }
  }

  async readFile(path: string, maxBytes: number): Promise<Buffer> {
    const archive = await this.getArchive(path);
    const chunks: Buffer[] = [];
    let size = 0;
    let found = false;
    await new Promise<void>((resolve, reject) => {
      const parser = new tar.Parser({
        onReadEntry: (entry) => {
          if (found || entry.type !== 'File') {
            entry.resume();
            return;
          }
          found = true;
          if (entry.size > maxBytes) {
            reject(
              new PhonehomeError(
                'EINTERNAL',
                `${path} in the ${this.role} container is ${entry.size} bytes, more than ${maxBytes}.`,
              ),
            );
            entry.resume();
            return;
          }
          entry.on('data', (d: Buffer) => {
            size += d.length;
            chunks.push(d);
          });
        },
      });
      parser.on('end', () => resolve());
      parser.on('error', reject);
      archive.on('error', reject);
      archive.pipe(parser);
    });
    if (!found)
      throw new PhonehomeError(
        'EINTERNAL',
        `${path} is not a regular file in the ${this.role} container.`,
      );
    return Buffer.concat(chunks, size);
  }

  async isRunning(): Promise<boolean> {
    try {
      const info = await this.container.inspect();
      return info.State.Running;
    } catch (e) {
      if (isNotFound(e)) return false;
      throw dockerError(e, `inspecting the ${this.role} container`);
    }
  }

  async logs(maxBytes: number): Promise<string> {
    try {
      const raw = (await this.container.logs({
        stdout: true,
        stderr: true,
        follow: false,
      })) as unknown as Buffer;
      const out = new BoundedBuffer(maxBytes);
      new Demuxer(out, out).write(raw);
      return out.toString();
    } catch (e) {
      if (isNotFound(e)) return '';
      throw dockerError(e, `reading the ${this.role} container's log`);
    }
  }

  waitForLog(
    pattern: RegExp,
    timeoutMs: number,
    opts: { since?: number } = {},
  ): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const out = new BoundedBuffer(256 * 1024);
      const demux = new Demuxer(out, out);
      let settled = false;
      let stream: Readable | undefined;
      const settle = (fn: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        stream?.destroy();
        fn();
      };
      const timer = setTimeout(
        () =>
          settle(() =>
            reject(
              new LogWaitError(
                `no line matching ${pattern} within ${timeoutMs} ms`,
                out.toString(),
              ),
            ),
          ),
        timeoutMs,
      );
      this.container
        .logs({
          stdout: true,
          stderr: true,
          follow: true,
          ...(opts.since !== undefined ? { since: opts.since } : {}),
        })
        .then((s) => {
          stream = s as unknown as Readable;
          if (settled) return stream.destroy();
          stream.on('data', (d: Buffer) => {
            demux.write(d);
            const m = pattern.exec(out.toString());
            if (m) settle(() => resolve(m));
          });
          stream.on('end', () =>
            settle(() => reject(new LogWaitError('the container exited', out.toString()))),
          );
          stream.on('error', (e) =>
            settle(() => reject(dockerError(e, `following the ${this.role} container's log`))),
          );
        })
        .catch((e: unknown) =>
          settle(() => reject(dockerError(e, `following the ${this.role} container's log`))),
        );
    });
  }

  async kill(signal: string): Promise<void> {
    try {
      await this.container.kill({ signal });
    } catch (e) {
      throw dockerError(e, `signalling the ${this.role} container`);
    }
  }

  async wait(timeoutMs: number): Promise<number | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>(
      (r) => (timer = setTimeout(() => r(undefined), timeoutMs)),
    );
    try {
      const done = this.container.wait().then((r: { StatusCode: number }) => r.StatusCode);
      return await Promise.race([done, timeout]);
    } catch (e) {
      throw dockerError(e, `waiting for the ${this.role} container`);
    } finally {
      clearTimeout(timer);
    }
  }

  async remove(): Promise<void> {
    if (this.removed) return;
    try {
      await this.container.remove({ force: true, v: true });
    } catch (e) {
      if (
        !isNotFound(e) &&
        !/removal of container .* is already in progress/.test(String((e as Error).message))
      ) {
        throw dockerError(e, `removing the ${this.role} container`);
      }
    }
    this.removed = true;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.remove();
  }
}
