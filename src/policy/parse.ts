/**
 * Validation of the policy format (version 1) and of package declarations, by hand so that each
 * problem names the file, line, path and fix. policies/policy.schema.json and
 * policies/declaration.schema.json describe the same formats for editors; a unit test keeps the
 * two in agreement.
 */
import semver from 'semver';
import type { Phase } from '../core/terms.js';
import { parseId } from '../core/package-id.js';
import { parseDestination, type DestinationPattern } from './destination.js';
import { formatPath, type PathSegment, type Problem, type StructuredSource } from './source.js';
import {
  PHASE_NAMES,
  SEVERITIES,
  expandPhases,
  type DefaultAction,
  type Declaration,
  type PackageScope,
  type PhaseName,
  type Policy,
  type PolicyRule,
  type Severity,
} from './types.js';

export const POLICY_VERSION = 1;
const DEFAULT_ACTIONS: readonly DefaultAction[] = ['deny', 'warn', 'allow'];
const DECLARATION_MODES = ['allow', 'warn', 'ignore'] as const;
const OWN_VENDOR_MODES = ['warn', 'allow', 'deny'] as const;
const TOP_KEYS = [
  'version',
  'defaults',
  'changes',
  'declarations',
  'knownEgress',
  'ownVendor',
  'indicators',
  'rules',
];
const RULE_KEYS = ['allow', 'deny', 'packages', 'phases', 'why'];

/** What one policy file says; absent keys leave the setting to the file below it (or the default). */
export interface PolicyLayer {
  defaults?: Partial<Record<Phase, DefaultAction>>;
  changes?: Partial<Record<Phase, DefaultAction>>;
  declarations?: Policy['declarations'];
  knownEgress?: boolean;
  ownVendor?: Policy['ownVendor'];
  indicators?: Record<string, Severity | 'off'>;
  rules: PolicyRule[];
}

const NAME_PATTERN = /^(@[a-z0-9*][a-z0-9._*-]*\/)?[a-z0-9*][a-z0-9._*-]*$/;

/** `name`, `name@range`, `@scope/name@range`, `@scope/*`. */
export function parsePackageScope(raw: string): PackageScope | string {
  const text = raw.trim();
  // A scope is split like an id: what follows the last `@` is the range.
  const { name, version: range } = parseId(text);
  if (!NAME_PATTERN.test(name))
    return `"${name}" is not a package name (lower-case, optionally @scope/, * as wildcard)`;
  if (range !== undefined && semver.validRange(range) === null)
    return `"${range}" is not a semver range`;
  return { text, name, ...(range !== undefined ? { range } : {}) };
}

export function packageInScope(scope: PackageScope, id: string): boolean {
  const { name, version = '' } = parseId(id);
  const re = new RegExp(
    `^${scope.name.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}$`,
  );
  if (!re.test(name)) return false;
  if (scope.range === undefined) return true;
  return semver.valid(version) !== null && semver.satisfies(version, scope.range, { loose: true });
}

class Checker {
  readonly problems: Problem[] = [];
  constructor(private readonly src: StructuredSource) {}

  problem(path: PathSegment[], message: string, fix: string, atKey = false): void {
    const where = atKey ? this.src.whereKey(path) : this.src.where(path);
    this.problems.push({ where, path: formatPath(path), message, fix });
  }

  isObject(v: unknown, path: PathSegment[], what: string): v is Record<string, unknown> {
    if (v && typeof v === 'object' && !Array.isArray(v)) return true;
    this.problem(
      path,
      `${what} must be a mapping (key: value), not ${kindOf(v)}`,
      `Write ${what} as a mapping.`,
    );
    return false;
  }

  keys(v: Record<string, unknown>, path: PathSegment[], allowed: readonly string[]): void {
    for (const k of Object.keys(v))
      if (!allowed.includes(k))
        this.problem(
          [...path, k],
          `unknown key "${k}"`,
          `Remove it, or use one of: ${allowed.join(', ')}.`,
          true,
        );
  }

  list(v: unknown, path: PathSegment[], what: string): unknown[] | undefined {
    if (typeof v === 'string') return [v];
    if (Array.isArray(v)) return v;
    this.problem(
      path,
      `${what} must be a list, not ${kindOf(v)}`,
      `Write ${what} as a list: [a, b].`,
    );
    return undefined;
  }

  destinations(v: unknown, path: PathSegment[]): DestinationPattern[] {
    const out: DestinationPattern[] = [];
    const before = this.problems.length;
    (this.list(v, path, 'a destination list') ?? []).forEach((d, i) => {
      if (typeof d !== 'string') {
        this.problem([...path, i], `a destination must be a string, not ${kindOf(d)}`, DEST_FIX);
        return;
      }
      const p = parseDestination(d);
      if (typeof p === 'string') this.problem([...path, i], p, DEST_FIX);
      else out.push(p);
    });
    if (out.length === 0 && this.problems.length === before)
      this.problem(path, 'an empty destination list', DEST_FIX);
    return out;
  }

