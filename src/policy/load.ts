/**
 * Finding, reading and merging policies. Layers, lowest first:
 *   1. policies/default.policy.yaml (shipped),
 *   2. the consumer's policy: --policy, or the first phonehome.policy.{yaml,yml,json} found from
 *      the working directory up to the file system root,
 *   3. an override: --policy-override, or phonehome.policy.override.{yaml,yml,json} next to the
 *      policy file.
 * A higher layer replaces settings key by key (defaults per phase, indicators per id) and puts
 * its rules before the rules below it, so the override's rules are tried first.
 */
import type { ResultStore } from '../store/store.js';
import { maliciousIntel, type MaliciousIntel } from './malicious.js';
import type { SharedHosts } from './vendor.js';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { PhonehomeError } from '../core/errors.js';
import { PHASES, SEVERITIES, type Severity } from '../core/terms.js';
import { packageRoot } from '../paths.js';
import { parseDestination } from './destination.js';
import { compileIndicators, type Indicator } from './indicators.js';
import { parsePackageScope, parsePolicyLayer, type PolicyLayer } from './parse.js';
import { readStructured, type Problem } from './source.js';
import {
  expandPhases,
  PHASE_NAMES,
  type KnownEgressEntry,
  type PhaseName,
  type Policy,
} from './types.js';

export const POLICY_FILE_NAMES = [
  'phonehome.policy.yaml',
  'phonehome.policy.yml',
  'phonehome.policy.json',
];
const OVERRIDE_FILE_NAMES = POLICY_FILE_NAMES.map((n) =>
  n.replace('.policy.', '.policy.override.'),
);

export function shippedDir(): string {
  return join(packageRoot(), 'policies');
}

