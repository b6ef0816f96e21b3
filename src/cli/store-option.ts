import { loadPolicy, type LoadedPolicy } from '../policy/load.js';
import { defaultStorePath, ResultStore } from '../store/store.js';

/** The store named by --store, or the default one in the cache folder. */
export function openStore(path: string | undefined): ResultStore {
  return ResultStore.open(path ?? defaultStorePath());
}

/** The policy named by --policy and --policy-override, or found from the working directory. */
export function policyFromFlags(o: { policy?: string; policyOverride?: string }): LoadedPolicy {
  return loadPolicy({
    ...(o.policy ? { file: o.policy } : {}),
    ...(o.policyOverride ? { override: o.policyOverride } : {}),
  });
}
