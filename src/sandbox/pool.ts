/**
 * Several Docker engines used as one pool by an audit: each engine that answers gets the sandbox
 * images (transferred from an engine that has them, and checked by image id, or built on the
 * first when none has), and runs as many sandboxes at once as its machine allows. The audit hands
 * shards to whichever engine has a free slot; a shard whose engine stops answering goes back in
 * the queue for the others (src/audit/audit.ts).
 */
import { buildImages } from '../images/build.js';
import { imageRefs, resolveVersions } from '../images/inputs.js';
import { PhonehomeError } from '../core/errors.js';
import type { ImageStore, SandboxEngine } from './sandbox.js';

export interface PoolMember {
  engine: SandboxEngine;
  images: ImageStore;
  /** Sandboxes at once on this engine. */
  slots: number;
  /** Set when the engine stopped answering: it takes no more shards. */
  failed?: string;
}

/** About 1.5 GB of memory per sandbox, at most four per engine (as on one machine). */
export function slotsFor(cap: { cpus: number; memoryBytes: number }, asked?: number): number {
  if (asked) return Math.max(1, asked);
  const byMemory = cap.memoryBytes ? Math.floor(cap.memoryBytes / (1.5 * 1024 ** 3)) : 1;
  return Math.max(1, Math.min(4, cap.cpus, byMemory));
}

/** Whether the engine answers within `ms`. */
export async function answers(engine: SandboxEngine, ms = 10_000): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      engine.info().then(() => true),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
    ]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

export async function preparePool(
  sandboxes: { engine: SandboxEngine; images: ImageStore }[],
  o: { concurrency?: number; log: (line: string) => void },
): Promise<{ members: PoolMember[]; refs: { runner: string; gateway: string } }> {
  // Engines that answer; one that does not is left out and said so, the audit goes on without it.
  type Reached = {
    engine: SandboxEngine;
    images: ImageStore;
    cap?: { cpus: number; memoryBytes: number };
    error?: Error;
  };
  const reached: Reached[] = await Promise.all(
    sandboxes.map(async (s): Promise<Reached> => {
      try {
        await s.engine.info();
        return { ...s, cap: await s.engine.capacity() };
      } catch (e) {
        return { ...s, error: e as Error };
      }
    }),
  );
  const up = reached.filter(
    (r): r is Reached & { cap: { cpus: number; memoryBytes: number } } => r.cap !== undefined,
  );
  for (const r of reached)
    if (!r.cap) o.log(`[engines] ${r.engine.name} does not answer (${r.error?.message}): left out`);
  if (!up.length) throw reached[0]?.error ?? new PhonehomeError('EDOCKER_UNREACHABLE');

  // The images: from the first engine that has both, else built on the first that answers.
  const status = await Promise.all(
    up.map(async (m) => {
      const refs = imageRefs(resolveVersions());
      const [runner, gateway] = await Promise.all([
        m.images.inspect(refs.runner),
        m.images.inspect(refs.gateway),
      ]);
      return {
        refs,
        ids: runner && gateway ? { runner: runner.id, gateway: gateway.id } : undefined,
      };
    }),
  );
  let source = status.findIndex((s) => s.ids);
  if (source === -1) {
    source = 0;
    await buildImages((up[0] as (typeof up)[number]).images, { log: o.log });
  }
  const from = up[source] as (typeof up)[number];
  const { refs } = await buildImages(from.images, { log: o.log });
  const want = status[source]?.ids ?? {
    runner: (await from.images.inspect(refs.runner))?.id,
    gateway: (await from.images.inspect(refs.gateway))?.id,
  };
  const members: PoolMember[] = [];
  for (const [i, m] of up.entries()) {
    if (i !== source && !status[i]?.ids) {
      o.log(`[engines] sending the sandbox images from ${from.engine.name} to ${m.engine.name}`);
      try {
        await m.images.load(await from.images.save([refs.runner, refs.gateway]));
      } catch (e) {
        o.log(
          `[engines] ${m.engine.name}: the images could not be loaded (${(e as Error).message}): left out`,
        );
        continue;
      }
    }
    // Checked by id, not by tag alone: a tag on that engine could name other contents.
    const [runner, gateway] = await Promise.all([
      m.images.inspect(refs.runner),
      m.images.inspect(refs.gateway),
    ]);
    if (runner?.id !== want.runner || gateway?.id !== want.gateway) {
      o.log(
        `[engines] ${m.engine.name}: its ${refs.runner} or ${refs.gateway} is not the image ${from.engine.name} has (another build under the same tag): left out; \`phonehome images build --force\` there, or remove the tags`,
      );
      continue;
    }
    const slots = slotsFor(m.cap, o.concurrency);
    o.log(
      `[engines] ${m.engine.name}: ${m.cap.cpus} CPU(s), ${(m.cap.memoryBytes / 1024 ** 3).toFixed(1)} GB: ${slots} sandbox(es) at once`,
    );
    members.push({ engine: m.engine, images: m.images, slots });
  }
  if (!members.length)
    throw new PhonehomeError('EIMAGE_MISSING', 'No engine of the pool has the sandbox images.');
  return { members, refs };
}
