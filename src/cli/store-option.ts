import { defaultStorePath, ResultStore } from '../store/store.js';

/** The store named by --store, or the default one in the cache folder. */
export function openStore(path: string | undefined): ResultStore {
  return ResultStore.open(path ?? defaultStorePath());
}
