/**
 * Where staging folders are made, and their removal at exit. Kept apart from stage.ts (which loads
 * arborist and pacote) so the CLI can register the removal without loading them.
 */
import { readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The name every staging folder of this process starts with, in the temp folder. */
export const stagingPrefix = (): string => `phonehome-stage-${process.pid}-`;

/**
 * Remove every staging folder this process made, synchronously: for process exit, when an
 * interrupt can end the process between a folder's creation and the code that would remove it.
 */
export function removeOwnStagingDirs(): void {
  const prefix = stagingPrefix();
  let names: string[] = [];
  try {
    names = readdirSync(tmpdir());
  } catch {
    return;
  }
  for (const n of names)
    if (n.startsWith(prefix)) rmSync(join(tmpdir(), n), { recursive: true, force: true });
}
