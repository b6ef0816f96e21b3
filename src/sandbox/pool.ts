/**
 * Several Docker engines used as one pool by an audit: each engine that answers gets the sandbox
 * images of the first engine listed (built there when it lacks them, sent to the others, and
 * checked by image id), and runs as many sandboxes at once as its machine allows. The audit hands
 * shards to whichever engine has a free slot; a shard whose engine stops answering goes back in
 * the queue for the others (src/audit/audit.ts).
 */
import { buildImages } from '../images/build.js';
import { imageRefs, resolveVersions } from '../images/inputs.js';
import { PhonehomeError } from '../core/errors.js';
import type { EngineCapacity, ImageStore, SandboxEngine } from './sandbox.js';

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

/** `work`, or a rejection once `ms` have passed. */
async function within<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>(
        (_, reject) =>
          (timer = setTimeout(
            () =>
              reject(
                new PhonehomeError('EDOCKER_UNREACHABLE', `${what}: no answer in ${ms / 1000} s.`),
              ),
            ms,
          )),
      ),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The engines listed first is the pool's source of images (with the default engine, the machine's
 * own): the others must have its images, by id, or are sent them. An engine whose images differ
 * is left out; its content never replaces the source's.
 */
export async function preparePool(
  sandboxes: { engine: SandboxEngine; images: ImageStore }[],
  o: { concurrency?: number; log: (line: string) => void },
): Promise<{ members: PoolMember[]; refs: { runner: string; gateway: string } }> {
  const refs = imageRefs(resolveVersions());
  type Member = { engine: SandboxEngine; images: ImageStore; cap: EngineCapacity };
  const reached = await Promise.all(
    sandboxes.map(async (s) => {
      try {
        await within(s.engine.info(), ANSWER_MS, s.engine.name);
        return { ...s, cap: await within(s.engine.capacity(), ANSWER_MS, s.engine.name) };
      } catch (e) {
        o.log(`[engines] ${s.engine.name} does not answer (${(e as Error).message}): left out`);
        return { ...s, error: e as Error };
      }
    }),
  );
  // Two addresses of one daemon are one engine (its slots counted once).
  const up: Member[] = [];
  const ids = new Map<string, string>();
  for (const r of reached) {
    if (!('cap' in r) || !r.cap) continue;
    const twin = r.cap.id ? ids.get(r.cap.id) : undefined;
    if (twin) {
      o.log(`[engines] ${r.engine.name} is the daemon of ${twin}: counted once`);
      continue;
    }
    if (r.cap.id) ids.set(r.cap.id, r.engine.name);
    up.push(r as Member);
  }
  const source = up[0];
  if (!source || sandboxes[0]?.engine !== source.engine) {
    const first = reached[0];
    throw first && 'error' in first && first.error
      ? first.error
      : new PhonehomeError('EDOCKER_UNREACHABLE', 'The first engine of the pool does not answer.');
  }
  await buildImages(source.images, { log: o.log });
  const want = await Promise.all([
    source.images.inspect(refs.runner),
    source.images.inspect(refs.gateway),
  ]);
  if (!want[0] || !want[1])
    throw new PhonehomeError('EIMAGE_MISSING', `${source.engine.name} has no sandbox images.`);
  const [runnerId, gatewayId] = [want[0].id, want[1].id];
  const members: PoolMember[] = [];
  for (const m of up) {
    try {
      const has = async () => {
        const [runner, gateway] = await Promise.all([
          within(m.images.inspect(refs.runner), ANSWER_MS, m.engine.name),
          within(m.images.inspect(refs.gateway), ANSWER_MS, m.engine.name),
        ]);
        return { runner, gateway };
      };
      let now = await has();
      if (m !== source && (!now.runner || !now.gateway)) {
        o.log(
          `[engines] sending the sandbox images from ${source.engine.name} to ${m.engine.name}`,
        );
        await m.images.load(await source.images.save([refs.runner, refs.gateway]));
        now = await has();
      }
      // Checked by id, not by tag alone: a tag on that engine could name other contents.
      if (now.runner?.id !== runnerId || now.gateway?.id !== gatewayId) {
        o.log(
          `[engines] ${m.engine.name}: its ${refs.runner} or ${refs.gateway} is not the image ${source.engine.name} has (another build, or altered): left out; remove those tags there and run again`,
        );
        continue;
      }
    } catch (e) {
      o.log(
        `[engines] ${m.engine.name}: the images could not be checked or sent (${(e as Error).message}): left out`,
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

/** How long an engine of the pool has to answer a question (not a transfer). */
const ANSWER_MS = 15_000;
