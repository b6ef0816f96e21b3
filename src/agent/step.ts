/**
 * The step driver: runs one step (a command) in the sandbox. It runs as root with a few
 * capabilities, out of the package's reach, and starts the step as the package's user. It stamps
 * the step's start and end on the kernel's monotonic clock (the clock the capture stamps events
 * with), keeps a bounded head of the output, and at the step's end deals with every process of
 * the package's user still alive (detached children, double forks, a zombie leader whose threads
 * live on): they are watched for the settle window, then stopped and killed, so nothing started
 * in one step acts in the next. Every such process is the package's: phonehome's own programs
 * run as root.
 *
 * Runs on the sandbox's Node with built-ins only, inside the batch driver (batch.ts), which
 * runs a list of steps one after another in one process.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, lchownSync, lstatSync, readdirSync, readlinkSync, type Dirent } from 'node:fs';
import { AGENT_CLOCK_ENV, REAL_NODE } from './clock.js';
import { cmdline, liveThreads, monotonicMs as now, pids, uids } from './proc.js';
import type { HarnessResult } from './harness.js';
import { scriptEnv, type ScriptRun } from './lifecycle.js';
import { superviseHarness, type Supervised } from './supervise.js';

/** The package's user in the sandbox (the runner image's uid and gid 1000). */
export const PACKAGE_UID = 1000;
export const PACKAGE_GID = 1000;
/** Where the runner image keeps phonehome's programs (AGENT_DIR in src/sandbox/topology.ts). */
export const AGENT_DIR = '/opt/agent';
/** The project folder (SANDBOX_WORKDIR in src/core/terms.ts) and npm's command, as a shell names it. */
export const SANDBOX_DIR = '/work';
export const NPM_BIN = '/usr/local/bin/npm';
/**
 * Variables of the agents' own environment that package code must not inherit: the observer's
 * socket, and what keeps the agents' clocks at the kernel's time (without them a step runs on
 * the virtual clock of /etc/faketimerc).
 */
export const AGENT_ONLY_ENV = ['OBSERVER_SOCKET', 'INIT_EXEC', ...Object.keys(AGENT_CLOCK_ENV)];

export interface StepInput {
  cmd: string;
  args: string[];
  timeoutMs: number;
  maxOutputBytes: number;
  /** How long leftover processes may run after the step before they are killed. */
  settleMs: number;
  env?: Record<string, string>;
  /**
   * Install scripts, run one after another as npm runs them (lifecycle.ts) in place of `cmd`:
   * the first that fails ends the step.
   */
  scripts?: ScriptRun[];
  /**
   * A harness step (harness.ts): its progress and result come on a channel of their own, and an
   * exercise is started again past what ended or stalled it (supervise.ts).
   */
  harness?: boolean;
  /**
   * The project's other packages are locked for the step: every file and folder under
   * `<project>/node_modules` is made root's (readable, not writable, by the package's user)
   * except the folders in `own` (the step's package and what it bundles) and the top
   * `node_modules` folder itself (where installers keep caches such as .prisma). `watch` are the
   * files a package could still replace to act in a later step under another package's name
   * (npm's configuration, the project's manifest, bin links): a change there is reported.
   */
  guard?: {
    project: string;
    own: string[];
    watch: string[];
    /** Paths (and what is below them) named before any other when more changed than are listed. */
    first?: string[];
  };
}

export interface Leftover {
  pid: number;
  cmd: string;
}

export interface StepOutput {
  start: number;
  end: number;
  /** When the leftovers were gone (or killed); equals `end` when there were none. */
  settledAt: number;
  code: number | null;
  signal: string | null;
  timedOut: boolean;
  error: string | null;
  stdout: string;
  stderr: string;
  stdoutBytes: number;
  stderrBytes: number;
  /** Processes still running when the step ended (at most 50 listed). */
  leftovers: Leftover[];
  leftoverCount: number;
  /** Leftovers still running at the end of the settle window, killed. */
  killed: number;
  /** Processes of the package's user that could not be killed (the step's end is not clean). */
  survivors: number;
  /** Processes of the package's user found alive before the step started, killed then. */
  strays?: number;
  /** A harness step's result, as the harness said it on its channel (display only). */
  harness?: HarnessResult;
  /** Times an exercise was started again past a work item that ended or stalled it. */
  resumed?: number;
  /** Files under the guard that the step changed, created or removed (at most 20 listed). */
  modified?: { count: number; paths: string[] };
}

