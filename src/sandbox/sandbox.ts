/**
 * The sandbox port: what phonehome needs from a container engine. The core and the orchestration
 * depend on this file only; `docker/` implements it with dockerode. A Kubernetes backend would
 * implement the same interfaces.
 */
import type { Readable } from 'node:stream';

export const LABEL_RUN = 'phonehome.run';
export const LABEL_ROLE = 'phonehome.role';
/** `<hostname>:<pid>` of the phonehome process that made the object; a sweep keeps objects whose owner lives. */
export const LABEL_OWNER = 'phonehome.owner';

/** A container ended or stayed silent while we waited for a line; `output` is what it printed. */
export class LogWaitError extends Error {
  constructor(
    message: string,
    readonly output: string,
  ) {
    super(message);
    this.name = 'LogWaitError';
  }
}

export type ContainerRole = 'gateway' | 'sandbox' | 'probe';

export interface ResourceLimits {
  memoryBytes?: number;
  /** Maximum number of processes/threads in the container (pids cgroup). */
  pids?: number;
  /** CPU quota in units of 1e-9 CPUs (Docker's NanoCpus). */
  nanoCpus?: number;
}

export interface ContainerSpec {
  role: ContainerRole;
  image: string;
  cmd?: string[];
  entrypoint?: string[];
  user?: string;
  env?: Record<string, string>;
  workingDir?: string;
  hostname?: string;
  /**
   * Lines for the namespace's /etc/hosts (only with network `none`; a joining container shares
   * the file), as `name:address`.
   */
  extraHosts?: string[];
  /** `none`: a namespace of its own with only loopback; `join`: share another container's. */
  network: { mode: 'none' } | { mode: 'join'; container: Pick<SandboxContainer, 'id'> };
  capAdd?: string[];
  capDropAll?: boolean;
  noNewPrivileges?: boolean;
  readOnlyRootFs?: boolean;
  /** Mount point → tmpfs options (e.g. `size=64m,mode=1777`). */
  tmpfs?: Record<string, string>;
  limits?: ResourceLimits;
  sysctls?: Record<string, string>;
  /** A seccomp profile in Docker's JSON format (the text itself) instead of the engine's default. */
  seccompProfile?: string;
}

export interface ExecOptions {
  user?: string;
  env?: Record<string, string>;
  workingDir?: string;
  /** Kill the wait after this long and report `timedOut`; the caller decides how to stop the process. */
  timeoutMs?: number;
  /** Keep at most this many bytes of stdout and of stderr; the rest is counted, not kept. */
  maxOutputBytes?: number;
  /** Fed to the command's standard input, then closed. */
  stdin?: Readable;
  /** Sees the command's stdout as it arrives (what the result keeps is still bounded). */
  onStdout?: (chunk: Buffer) => void;
}

export interface ExecResult {
  exitCode: number | null;
  stdout: string;
  stderr: string;
  stdoutBytes: number;
  stderrBytes: number;
  truncated: boolean;
  timedOut: boolean;
}

export interface SandboxContainer extends AsyncDisposable {
  readonly id: string;
  readonly role: ContainerRole;
  exec(cmd: string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Extract a tar stream into `dir` inside the container. */
  putArchive(tar: Readable | Buffer, dir: string): Promise<void>;
  /** A tar stream of `path` inside the container. */
  getArchive(path: string): Promise<Readable>;
  /** One regular file's contents, at most `maxBytes` (larger files are an error). */
  readFile(path: string, maxBytes: number): Promise<Buffer>;
  /** Whether the container's main process is still running. */
  isRunning(): Promise<boolean>;
  /** The main process's output so far (bounded). */
  logs(maxBytes: number): Promise<string>;
  /**
   * Wait until the main process prints a line matching `pattern` (stdout or stderr). Rejects with
   * the output so far when the container exits first or `timeoutMs` passes.
   */
  waitForLog(
    pattern: RegExp,
    timeoutMs: number,
    opts?: { since?: number },
  ): Promise<RegExpExecArray>;
  /** Send a signal to the main process. */
  kill(signal: string): Promise<void>;
  /** Wait for the main process to exit; its exit code. */
  wait(timeoutMs: number): Promise<number | undefined>;
  remove(): Promise<void>;
}

/** One run: its containers are labelled with its id and removed together. */
export interface SandboxRun extends AsyncDisposable {
  readonly id: string;
  start(spec: ContainerSpec): Promise<SandboxContainer>;
  /**
   * Create a container without starting it (it is the run's from here: dispose removes it), so
   * another can be created while one starts; `start` starts it.
   */
  create(spec: ContainerSpec): Promise<CreatedContainer>;
  /** Remove every container of this run (also what `await using` does). */
  dispose(): Promise<void>;
}

export interface CreatedContainer {
  readonly id: string;
  start(): Promise<SandboxContainer>;
}

export interface EngineInfo {
  clientApiVersion: string;
  serverVersion: string;
  serverApiVersion: string;
  os: string;
  kernel: string;
}

export interface SweepResult {
  removedContainers: string[];
}

export interface EngineCapacity {
  /** The daemon's own id: two addresses of one daemon are one engine. */
  id: string;
  cpus: number;
  memoryBytes: number;
}

export interface SandboxEngine {
  /** How the engine is named in logs: `default`, or the `--engine` value without secrets. */
  readonly name: string;
  info(): Promise<EngineInfo>;
  /** What the engine's machine has, to size how many sandboxes it runs at once. */
  capacity(): Promise<EngineCapacity>;
  imageExists(ref: string): Promise<boolean>;
  newRun(runId?: string): SandboxRun;
  /**
   * Remove containers labelled by phonehome (never anything unlabelled) that no live phonehome
   * process owns: the owner's process is gone (same host), or, for owners on other hosts, the
   * container is older than `foreignMinAgeMs`. phonehome makes no networks (a sandbox shares its
   * gateway's network namespace), so there are none to sweep.
   */
  sweep(opts?: { foreignMinAgeMs?: number }): Promise<SweepResult>;
}

export interface ImageInfo {
  ref: string;
  id: string;
  sizeBytes: number;
  labels: Record<string, string>;
}

export interface ImageBuildOptions {
  buildArgs?: Record<string, string>;
  labels?: Record<string, string>;
  onLine?: (line: string) => void;
}

/** Images: what the image build needs from the engine. */
export interface ImageStore {
  inspect(ref: string): Promise<ImageInfo | undefined>;
  /** Import a root filesystem tar stream as image `ref` (tagged only once the import completed). */
  importRootfs(rootfsTar: Readable, ref: string, changes: string[]): Promise<void>;
  /** Build `ref` from a build-context tar (a Dockerfile at its root); progress lines go to `onLine`. */
  build(contextTar: Readable, ref: string, opts: ImageBuildOptions): Promise<void>;
  remove(ref: string): Promise<void>;
  /** These images (with their tags) as one `docker save` tar stream. */
  save(refs: string[]): Promise<NodeJS.ReadableStream>;
  /** Load a `docker save` tar stream. */
  load(tar: NodeJS.ReadableStream): Promise<void>;
}