  phases(v: unknown, path: PathSegment[]): Phase[] | undefined {
    const names: PhaseName[] = [];
    (this.list(v, path, 'phases') ?? []).forEach((p, i) => {
      if (typeof p === 'string' && (PHASE_NAMES as readonly string[]).includes(p))
        names.push(p as PhaseName);
      else
        this.problem(
          [...path, i],
          `"${String(p)}" is not a phase`,
          `Use ${PHASE_NAMES.join(', ')} (runtime = import and exercise).`,
        );
    });
    return names.length ? expandPhases(names) : undefined;
  }
}

const DEST_FIX =
  'Write host, host:port, *.zone, an IP, a CIDR block (10.0.0.0/8), [IPv6]:port, or *; ports as 443 or 8000-8100.';

function kindOf(v: unknown): string {
  if (v === null || v === undefined) return 'empty';
  if (Array.isArray(v)) return 'a list';
  return typeof v === 'object' ? 'a mapping' : `${typeof v} ${JSON.stringify(v)}`;
}

/** Validate one policy file. */
export function parsePolicyLayer(
  src: StructuredSource,
  knownIndicators: readonly string[],
  /** Indicators a policy cannot lower, with their shipped severity. */
  locked: Readonly<Record<string, Severity>> = {},
): { layer: PolicyLayer; problems: Problem[] } {
  const c = new Checker(src);
  const layer: PolicyLayer = { rules: [] };
  if (src.syntax.length) return { layer, problems: src.syntax };
  const v = src.value;
  if (!c.isObject(v, [], 'the policy')) return { layer, problems: c.problems };
  c.keys(v, [], TOP_KEYS);
  if (v.version !== POLICY_VERSION)
    c.problem(
      ['version'],
      v.version === undefined
        ? 'the policy has no version'
        : `version ${JSON.stringify(v.version)} is not supported`,
      `Start the file with \`version: ${POLICY_VERSION}\`.`,
    );
  for (const key of ['defaults', 'changes'] as const) {
    const section = v[key];
    if (section === undefined || !c.isObject(section, [key], key)) continue;
    c.keys(section, [key], ['install', 'import', 'exercise', 'runtime']);
    const d: Partial<Record<Phase, DefaultAction>> = {};
    // runtime first, so import or exercise named beside it win whatever the order of the keys.
    const entries = Object.entries(section).sort(([a], [b]) =>
      a === 'runtime' ? -1 : b === 'runtime' ? 1 : 0,
    );
    for (const [k, a] of entries) {
      if (!(DEFAULT_ACTIONS as readonly unknown[]).includes(a)) {
        c.problem([key, k], `"${String(a)}" is not an action`, 'Use deny, warn or allow.');
        continue;
      }
      if ((PHASE_NAMES as readonly string[]).includes(k))
        for (const p of expandPhases([k as PhaseName])) d[p] = a as DefaultAction;
    }
    layer[key] = d;
  }
  if (v.declarations !== undefined) {
    if ((DECLARATION_MODES as readonly unknown[]).includes(v.declarations))
      layer.declarations = v.declarations as Policy['declarations'];
    else
      c.problem(
        ['declarations'],
        `"${String(v.declarations)}" is not a declarations mode`,
        'Use allow (a package may allow its own declared egress), warn, or ignore.',
      );
  }
  if (v.ownVendor !== undefined) {
    if ((OWN_VENDOR_MODES as readonly unknown[]).includes(v.ownVendor))
      layer.ownVendor = v.ownVendor as Policy['ownVendor'];
    else
      c.problem(
        ['ownVendor'],
        `"${String(v.ownVendor)}" is not an ownVendor mode`,
        "Use warn (a package reaching its own vendor's domain at run time is low), allow (info) or deny (no excuse).",
      );
  }
  if (v.knownEgress !== undefined) {
    if (typeof v.knownEgress === 'boolean') layer.knownEgress = v.knownEgress;
    else c.problem(['knownEgress'], 'knownEgress must be true or false', 'Write true or false.');
  }
  if (v.indicators !== undefined && c.isObject(v.indicators, ['indicators'], 'indicators')) {
    const ind: Record<string, Severity | 'off'> = {};
    for (const [id, s] of Object.entries(v.indicators)) {
      if (!knownIndicators.includes(id))
        c.problem(
          ['indicators', id],
          `unknown indicator "${id}"`,
          `Use an id from policies/indicators.json: ${knownIndicators.join(', ')}.`,
          true,
        );
      else if (
        locked[id] &&
        (s === 'off' || SEVERITIES.indexOf(s as Severity) < SEVERITIES.indexOf(locked[id]))
      )
        c.problem(
          ['indicators', id],
          `${id} is locked at ${locked[id]}: a policy cannot lower it or turn it off`,
          'Remove the entry; what this indicator sees is never acceptable.',
        );
      else if (s === 'off' || (SEVERITIES as readonly unknown[]).includes(s))
        ind[id] = s as Severity | 'off';
      else
        c.problem(
          ['indicators', id],
          `"${String(s)}" is not a severity`,
          `Use off or one of ${SEVERITIES.join(', ')}.`,
        );
    }
    layer.indicators = ind;
  }
  if (v.rules !== undefined) {
    if (!Array.isArray(v.rules))
      c.problem(
        ['rules'],
        `rules must be a list, not ${kindOf(v.rules)}`,
        'Write rules as a list of `- allow: [...]` entries.',
      );
    else
      v.rules.forEach((r: unknown, i: number) => {
        const rule = parseRule(c, r, ['rules', i], `${src.file}:${src.line(['rules', i])}`);
        if (rule) layer.rules.push(rule);
      });
  }
  return { layer, problems: sortProblems(c.problems) };
}