/**
 * Make the project's packages root's but the step's own: the package's user can read them and
 * run them, never change them, rename them or add files to them (the folders are root's too), so
 * no step can plant code in another package. Done before every step, so files a package wrote
 * in its own folder are locked before the next step starts. Needs CAP_CHOWN.
 */
function lockProject(guard: NonNullable<StepInput['guard']>): void {
  const own = new Set(guard.own.map((p) => p.replace(/\/+$/, '')));
  const top = `${guard.project}/node_modules`;
  const set = (path: string, uid: number, gid: number) => {
    try {
      const st = lstatSync(path);
      // A hard link is never handed to the package's user: it may be another package's file
      // (where the kernel allows linking files one does not own).
      const [u, g] = st.nlink > 1 && !st.isDirectory() ? [0, 0] : [uid, gid];
      if (st.uid !== u || st.gid !== g) lchownSync(path, u, g);
      // What becomes root's stays readable (and runnable) for the package's user: a file its
      // install wrote 0600 must still load in a later step. It is never writable by others: a
      // folder a package made 0777 (or sticky 1777) while it was its own would take files from
      // any later step; set-id bits go too.
      if (u === 0 && !st.isSymbolicLink()) {
        const mode = st.mode & 0o7777;
        const other = (mode & 0o400 ? 0o004 : 0) | (mode & 0o100 || st.isDirectory() ? 0o001 : 0);
        const locked = (mode | other) & ~0o7022;
        if (locked !== mode) chmodSync(path, locked);
      }
    } catch {
      // gone meanwhile
    }
  };
  // The project folder and the top node_modules stay open for new entries (installers keep
  // caches there, such as node_modules/.prisma) but are root's and sticky, as /tmp is: the
  // package's user cannot rename or remove what it does not own, so no package folder can be
  // swapped for another.
  const sticky = (path: string) => {
    try {
      const st = lstatSync(path);
      if (!st.isDirectory()) return;
      if (st.uid !== 0 || st.gid !== 0) lchownSync(path, 0, 0);
      if ((st.mode & 0o7777) !== 0o1777) chmodSync(path, 0o1777);
    } catch {
      // no node_modules: no dependencies
    }
  };
  const visit = (path: string, inOwn: boolean) => {
    // The packages a step's own package depends on, nested in its node_modules, are other
    // packages with steps of their own: never the step's (unless listed, as what it bundles), so
    // a dependent's script cannot rewrite a dependency's code before the dependency's step runs
    // it under the dependency's name. Their node_modules folder is root's too and takes no new
    // entries: a folder added there would shadow, for the packages nested in it, a dependency
    // hoisted above (require() looks there first).
    const nested = inOwn && !own.has(path) && path.endsWith('/node_modules');
    const mine = !nested && (inOwn || own.has(path));
    // A package's own folder itself is root's and sticky, as /tmp is: the package changes, adds
    // and removes its own files, but cannot rename that node_modules away and put a folder of
    // its own where a nested package's step will look.
    if (path === top || (own.has(path) && !inOwn)) sticky(path);
    else set(path, ...((mine ? [PACKAGE_UID, PACKAGE_GID] : [0, 0]) as [number, number]));
    let entries: Dirent[];
    try {
      entries = readdirSync(path, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const child = `${path}/${e.name}`;
      if (e.isDirectory()) visit(child, mine);
      else set(child, ...((mine ? [PACKAGE_UID, PACKAGE_GID] : [0, 0]) as [number, number]));
    }
  };
  sticky(guard.project);
  if (locked?.project === guard.project) {
    // The rest of the tree is root's since an earlier step of this driver, and the package's user
    // cannot change that: only what the last step was given, and what the package's user made at
    // the top of node_modules (a cache folder), need locking again. Much cheaper than the whole
    // tree on every step of an audit's hundreds.
    for (const p of locked.own) visit(p, false);
    let names: Dirent[] = [];
    try {
      names = readdirSync(top, { withFileTypes: true });
    } catch {
      // no node_modules
    }
    for (const e of names) {
      const child = `${top}/${e.name}`;
      try {
        if (lstatSync(child).uid !== 0) visit(child, false);
      } catch {
        // gone meanwhile
      }
    }
    for (const p of own) visit(p, false);
  } else visit(top, false);
  for (const f of ['package.json', 'package-lock.json']) set(`${guard.project}/${f}`, 0, 0);
  locked = { project: guard.project, own: [...own] };
}

/** What lockProject did last in this driver: the project locked, and the folders it handed out. */
let locked: { project: string; own: string[] } | undefined;

/** How many watched files a snapshot records at most. */
const SNAPSHOT_MAX_ENTRIES = 100_000;

/**
 * What the watched files are: a symlink by where it points (npm makes bin links again on every
 * rebuild), a file by inode, size, mode, mtime and ctime (a rewrite whose mtime was set back still
 * moves ctime), a folder by the files in it.
 */
function snapshot(guard: NonNullable<StepInput['guard']>): Map<string, string> {
  const out = new Map<string, string>();
  const visit = (path: string, depth: number) => {
    // A package that fills the watched folders past the bound has changed them: the marker's
    // appearance is a change like any other.
    if (out.size >= SNAPSHOT_MAX_ENTRIES) {
      out.set(`${guard.project}/(more than ${SNAPSHOT_MAX_ENTRIES} watched files)`, 'bound');
      return;
    }
    let st: ReturnType<typeof lstatSync>;
    try {
      st = lstatSync(path, { bigint: true });
    } catch {
      return;
    }
    if (st.isSymbolicLink()) {
      let to = '';
      try {
        to = readlinkSync(path);
      } catch {
        // gone meanwhile
      }
      out.set(path, `link:${to}`);
      return;
    }
    if (!st.isDirectory()) {
      out.set(path, `${st.ino}:${st.size}:${st.mode}:${st.mtimeNs}:${st.ctimeNs}`);
      return;
    }
    // A folder is what it holds: one made and left empty (node-gyp's cache after a failed header
    // download) changes nothing a later step would run.
    if (depth <= 0) return;
    let names: string[] = [];
    try {
      names = readdirSync(path);
    } catch {
      return;
    }
    for (const n of names) visit(`${path}/${n}`, depth - 1);
  };
  for (const w of guard.watch) visit(w.replace(/\/+$/, ''), 16);
  // The top node_modules: a package folder that appears there (not a dot folder) could shadow
  // a package another step looks for.
  const top = `${guard.project}/node_modules`;
  let names: string[] = [];
  try {
    names = readdirSync(top);
  } catch {
    // no dependencies
  }
  for (const n of names) {
    // A new cache folder (node_modules/.prisma) is not a change; a package folder that appears
    // could shadow one another step looks for.
    if (n.startsWith('.')) continue;
    out.set(`${top}/${n}`, 'entry');
  }
  return out;
}

function changes(before: Map<string, string>, after: Map<string, string>): string[] {
  const changed: string[] = [];
  for (const [path, id] of after) if (before.get(path) !== id) changed.push(path);
  for (const path of before.keys()) if (!after.has(path)) changed.push(path);
  return changed.sort();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const POLL_MS = 100;

/** Every process of the package's user with a thread still alive (any uid not root is the package's). */
export function packageProcesses(): Leftover[] {
  const out: Leftover[] = [];
  for (const pid of pids()) {
    if (pid === process.pid) continue;
    const ids = uids(pid);
    if (!ids || ids.every((u) => u === 0) || !liveThreads(pid)) continue;
    out.push({ pid, cmd: cmdline(pid) });
  }
  return out;
}

function signalAll(list: Leftover[], signal: NodeJS.Signals): void {
  for (const p of list) {
    try {
      process.kill(p.pid, signal);
    } catch {
      // already gone
    }
  }
}

/**
 * kill(-1, SIGKILL) from the package's own uid: the kernel signals every process of that uid at
 * once, under the lock fork takes, so even a chain that forks faster than /proc can be read (each
 * link gone before its status file is opened) is caught, and a process with SIGKILL pending
 * cannot fork. (Its exit status says nothing: kill(-1) succeeds as soon as any other process
 * exists, even one it may not signal.)
 */
function killAllAsPackageUser(): void {
  spawnSync('/bin/kill', ['-KILL', '--', '-1'], {
    uid: PACKAGE_UID,
    gid: PACKAGE_GID,
    env: {},
    stdio: 'ignore',
    // A package process may stop the killer (it is of the package's uid); the root loop below
    // still kills what it can see, and tries again.
    timeout: 2000,
    killSignal: 'SIGKILL',
  });
}

/**
 * Stop what can be seen, kill every process of the package's user from inside its uid, then kill
 * again what is still seen, until none is left. A signal to a thread group reaches every thread,
 * also when its leader is a zombie.
 */
export async function killPackageProcesses(
  sweep = true,
): Promise<{ killed: number; survivors: number }> {
  const seen = packageProcesses();
  if (!sweep && seen.length === 0) return { killed: 0, survivors: 0 };
  signalAll(seen, 'SIGSTOP');
  killAllAsPackageUser();
  signalAll(seen, 'SIGKILL');
  for (let round = 0; round < 100; round++) {
    const alive = packageProcesses();
    if (alive.length === 0) return { killed: seen.length, survivors: 0 };
    signalAll(alive, 'SIGSTOP');
    killAllAsPackageUser();
    signalAll(packageProcesses(), 'SIGKILL');
    await sleep(round < 10 ? 10 : 50);
  }
  return { killed: seen.length, survivors: packageProcesses().length };
}

/** Whether this driver already swept the package's uid (see runStep). */
let swept = false;

/**
 * The install scripts' parent's input: each script with its environment, made here (as root,
 * from what the host staged) rather than by the parent. A script npm could not start (a NUL byte
 * in it or in its environment) fails the step, as it fails npm.
 */
function scriptsInput(
  base: Record<string, string | undefined>,
  runs: ScriptRun[],
): { env: Record<string, string | undefined>; runs: object[] } | { error: string } {
  // npm's own environment, as a shell that ran `npm install` in the project gives it.
  const env = { ...base, PWD: SANDBOX_DIR, SHLVL: '1', _: NPM_BIN };
  try {
    const out = runs.map((r) => {
      const e = scriptEnv(env, r);
      for (const [k, v] of Object.entries(e))
        if (k.includes('\0') || v?.includes('\0'))
          throw new Error(
            `${r.event} of ${r.path}: a NUL byte in its environment (${k.slice(0, 40)})`,
          );
      if (r.command.includes('\0'))
        throw new Error(`${r.event} of ${r.path}: a NUL byte in its script`);
      return { path: r.path, command: r.command, env: e };
    });
    return { env, runs: out };
  } catch (e) {
    return { error: (e as Error).message.slice(0, 300) };
  }
}

/** Run one step and say how it went. */
export async function runStep(input: StepInput): Promise<StepOutput> {
  // Nothing of an earlier step may act in this one. The end of every step of this driver swept
  // the package's uid with kill(-1), so after the first step a look at /proc is enough.
  const before = await killPackageProcesses(!swept);
  swept = true;
  if (input.guard) lockProject(input.guard);
  const files = input.guard ? snapshot(input.guard) : undefined;
  const head = { out: [] as Buffer[], err: [] as Buffer[] };
  const size = { out: 0, err: 0 };
  const keepHead = (k: 'out' | 'err') => (d: Buffer) => {
    if (size[k] < input.maxOutputBytes) head[k].push(d.subarray(0, input.maxOutputBytes - size[k]));
    size[k] += d.length;
  };
  const start = now();
  const env: Record<string, string | undefined> = { ...process.env, ...input.env };
  for (const k of AGENT_ONLY_ENV) delete env[k];
  // The harness gets a channel on descriptor 3; the scripts' parent its input on standard input.
  const launch = (
    e: Record<string, string | undefined>,
    stdio: 'harness' | 'input' | 'output',
    cmd = input.cmd,
    args = input.args,
  ) =>
    spawn(cmd, args, {
      stdio:
        stdio === 'harness'
          ? ['pipe', 'pipe', 'pipe', 'pipe']
          : [stdio === 'input' ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      detached: true,
      // As the package's user: from here on the step can neither signal nor read phonehome's
      // processes (libuv also drops the supplementary groups).
      uid: PACKAGE_UID,
      gid: PACKAGE_GID,
      env: e,
    });
  let timedOut = false;
  // Awaited before the step ends: a kill still going on would take the next step's processes.
  let killing: Promise<unknown> = Promise.resolve();
  const timer = setTimeout(() => {
    timedOut = true;
    killing = killPackageProcesses();
  }, input.timeoutMs);
  let ran: Supervised;
  let end: number;
  if (input.harness) {
    ran = await superviseHarness((e) => launch(e, 'harness'), env, {
      stopped: () => timedOut,
      out: keepHead('out'),
      err: keepHead('err'),
      between: () => killPackageProcesses(),
    });
    end = now();
  } else {
    // Install scripts run under a parent of the package's own (npm-install.ts), as under npm.
    const scripts = input.scripts ? scriptsInput(env, input.scripts) : undefined;
    let closed: Promise<unknown> = Promise.resolve();
    if (scripts && 'error' in scripts) ran = { code: null, signal: null, error: scripts.error };
    else {
      const child = scripts
        ? launch(scripts.env, 'input', REAL_NODE, [
            '--disable-sigusr1',
            `${AGENT_DIR}/npm-install.js`,
          ])
        : launch(env, 'output');
      closed = new Promise((r) => child.on('close', r));
      child.stdout?.on('data', keepHead('out'));
      child.stderr?.on('data', keepHead('err'));
      if (scripts) {
        child.stdin?.on('error', () => undefined);
        child.stdin?.end(JSON.stringify(scripts.runs));
      }
      ran = await new Promise<Supervised>((resolve) => {
        child.on('error', (e) => resolve({ code: null, signal: null, error: e.message }));
        // 'exit', not 'close': a detached child that inherited the pipes would hold 'close' open.
        child.on('exit', (c, s) => resolve({ code: c, signal: s, error: null }));
      });
    }
    end = now();
    // Let the output already written drain, without waiting on a leftover that holds the pipes.
    await Promise.race([closed, sleep(200)]);
  }
  clearTimeout(timer);
  await killing;
  const { code, signal, error } = ran;

  const left = packageProcesses();
  if (left.length > 0) {
    const until = timedOut ? end : end + input.settleMs;
    while (now() < until && packageProcesses().length > 0) await sleep(POLL_MS);
  }
  // Always, also when nothing is listed: a chain that forks faster than /proc is read is not.
  const ended = await killPackageProcesses();
  const changed = files && input.guard ? changes(files, snapshot(input.guard)) : [];
  const first = input.guard?.first ?? [];
  const early = (p: string) => first.some((f) => p === f || p.startsWith(`${f}/`));
  const modified = [...changed.filter(early), ...changed.filter((p) => !early(p))];
  const out: StepOutput = {
    start,
    end,
    settledAt: now(),
    code,
    signal,
    timedOut,
    error,
    stdout: Buffer.concat(head.out).toString(),
    stderr: Buffer.concat(head.err).toString(),
    stdoutBytes: size.out,
    stderrBytes: size.err,
    leftovers: left.slice(0, 50),
    leftoverCount: left.length,
    killed: ended.killed,
    survivors: ended.survivors + before.survivors,
    ...(before.killed ? { strays: before.killed } : {}),
    ...(ran.result ? { harness: ran.result } : {}),
    ...(ran.resumed ? { resumed: ran.resumed } : {}),
    ...(modified.length
      ? { modified: { count: modified.length, paths: modified.slice(0, 20) } }
      : {}),
  };
  return out;
}
