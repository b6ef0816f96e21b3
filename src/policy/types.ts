/**
 * The policy model once loaded and validated. Files (policy, override, declaration, shipped
 * lists) are parsed into these shapes; evaluation works only on them.
 *
 * - rule: an `allow` or `deny` list of destinations, optionally scoped to packages (name and
 *   semver range) and phases. The first rule that matches an attempt decides it.
 * - declaration: the `egress` field of a package's own package.json: the destinations its author
 *   says it needs, per phase. Evidence, not trust: it allows egress only when the policy lets
 *   declarations count, and never silences an indicator.
 * - known egress: shipped rules for popular packages' documented downloads, each with a source.
 * - indicator: a signature or behaviour rule (exfiltration channels, raw IPs, data in DNS names,
 *   …) with an id, a severity and a rationale, shipped as data in policies/indicators.json.
 */
import { SEVERITIES, type Phase, type Severity } from '../core/terms.js';
import type { DestinationPattern } from './destination.js';

export { SEVERITIES, type Severity };

/** Phases as written in files: `runtime` means import and exercise. */
export type PhaseName = Phase | 'runtime';
export const PHASE_NAMES: readonly PhaseName[] = ['install', 'import', 'exercise', 'runtime'];

export function expandPhases(names: readonly PhaseName[]): Phase[] {
  const out = new Set<Phase>();
  for (const n of names) {
    if (n === 'runtime') {
      out.add('import');
      out.add('exercise');
    } else out.add(n);
  }
  return [...out];
}

/** What happens to egress that nothing allows or denies: deny = high, warn = medium, allow = info. */
export type DefaultAction = 'deny' | 'warn' | 'allow';

/** `name`, `name@range`, `@scope/*`: which packages a rule is about. */
export interface PackageScope {
  text: string;
  name: string;
  range?: string;
}

export interface PolicyRule {
  action: 'allow' | 'deny';
  destinations: DestinationPattern[];
  /** Absent: every package, including attempts no package could be charged with. */
  packages?: PackageScope[];
  /** Absent: every phase. */
  phases?: Phase[];
  why?: string;
  /** Where it was written, as `file:line` (or the shipped entry's id and source). */
  origin: string;
}

export interface Policy {
  /** Files the policy was read from, in merge order (base first). Empty: the shipped defaults. */
  sources: string[];
  defaults: Record<Phase, DefaultAction>;
  /** How a package's own declaration counts. */
  declarations: 'allow' | 'warn' | 'ignore';
  /** Whether the shipped known-egress list allows what it lists. */
  knownEgress: boolean;
  /**
   * Runtime egress to the package's own vendor's domain (see policy/vendor.ts): warn = low,
   * allow = info, deny = no excuse (the phase's default decides).
   */
  ownVendor: 'warn' | 'allow' | 'deny';
  /**
   * With `--against`: what a destination that is new since the earlier version is, per phase
   * (deny = high, warn = medium, allow = info).
   */
  changes: Record<Phase, DefaultAction>;
  /** Severity overrides of indicators by id; `off` turns one off (locked ones cannot be lowered). */
  indicators: Record<string, Severity | 'off'>;
  rules: PolicyRule[];
  /** sha256 of the normalized policy, so a stored result says which policy judged it. */
  hash: string;
}

export interface KnownEgressEntry extends PolicyRule {
  id: string;
  source: string;
  /**
   * Instead of `packages`: any package that depends directly on the helper `package` (both
   * vouched for by a registry) and, with `bins`, whose install script runs one of the helper's
   * bins, as funding messages do; without `bins`, the helper's own run-time requests (update
   * checks).
   */
  via?: { package: string; bins?: string[] };
  /**
   * Indicators the entry explains, with the severity they keep: even one that forbids allowing
   * (a cloud SDK's metadata probe). Only for entries naming their packages, vouched for.
   */
  explains?: Record<string, Severity>;
  /** The requests `explains` holds for: plain HTTP, this method, one of these paths exactly. */
  explainsWhen?: { method: string; paths: string[] };
}

/** A package's `egress` declaration, parsed. */
export interface Declaration {
  /** Destinations per phase (`runtime` expanded). */
  byPhase: Partial<Record<Phase, DestinationPattern[]>>;
  /** What was wrong with the field; those entries are ignored. */
  problems: string[];
}