/** In file order: line, then column. */
function sortProblems(problems: Problem[]): Problem[] {
  const at = (p: Problem) => p.where.split(':').slice(-2).map(Number) as [number, number];
  return [...problems].sort((a, b) => at(a)[0] - at(b)[0] || at(a)[1] - at(b)[1]);
}

function parseRule(
  c: Checker,
  r: unknown,
  path: PathSegment[],
  origin: string,
): PolicyRule | undefined {
  if (!c.isObject(r, path, 'a rule')) return undefined;
  const before = c.problems.length;
  c.keys(r, path, RULE_KEYS);
  const hasAllow = r.allow !== undefined;
  const hasDeny = r.deny !== undefined;
  if (hasAllow === hasDeny) {
    c.problem(
      path,
      hasAllow ? 'a rule has both allow and deny' : 'a rule has neither allow nor deny',
      'Give each rule exactly one of `allow: [destinations]` or `deny: [destinations]`.',
    );
    return undefined;
  }
  const action = hasAllow ? 'allow' : 'deny';
  const destinations = c.destinations(r[action], [...path, action]);
  let packages: PackageScope[] | undefined;
  if (r.packages !== undefined) {
    packages = [];
    (c.list(r.packages, [...path, 'packages'], 'packages') ?? []).forEach((p, i) => {
      const s =
        typeof p === 'string'
          ? parsePackageScope(p)
          : `a package must be a string, not ${kindOf(p)}`;
      if (typeof s === 'string')
        c.problem(
          [...path, 'packages', i],
          s,
          'Write name, name@range (puppeteer@>=19), or @scope/*.',
        );
      else packages?.push(s);
    });
  }
  const phases = r.phases !== undefined ? c.phases(r.phases, [...path, 'phases']) : undefined;
  if (r.why !== undefined && typeof r.why !== 'string')
    c.problem([...path, 'why'], 'why must be a string', 'Write a line on why this rule exists.');
  if (c.problems.length > before) return undefined;
  return {
    action,
    destinations,
    ...(packages ? { packages } : {}),
    ...(phases ? { phases } : {}),
    ...(typeof r.why === 'string' ? { why: r.why } : {}),
    origin,
  };
}

const DECLARATION_KEYS = ['install', 'import', 'exercise', 'runtime'];

/**
 * A package's `egress` field. It is the package's content, not the user's input: problems do not
 * stop a run, they are reported as a finding and the bad entries are ignored.
 *
 *   "egress": {
 *     "install": ["storage.googleapis.com:443"],
 *     "runtime": [{ "host": "*.ingest.example.io:443", "why": "error reports" }]
 *   }
 */
export function parseDeclaration(field: unknown): Declaration {
  const out: Declaration = { byPhase: {}, problems: [] };
  if (!field || typeof field !== 'object' || Array.isArray(field)) {
    out.problems.push('"egress" must be an object of phase: [destinations]');
    return out;
  }
  for (const [key, list] of Object.entries(field as Record<string, unknown>)) {
    if (!DECLARATION_KEYS.includes(key)) {
      out.problems.push(`unknown phase "${key}" (use ${DECLARATION_KEYS.join(', ')})`);
      continue;
    }
    if (!Array.isArray(list)) {
      out.problems.push(`egress.${key} must be a list`);
      continue;
    }
    const patterns: DestinationPattern[] = [];
    list.forEach((item: unknown, i) => {
      const obj = item && typeof item === 'object' ? (item as Record<string, unknown>) : undefined;
      const text =
        typeof item === 'string'
          ? item
          : obj &&
              typeof obj.host === 'string' &&
              (obj.why === undefined || typeof obj.why === 'string') &&
              Object.keys(obj).every((k) => k === 'host' || k === 'why')
            ? obj.host
            : undefined;
      if (text === undefined) {
        out.problems.push(`egress.${key}[${i}] must be a string or { "host": ..., "why": ... }`);
        return;
      }
      const p = parseDestination(text);
      if (typeof p === 'string') out.problems.push(`egress.${key}[${i}]: ${p}`);
      else patterns.push(p);
    });
    for (const phase of expandPhases([key as PhaseName]))
      out.byPhase[phase] = [...(out.byPhase[phase] ?? []), ...patterns];
  }
  return out;
}
