/** Default time limits of a check (a module of its own so the CLI can show them without loading the runner). */
export const CHECK_DEFAULTS = {
  installTimeoutMs: 180_000,
  importTimeoutMs: 30_000,
  exerciseTimeoutMs: 60_000,
  binTimeoutMs: 10_000,
  settleMs: 10_000,
};
