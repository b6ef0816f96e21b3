/**
 * Run each tarball once, however many processes (on however many machines sharing a store) ask
 * for it at once: a process claims the keys it is about to run, renews its claims while it runs,
 * and waits for the keys another process holds until their results are stored, or until their
 * claims lapse (the holder crashed) and it may take them itself.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CheckReport } from '../core/report.js';
import type { ResultStore, RunKey, StoredRun } from './types.js';

/** How long a claim holds without renewal: longer than any pause of a live holder. */
export const CLAIM_LEASE_MS = 5 * 60_000;
/** How often a waiting process looks for the result another holds. */
export const CLAIM_POLL_MS = 2_000;
/**
 * How long a process waits for results another holds before it runs those tarballs itself: a
 * holder that renews its claims but never stores a result (it hangs, or it is not phonehome) must
 * not hold an audit up for ever. Running a tarball twice costs time, never a wrong answer.
 */
export const CLAIM_WAIT_MS = 30 * 60_000;

export type Found = { run: StoredRun; report: CheckReport };

export class Claims implements AsyncDisposable {
  readonly owner = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  private readonly held = new Map<string, RunKey>();
  private readonly timer: NodeJS.Timeout;
  private renewing: Promise<unknown> = Promise.resolve();
  private waitingSince: number | undefined;

  constructor(
    private readonly store: ResultStore,
    private readonly o: {
      leaseMs?: number;
      pollMs?: number;
      waitMs?: number;
      signal?: AbortSignal;
    } = {},
  ) {
    const lease = o.leaseMs ?? CLAIM_LEASE_MS;
    // Renewed at a third of the lease: a holder that is alive never loses its claims. One renewal
    // at a time (a slow store must not pile them up), and a key whose claim was lost meanwhile
    // (the lease ran out and another process took it) is no longer this process's to renew.
    this.timer = setInterval(() => {
      this.renewing = this.renewing.then(async () => {
        const keys = [...this.held.values()];
        if (!keys.length) return;
        const got = await this.store.claim(keys, this.owner, lease).catch(() => undefined);
        if (got) keys.forEach((k, i) => got[i] || this.held.delete(keyText(k)));
      });
    }, lease / 3);
    this.timer.unref();
  }

  /** Claim these keys: `mine` to run now, `others` held by another process. */
  async take(keys: RunKey[]): Promise<{ mine: RunKey[]; others: RunKey[] }> {
    const got = await this.store.claim(keys, this.owner, this.o.leaseMs ?? CLAIM_LEASE_MS);
    const mine: RunKey[] = [];
    const others: RunKey[] = [];
    keys.forEach((k, i) => {
      if (got[i]) {
        this.held.set(keyText(k), k);
        mine.push(k);
      } else others.push(k);
    });
    return { mine, others };
  }

  /** Done with these keys (their results are stored, or their run failed and others may try). */
  async release(keys: RunKey[]): Promise<void> {
    for (const k of keys) this.held.delete(keyText(k));
    // A renewal under way may still hold these keys: let it land first, or it would claim them
    // again after the release, and others would wait a whole lease for nothing.
    await this.renewing;
    await this.store.release(keys, this.owner);
  }

  /**
   * Wait for keys another process holds: each result is handed to `found` as it is stored. Returns
   * as soon as some keys' claims lapsed without a result: those are claimed (`run`, for the caller
   * to run) and the rest still held elsewhere (`waiting`, to wait for after). Both empty: every
   * key was found. Past the wait bound (`waitMs`, counted from the first call), the keys still
   * held elsewhere are handed back to run, claimed or not.
   */
  async await(
    keys: RunKey[],
    found: (k: RunKey, hit: Found) => void,
  ): Promise<{ run: RunKey[]; waiting: RunKey[] }> {
    this.waitingSince ??= Date.now();
    let waiting = keys;
    while (waiting.length) {
      const still: RunKey[] = [];
      for (const k of waiting) {
        const hit = await this.store.find(k);
        if (hit) found(k, hit);
        else still.push(k);
      }
      if (!still.length) break;
      const { mine, others } = await this.take(still);
      const run: RunKey[] = [];
      for (const k of mine) {
        // The holder may have stored the result between the look and the claim.
        const hit = await this.store.find(k);
        if (hit) {
          found(k, hit);
          await this.release([k]);
        } else run.push(k);
      }
      if (run.length) return { run, waiting: others };
      if (others.length && Date.now() - this.waitingSince > (this.o.waitMs ?? CLAIM_WAIT_MS))
        return { run: others, waiting: [] };
      waiting = others;
      if (waiting.length)
        await sleep(this.o.pollMs ?? CLAIM_POLL_MS, undefined, {
          ...(this.o.signal ? { signal: this.o.signal } : {}),
        });
    }
    return { run: [], waiting: [] };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    clearInterval(this.timer);
    await this.renewing;
    const keys = [...this.held.values()];
    this.held.clear();
    if (keys.length) await this.store.release(keys, this.owner).catch(() => undefined);
  }
}

export const keyText = (k: RunKey): string =>
  [k.name, k.version, k.integrity, k.sandbox].join('\u0000');