/** The first policy file from `cwd` up, or undefined. */
export function findPolicyFile(cwd: string): string | undefined {
  let dir = resolve(cwd);
  for (;;) {
    const found = POLICY_FILE_NAMES.map((n) => join(dir, n)).filter((p) => existsSync(p));
    if (found.length > 1)
      throw new PhonehomeError('EPOLICY', `More than one policy file: ${found.join(', ')}.`, {
        fix: 'Keep one of them, or name one with --policy.',
      });
    if (found[0]) return found[0];
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

let indicatorCache: Indicator[] | undefined;
export function shippedIndicators(): Indicator[] {
  indicatorCache ??= compileIndicators(
    JSON.parse(readFileSync(join(shippedDir(), 'indicators.json'), 'utf8')),
  );
  return indicatorCache;
}

let knownCache: KnownEgressEntry[] | undefined;
/** The shipped known-egress list; a broken list is phonehome's bug, so this throws. */
export function shippedKnownEgress(): KnownEgressEntry[] {
  if (knownCache) return knownCache;
  const file = join(shippedDir(), 'known-egress.json');
  const data = JSON.parse(readFileSync(file, 'utf8')) as { entries?: Record<string, unknown>[] };
  knownCache = (data.entries ?? []).map((e, i) => {
    const where = `known-egress.json: entries[${i}]`;
    const fail = (why: string): never => {
      throw new Error(`${where}: ${why}`);
    };
    if (typeof e.id !== 'string') fail('no id');
    if (typeof e.source !== 'string') fail('no source');
    const destinations = ((e.allow as unknown[]) ?? []).map((d) => {
      const p = parseDestination(String(d));
      return typeof p === 'string' ? fail(p) : p;
    });
    const packages = ((e.packages as unknown[]) ?? []).map((s) => {
      const p = parsePackageScope(String(s));
      return typeof p === 'string' ? fail(p) : p;
    });
    const phases = ((e.phases as unknown[]) ?? []).map((p) =>
      (PHASE_NAMES as readonly unknown[]).includes(p)
        ? (p as PhaseName)
        : fail(`bad phase ${String(p)}`),
    );
    const via = e.via as { package?: unknown; bins?: unknown } | undefined;
    if (
      via !== undefined &&
      (typeof via.package !== 'string' ||
        (via.bins !== undefined &&
          (!Array.isArray(via.bins) ||
            !via.bins.length ||
            !via.bins.every((b) => typeof b === 'string' && /^[a-z0-9._-]+$/.test(b)))))
    )
      fail('via needs a package (and, for install scripts, a list of its bins)');
    const explains = e.explains as Record<string, unknown> | undefined;
    if (
      explains !== undefined &&
      (via !== undefined ||
        typeof explains !== 'object' ||
        !Object.entries(explains).every(
          ([id, s]) =>
            shippedIndicators().some((i) => i.id === id) &&
            (SEVERITIES as readonly unknown[]).includes(s) &&
            s !== 'info',
        ))
    )
      fail('explains names indicators with a severity above info, for an entry with packages');
    const when = e.explainsWhen as { method?: unknown; paths?: unknown } | undefined;
    const explainsWhen =
      when && typeof when.method === 'string' && Array.isArray(when.paths) && when.paths.length
        ? { method: when.method, paths: when.paths.map(String) }
        : undefined;
    if (explains !== undefined && !explainsWhen)
      fail('explains needs explainsWhen: the method and the exact paths it holds for');
    if (!destinations.length || packages.length > 0 === (via !== undefined))
      fail('an entry needs allow, and packages or via');
    return {
      id: e.id as string,
      source: e.source as string,
      action: 'allow' as const,
      destinations,
      ...(via
        ? {
            via: {
              package: via.package as string,
              ...(via.bins ? { bins: via.bins as string[] } : {}),
            },
          }
        : { packages }),
      ...(phases.length ? { phases: expandPhases(phases) } : {}),
      ...(typeof e.why === 'string' ? { why: e.why } : {}),
      ...(explains ? { explains: explains as Record<string, Severity> } : {}),
      ...(explainsWhen ? { explainsWhen } : {}),
      origin: `known-egress:${String(e.id)}`,
    };
  });
  return knownCache;
}

export interface LoadPolicyOptions {
  cwd?: string;
  /** --policy: this file instead of the one found from cwd. */
  file?: string;
  /** --policy-override */
  override?: string;
  /** false: the shipped defaults only, unless `file` is given. */
  discover?: boolean;
}

export interface LoadedPolicy {
  policy: Policy;
  knownEgress: KnownEgressEntry[];
  indicators: Indicator[];
  sharedHosts: SharedHosts;
  /** The imported known-malicious set, when the result store holds one (see withMalicious). */
  malicious?: MaliciousIntel;
}

/** Read and validate one file; problems are returned, not thrown. */
export function readPolicyFile(file: string): { layer: PolicyLayer; problems: Problem[] } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    return {
      layer: { rules: [] },
      problems: [
        {
          where: file,
          path: '',
          message: `cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
          fix: 'Check the path.',
        },
      ],
    };
  }
  const shown = displayName(file);
  // JSON files are held to JSON (no trailing commas, no comments), then read for positions.
  if (file.endsWith('.json')) {
    try {
      JSON.parse(text);
    } catch (e) {
      const at = /position (\d+)/.exec((e as Error).message);
      const offset = at ? Number(at[1]) : 0;
      const before = text.slice(0, offset).split('\n');
      return {
        layer: { rules: [] },
        problems: [
          {
            where: `${shown}:${before.length}:${(before[before.length - 1]?.length ?? 0) + 1}`,
            path: '',
            message: `not valid JSON: ${(e as Error).message}`,
            fix: 'Correct the JSON there (no trailing commas or comments in .json), or write the policy as YAML.',
          },
        ],
      };
    }
  }
  const indicators = shippedIndicators();
  return parsePolicyLayer(
    readStructured(shown, text),
    indicators.map((i) => i.id),
    Object.fromEntries(indicators.filter((i) => i.locked).map((i) => [i.id, i.severity])),
  );
}

/** Shipped files as `phonehome:policies/…`, the user's relative to the working directory. */
function displayName(file: string): string {
  const shipped = relative(shippedDir(), file);
  if (!shipped.startsWith('..')) return `phonehome:policies/${shipped}`;
  const rel = relative(process.cwd(), file);
  return rel && !rel.startsWith('..') ? rel : file;
}

export function formatProblems(problems: Problem[]): string {
  return problems
    .map((p) => `${p.where}: ${p.path ? `${p.path}: ` : ''}${p.message}\n  fix: ${p.fix}`)
    .join('\n');
}

export function mergeLayers(layers: PolicyLayer[], sources: string[]): Policy {
  const policy: Omit<Policy, 'hash'> = {
    sources,
    defaults: { install: 'deny', import: 'deny', exercise: 'deny' },
    changes: { install: 'deny', import: 'warn', exercise: 'warn' },
    declarations: 'allow',
    knownEgress: true,
    ownVendor: 'warn',
    indicators: {},
    rules: [],
  };
  for (const l of layers) {
    policy.defaults = { ...policy.defaults, ...l.defaults };
    policy.changes = { ...policy.changes, ...l.changes };
    if (l.declarations) policy.declarations = l.declarations;
    if (l.knownEgress !== undefined) policy.knownEgress = l.knownEgress;
    if (l.ownVendor) policy.ownVendor = l.ownVendor;
    policy.indicators = { ...policy.indicators, ...l.indicators };
    policy.rules = [...l.rules, ...policy.rules];
  }
  return { ...policy, hash: hashPolicy(policy) };
}

/** What judges a run: the merged settings and rules (not where they were written), and the shipped data. */
function hashPolicy(p: Omit<Policy, 'hash'>): string {
  const h = createHash('sha256');
  h.update(
    JSON.stringify({
      defaults: PHASES.map((ph) => p.defaults[ph]),
      changes: PHASES.map((ph) => p.changes[ph]),
      declarations: p.declarations,
      knownEgress: p.knownEgress,
      ownVendor: p.ownVendor,
      indicators: Object.entries(p.indicators).sort(),
      rules: p.rules.map((r) => [
        r.action,
        r.destinations.map((d) => d.text),
        r.packages?.map((s) => s.text) ?? null,
        r.phases ?? null,
        r.why ?? null,
      ]),
    }),
  );
  for (const f of ['indicators.json', 'known-egress.json'])
    h.update(readFileSync(join(shippedDir(), f)));
  return `sha256-${h.digest('hex').slice(0, 32)}`;
}

export function loadPolicy(opts: LoadPolicyOptions = {}): LoadedPolicy {
  const cwd = opts.cwd ?? process.cwd();
  const base = join(shippedDir(), 'default.policy.yaml');
  const file = opts.file
    ? resolve(cwd, opts.file)
    : opts.discover === false
      ? undefined
      : findPolicyFile(cwd);
  if (opts.file && !existsSync(resolve(cwd, opts.file)))
    throw new PhonehomeError('EPOLICY', `No policy file at ${resolve(cwd, opts.file)}.`, {
      fix: 'Check the --policy path, or write one with `phonehome policy init`.',
    });
  let override = opts.override ? resolve(cwd, opts.override) : undefined;
  if (override && !existsSync(override))
    throw new PhonehomeError('EPOLICY', `No policy override file at ${override}.`, {
      fix: 'Check the --policy-override path.',
    });
  if (!override && file) {
    const found = OVERRIDE_FILE_NAMES.map((n) => join(dirname(file), n)).filter((p) =>
      existsSync(p),
    );
    if (found.length > 1)
      throw new PhonehomeError(
        'EPOLICY',
        `More than one policy override file: ${found.join(', ')}.`,
        {
          fix: 'Keep one of them.',
        },
      );
    override = found[0];
  }
  const files = [base, ...(file ? [file] : []), ...(override ? [override] : [])];
  const layers: PolicyLayer[] = [];
  for (const f of files) {
    const { layer, problems } = readPolicyFile(f);
    if (problems.length)
      throw new PhonehomeError(
        'EPOLICY',
        `The policy file ${displayName(f)} is not valid (${problems.length} problem${problems.length > 1 ? 's' : ''}).`,
        { detail: formatProblems(problems) },
      );
    layers.push(layer);
  }
  return {
    policy: mergeLayers(layers, files.slice(1)),
    knownEgress: shippedKnownEgress(),
    indicators: shippedIndicators(),
    sharedHosts: shippedSharedHosts(),
  };
}

/** The policy with the result store's imported known-malicious set, when it has one. */
export async function withMalicious(
  policy: LoadedPolicy,
  store: ResultStore,
): Promise<LoadedPolicy> {
  const set = await store.maliciousSet();
  return set
    ? { ...policy, malicious: maliciousIntel(set, policy.sharedHosts, policy.knownEgress) }
    : policy;
}

let sharedCache: SharedHosts | undefined;
/** What is nobody's own domain (see policy/vendor.ts): the indicators' hosts and the shipped list. */
export function shippedSharedHosts(): SharedHosts {
  if (sharedCache) return sharedCache;
  const data = JSON.parse(readFileSync(join(shippedDir(), 'indicators.json'), 'utf8')) as {
    sharedHosts?: { hosts?: unknown };
  };
  const names = data.sharedHosts?.hosts;
  if (
    !Array.isArray(names) ||
    !names.every((n) => typeof n === 'string' && /^[a-z0-9.-]+$/.test(n))
  )
    throw new Error('indicators.json: sharedHosts.hosts must be a list of lower-case names');
  sharedCache = {
    names,
    patterns: shippedIndicators().flatMap((i) => i.hosts),
  };
  return sharedCache;
}
