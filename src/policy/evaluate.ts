/**
 * Observed events + declarations + policy + indicators → findings → verdict. Pure: it reads
 * nothing and can be fed recorded reports.
 *
 * For each destination a package tried in a phase, one decision, in this order:
 *   0. caller-directed: in the exercise, a host the exercise itself passed as an argument (info);
 *   1. the consumer's rules (override file first, then the policy file), first match wins;
 *   2. the shipped known-egress list, when the policy keeps it on;
 *   3. the package's own declaration, as the policy lets declarations count;
 *   4. own vendor: at import or exercise, the package's own vendor's domain (see vendor.ts), as
 *      the policy's ownVendor says (low by default);
 *   5. the policy's default for the phase (deny, warn or allow).
 * 0 and 4 never apply to an attempt that carries a planted secret or trips an indicator that
 * forbids allowing.
 * Indicators are applied to every attempt regardless, and an indicator that forbids allowing
 * (exfiltration channels, cloud metadata, data in DNS names) cannot be silenced by 1–3.
 */
import { NPM_TOKEN_REGISTRY } from '../core/bait.js';
import { forYamlString } from '../core/escape.js';
import type { ReportDiff } from '../core/compare.js';
import {
  SANDBOX_FINDINGS,
  compareFindings,
  destinationOf,
  verdictOf,
  type CheckReport,
  type Finding,
  type PackageSummary,
  type ReportEvent,
} from '../core/report.js';
import { NETWORK_CAPABLE, SANDBOX_WORKDIR, type Phase, type Severity } from '../core/terms.js';
import { formatId, parseId } from '../core/package-id.js';
import { matchesDestination, parseDestination, patternFor, type Target } from './destination.js';
import {
  eventIndicators,
  nameKey,
  targetOf,
  zoneOf,
  type Indicator,
  type IndicatorHit,
} from './indicators.js';
import type { MaliciousIntel } from './malicious.js';
import { packageInScope, parseDeclaration, parsePackageScope } from './parse.js';
import semver from 'semver';
import { parse as parseYaml } from 'yaml';
import type { KnownEgressEntry, Policy, PolicyRule } from './types.js';
import { registrableDomain, vendorOf, type SharedHosts } from './vendor.js';
import { severityRank } from '../core/report.js';

export interface EvaluationContext {
  policy: Policy;
  knownEgress: KnownEgressEntry[];
  indicators: Indicator[];
  /** The resolvers the sandbox is configured with (anything else is a hard-coded resolver). */
  resolvers: readonly string[];
  /** Who is nobody's own vendor; without it, no attempt is excused as the package's vendor's. */
  sharedHosts?: SharedHosts;
  /** An imported set of known-malicious package records (`phonehome indicators import`). */
  malicious?: MaliciousIntel;
}

/** What evaluation reads from the report's package list. */
interface TreeFacts {
  declarations: Record<string, unknown>;
  dependencies: Record<string, string[]>;
  /** Whether a registry vouches for the package (always, for a report with no package list). */
  vouched: (pkg: string) => boolean;
  summary: (pkg: string) => PackageSummary | undefined;
  /** The names the exercise passed as arguments (CheckReport.callerHosts). */
  callerHosts: readonly string[];
  callerDomains: readonly string[];
}

/** What decide() knows of the attempts it judges beyond their target. */
interface Evidence {
  /** One of them carried a planted secret, or tripped an indicator that forbids allowing. */
  damning: boolean;
  /** The attempts themselves (their processes). */
  events: readonly ReportEvent[];
}

const DEFAULT_SEVERITY: Record<Policy['defaults'][Phase], Severity> = {
  deny: 'high',
  warn: 'medium',
  allow: 'info',
};

interface Decision {
  id:
    | 'egress-allowed'
    | 'egress-not-allowed'
    | 'egress-denied'
    | 'egress-caller-directed'
    | 'egress-own-vendor'
    | 'egress-local-name';
  severity: Severity;
  rule: string;
  because: string;
  /** A known-egress entry's indicators it explains, at these severities. */
  explains?: Record<string, Severity>;
}

function ruleMatches(r: PolicyRule, phase: Phase, pkg: string | undefined, t: Target): boolean {
  if (r.phases && !r.phases.includes(phase)) return false;
  if (r.packages && !(pkg && r.packages.some((s) => packageInScope(s, pkg)))) return false;
  return r.destinations.some((d) => matchesDestination(d, t, r.action));
}

/**
 * A shipped entry that applies through a helper: `pkg` depends on the helper directly and, when
 * the entry names bins, its install script runs one of them; both vouched for by a registry.
 */
const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

function viaMatches(
  ctx: TreeFacts,
  r: KnownEgressEntry & { via: NonNullable<KnownEgressEntry['via']> },
  phase: Phase,
  pkg: string | undefined,
  t: Target,
  events: readonly ReportEvent[],
): boolean {
  if (!pkg || (r.phases && !r.phases.includes(phase))) return false;
  if (!r.destinations.some((d) => matchesDestination(d, t, 'allow'))) return false;
  const s = ctx.summary(pkg);
  const helper = s?.dependencies?.find((d) => parseId(d).name === r.via.package);
  if (!s || !helper || !ctx.vouched(helper)) return false;
  // The package's own code, beside the helper, must not be what could have made the request.
  if (suspectTree(ctx, pkg, [helper])) return false;
  if (!r.via.bins) return true;
  // The helper's bin made it: every attempt came from a process running one of its files.
  // By the path npm gives it in the project (the package cannot write there; a `..` leaves it).
  const own = new RegExp(
    `^(?:\\S*/)?node\\s+${escapeRe(SANDBOX_WORKDIR)}/node_modules/(?:\\.bin/(?:${r.via.bins.map(escapeRe).join('|')})|${escapeRe(r.via.package)}/\\S+)(?:\\s|$)`,
  );
  const connections = events.filter((e) => e.kind !== 'dns');
  const made = connections.length ? connections : events;
  if (
    !made.every(
      (e) => e.process !== undefined && own.test(e.process) && !e.process.includes('/../'),
    )
  )
    return false;
  const word = new RegExp(`(^|[\\s;&|(])(${r.via.bins.map(escapeRe).join('|')})($|[\\s;&|)])`);
  return Object.values(s.scripts ?? {}).some((x) => word.test(x.command));
}

/**
 * Whether `pkg`'s tree, less the trees of `except` (a helper's own, which may read the npm
 * config), has code that hides itself, reaches for the machine's secrets or could not be read
 * whole; or `pkg` itself runs code it builds or fetches.
 */
function suspectTree(ctx: TreeFacts, pkg: string, except: string[]): boolean {
  const spared = new Set(except.flatMap((id) => closure(id, ctx.dependencies)));
  const tree = closure(pkg, ctx.dependencies).filter((id) => id === pkg || !spared.has(id));
  if (ctx.summary(pkg)?.capabilities.includes('dynamic-code')) return true;
  return tree.some((id) =>
    (ctx.summary(id)?.capabilities ?? []).some(
      (c) => c === 'obfuscated' || c === 'reads-secrets' || c === 'not-scanned',
    ),
  );
}

/**
 * Whether every connection of these attempts is a request phonehome read (plain HTTP, or inside
 * intercepted TLS) that only reads (GET or HEAD); lookups aside. False without any request.
 */
function onlyReads(events: readonly ReportEvent[]): boolean {
  const requests = events.filter((e) => e.kind !== 'dns');
  return (
    requests.length > 0 &&
    requests.every(
      (e) =>
        (e.kind === 'http' || (e.kind === 'tls' && e.intercept === 'decrypted')) &&
        (e.method === 'GET' || e.method === 'HEAD') &&
        !e.bodyBytes &&
        !e.websocket,
    )
  );
}

/**
 * Whether an entry's explanation of an indicator holds for these attempts: each connection a
 * plain-HTTP request of the method and one of the exact paths the entry names (a query aside;
 * lookups and connections that sent nothing read nothing). A credential library reads credential files by trade, so the
 * paths, not the tree, are what keep a token fetch from passing for the probe.
 */
function explainable(r: KnownEgressEntry, pkg: string | undefined, events: readonly ReportEvent[]) {
  const w = r.explainsWhen;
  if (!pkg || !w) return false;
  return events.every(
    (e) =>
      e.kind === 'dns' ||
      // A connection closed before it sent anything (a timed-out probe) asked for nothing.
      (e.kind === 'tcp' && !e.bytesOut) ||
      // A plain request, or one read inside intercepted TLS.
      ((e.kind === 'http' || (e.kind === 'tls' && e.method !== undefined)) &&
        e.method === w.method &&
        w.paths.includes((e.path ?? '').replace(/\?.*$/, ''))),
  );
}

function decide(
  ctx: EvaluationContext & TreeFacts,
  phase: Phase,
  pkg: string | undefined,
  t: Target,
  evidence: Evidence,
): Decision {
  // The exercise named this host itself: the package connected where its caller told it to.
  if (
    phase === 'exercise' &&
    !evidence.damning &&
    !t.claimedOnly &&
    t.names.length > 0 &&
    t.names.every(
      (n) =>
        ctx.callerHosts.includes(n) ||
        ctx.callerDomains.some((d) => n === d || n.endsWith(`.${d}`)),
    )
  )
    return {
      id: 'egress-caller-directed',
      severity: 'info',
      rule: 'caller-directed',
      because: `the exercise passed ${t.names[0]} to the package as an argument: it went where its caller told it to`,
    };
  // A lookup of a name without a domain (`test`, `acl`, `undefined`: what a client makes of an
  // argument that names no host) is answered by /etc/hosts, the local network or its search
  // domains, never by a server on the internet: nothing reaches anyone from it.
  const name = t.names[0];
  if (
    t.anyPort &&
    !t.claimedOnly &&
    t.names.length === 1 &&
    name &&
    !name.includes('.') &&
    !evidence.damning
  )
    return {
      id: 'egress-local-name',
      severity: 'info',
      rule: 'local-name',
      because: `${name} has no domain: a resolver answers it from the local network, not the internet`,
    };
  const rule = ctx.policy.rules.find((r) => ruleMatches(r, phase, pkg, t));
  if (rule) {
    const why = rule.why ? ` (${rule.why})` : '';
    return rule.action === 'allow'
      ? {
          id: 'egress-allowed',
          severity: 'info',
          rule: rule.origin,
          because: `allowed by the rule at ${rule.origin}${why}`,
        }
      : {
          id: 'egress-denied',
          severity: 'high',
          rule: rule.origin,
          because: `denied by the rule at ${rule.origin}${why}`,
        };
  }
  // Curated knowledge is about the package a registry published under that name and version, not
  // about any tarball whose package.json claims the name.
  if (ctx.policy.knownEgress && (!pkg || ctx.vouched(pkg))) {
    const known = ctx.knownEgress.find((r) =>
      r.via
        ? viaMatches(ctx, { ...r, via: r.via }, phase, pkg, t, evidence.events)
        : ruleMatches(r, phase, pkg, t),
    );
    if (known)
      return {
        id: 'egress-allowed',
        // A helper's run-time request is made in the package's own process: unread (TLS left
        // alone, or refused) it cannot be told from the package's own use of that host (a
        // registry takes writes too); read, a request that only reads is the helper's check.
        severity: known.via && !known.via.bins && !onlyReads(evidence.events) ? 'low' : 'info',
        rule: `known-egress:${known.id}`,
        because: `known legitimate egress "${known.id}": ${known.why ?? ''} (source: ${known.source})`,
        ...(known.explains && explainable(known, pkg, evidence.events)
          ? { explains: known.explains }
          : {}),
      };
  }
  // A declaration is the package's word: not taken from a tree that hides code or reaches for
  // the machine's secrets (what it sent to a declared host cannot be told from exfiltration).
  if (
    pkg &&
    ctx.policy.declarations !== 'ignore' &&
    ctx.declarations[pkg] !== undefined &&
    !suspectTree(ctx, pkg, [])
  ) {
    const declared = parseDeclaration(ctx.declarations[pkg]).byPhase[phase] ?? [];
    const hit = declared.find((d) => matchesDestination(d, t, 'allow'));
    if (hit)
      return ctx.policy.declarations === 'allow'
        ? { id: 'egress-allowed', severity: 'info', rule: 'declaration', because: `declared by ${pkg} for ${phase} (${hit.text})` }
        : { id: 'egress-allowed', severity: 'low', rule: 'declaration', because: `declared by ${pkg} for ${phase} (${hit.text}); the policy counts declarations as a warning` }; // prettier-ignore
  }
  if (
    pkg &&
    phase !== 'install' &&
    ctx.policy.ownVendor !== 'deny' &&
    ctx.sharedHosts &&
    !evidence.damning
  ) {
    // Code that hides itself, reaches for the machine's secrets (encrypted, they would pass any
    // look at the traffic), or runs code it is given gets no excuse.
    const vendor = suspectTree(ctx, pkg, [])
      ? undefined
      : vendorOf(parseId(pkg).name, ctx.summary(pkg)?.links, t, ctx.sharedHosts);
    if (vendor)
      return {
        id: 'egress-own-vendor',
        severity: ctx.policy.ownVendor === 'allow' ? 'info' : 'low',
        rule: 'own-vendor',
        because: `${vendor.domain} is ${pkg}'s own vendor's domain (${vendor.because}); the policy counts that at run time as ${ctx.policy.ownVendor === 'allow' ? 'info' : 'a warning'} (ownVendor: ${ctx.policy.ownVendor})`,
      };
  }
  const action = ctx.policy.defaults[phase];
  return {
    id: action === 'allow' ? 'egress-allowed' : 'egress-not-allowed',
    severity: DEFAULT_SEVERITY[action],
    rule: `default:${phase}`,
    because:
      action === 'allow'
        ? `the policy allows ${phase}-time egress by default`
        : `no rule, known-egress entry or declaration allows it (default for ${phase}: ${action})`,
  };
}

/**
 * Where an attempt went, as a person would write it, with the other names it was aimed at: a TLS
 * connection to one name with another's SNI shows both.
 */
function shownDestination(e: ReportEvent, t: Target): string {
  const shown = nameKey(e.sni ?? e.host ?? '');
  const others = t.names.filter((n) => n !== shown);
  // The address it went to, when no name shown stands for it: a raw IP with a claimed name, or a
  // name the judgement did not take (an SNI that is no host name, a proxy's absolute target).
  const addr = t.ip ?? e.ip;
  const raw =
    addr && ((t.claimedOnly && e.host === undefined) || (shown !== '' && !t.names.includes(shown)))
      ? [`address ${addr}`]
      : [];
  const extra = [...others, ...raw];
  return extra.length ? `${destinationOf(e)} (also ${extra.join(', ')})` : destinationOf(e);
}

/** Severity of an indicator after the policy's overrides (locked ones cannot be lowered). */
function effectiveSeverity(ind: Indicator, policy: Policy): Severity | 'off' {
  const o = policy.indicators[ind.id];
  if (o === undefined) return ind.severity;
  if (!ind.locked) return o;
  return o !== 'off' && severityRank(o) > severityRank(ind.severity) ? o : ind.severity;
}

/**
 * A value for a YAML flow sequence (`[...]`) of a policy: bare when YAML reads it back as that
 * very string (a plain host, `pkg@1.0.1`), else a double-quoted scalar (a comma ends the item, a
 * `*` starts an alias, `1.50`, `null` or `0x10` would be read as a number, null or boolean).
 */
export function yamlFlowItem(v: string): string {
  if (/^[A-Za-z0-9][A-Za-z0-9._@/:+-]*$/.test(v)) {
    try {
      const back = parseYaml(`[${v}]`) as unknown;
      if (Array.isArray(back) && back.length === 1 && back[0] === v) return v;
    } catch {
      // quoted below
    }
  }
  return forYamlString(v);
}

/**
 * Whether a package id, written in a rule's `packages:`, would cover that package and no other:
 * a name without a wildcard and an exact version (no range, no build metadata). A hostile
 * package chooses its own name and version: `*` with an empty version, or `evil@>=0.0.0`, would
 * otherwise make a suggested rule cover every package, or every later release.
 */
export function exactPackage(id: string): boolean {
  const scope = parsePackageScope(id);
  if (typeof scope === 'string' || scope.name.includes('*') || scope.range === undefined)
    return false;
  return (
    semver.valid(scope.range) === scope.range &&
    !scope.range.includes('+') &&
    packageInScope(scope, id)
  );
}

/**
 * The smallest policy entry that allows this attempt, as YAML for the `rules:` list; none when
 * the destination, written as a pattern, would not mean exactly this attempt (a name holding a
 * comma, a space or a `*` reads as other patterns, or as every destination), or when the
 * package's id would cover other packages.
 */
export function suggestRule(phase: Phase, pkg: string | undefined, t: Target): string | undefined {
  const pattern = patternFor(t);
  const parsed = parseDestination(pattern);
  if (
    typeof parsed === 'string' ||
    (parsed.host !== undefined && !('exact' in parsed.host)) ||
    !matchesDestination(parsed, t, 'allow')
  )
    return undefined;
  // Without the package the rule would allow every package: then none at all.
  if (pkg !== undefined && !exactPackage(pkg)) return undefined;
  return (
    [
      `- allow: [${yamlFlowItem(pattern)}]`,
      ...(pkg ? [`  packages: [${yamlFlowItem(pkg)}]`] : []),
      `  phases: [${phase}]`,
    ].join('\n') + '\n'
  );
}

function closure(start: string, deps: Record<string, string[]>): string[] {
  const seen = new Set([start]);
  const todo = [start];
  while (todo.length) {
    for (const d of deps[todo.pop() as string] ?? [])
      if (!seen.has(d)) {
        seen.add(d);
        todo.push(d);
      }
  }
  return [...seen];
}

/**
 * Judge a report: every finding but those about the sandbox itself is made again, so a stored
 * report can be judged by another policy without running the package again.
 */
export function evaluate(report: CheckReport, judge: EvaluationContext): CheckReport {
  // npm's own use of its token is only that while the registry's name was looked up through the
  // sandbox's resolver alone: a lookup of it through a resolver the package chose (in the wild:
  // one that answers with its author's address) makes the request a theft.
  const registryViaOther = report.events.some(
    (e) =>
      e.kind === 'dns' &&
      nameKey(e.host ?? '') === NPM_TOKEN_REGISTRY &&
      e.resolver !== undefined &&
      !judge.resolvers.includes(e.resolver),
  );
  const findings: Finding[] = report.findings
    .filter((f) => SANDBOX_FINDINGS.includes(f.id))
    .map((f) =>
      f.id === 'npm-token-used' && registryViaOther
        ? {
            ...f,
            id: 'bait-leak',
            severity: 'critical' as const,
            message: `${f.message}; but ${NPM_TOKEN_REGISTRY} was also looked up through a resolver the package chose, so the request went where that resolver said: a credential theft; no policy can allow it`,
            rule: 'bait',
          }
        : f,
    );
  const packages = new Map<string, PackageSummary>((report.packages ?? []).map((p) => [p.id, p]));
  const ctx: EvaluationContext & TreeFacts = {
    ...judge,
    declarations: Object.fromEntries(
      [...packages.values()].filter((p) => p.declares).map((p) => [p.id, p.declares]),
    ),
    dependencies: Object.fromEntries(
      [...packages.values()].map((p) => [p.id, p.dependencies ?? []]),
    ),
    vouched: (pkg) => packages.size === 0 || packages.get(pkg)?.fromRegistry === true,
    summary: (pkg) => packages.get(pkg),
    callerHosts: (report.callerHosts ?? []).map(nameKey),
    // Names under a caller host's own domain (made fresh per run too): a client that builds a name
    // from the host it was given (`api.github.com` + host, a subdomain) reaches the caller's zone.
    callerDomains: (report.callerHosts ?? [])
      .filter((h) => h.includes('.'))
      .map((h) => registrableDomain(nameKey(h)))
      .filter((d): d is string => d !== undefined),
  };
  const active = ctx.indicators
    .map((ind) => ({ ind, severity: effectiveSeverity(ind, ctx.policy) }))
    .filter((a): a is { ind: Indicator; severity: Severity } => a.severity !== 'off');
  const severityOf = new Map(active.map((a) => [a.ind.id, a.severity]));
  const activeIndicators = active.map((a) => a.ind);

  // Names the sandbox's own resolver was asked for. A connection whose name was only ever looked
  // up through a resolver the package chose (in the wild: one that answers with its author's
  // address) went wherever that resolver said: the name is claimed, and allows nothing.
  const viaOwnResolver = new Set(
    report.events
      .filter(
        (e) => e.kind === 'dns' && e.resolver !== undefined && ctx.resolvers.includes(e.resolver),
      )
      .map((e) => nameKey(e.host ?? '')),
  );
  // Group attempts by phase, package and destination; a DNS lookup of a name the package then
  // connected to is part of that connection, not a destination of its own. Attempts shown alike
  // but aimed differently (the same SNI on connections to two names, a lookup asked of another
  // resolver) are groups of their own: each group is judged by what all its attempts were aimed at.
  type Group = {
    phase: Phase;
    pkg?: string;
    events: ReportEvent[];
    indexes: number[];
    dns: boolean;
  };
  const foreign = (e: ReportEvent) =>
    e.kind === 'dns' && e.resolver !== undefined && !ctx.resolvers.includes(e.resolver);
  const aim = (e: ReportEvent) => {
    const t = targetOf(e, viaOwnResolver);
    return JSON.stringify([
      [...t.names].sort(),
      t.claimedOnly ?? false,
      t.ip ?? '',
      foreign(e) ? e.resolver : '',
    ]);
  };
  const groups = new Map<string, Group>();
  const byName = new Map<string, Group>();
  const who = (e: ReportEvent) => `${e.phase}\0${e.package ?? ''}`;
  // Only a package of the checked tree can be charged (and so be covered by a known-egress entry
  // or its declaration); anything else counts as the package asked about.
  const subjectId = formatId(report.subject.name, report.subject.version);
  const inTree = (e: ReportEvent): ReportEvent =>
    e.package && packages.size > 0 && !packages.has(e.package) ? { ...e, package: subjectId } : e;
  const indexed = report.events.map((e, i) => ({ e: inTree(e), i }));
  const ordered = [
    ...indexed.filter(({ e }) => e.kind !== 'dns'),
    ...indexed.filter(({ e }) => e.kind === 'dns'),
  ];
  for (const { e, i } of ordered) {
    const joined = e.kind === 'dns' && !foreign(e) ? byName.get(`${who(e)}\0${e.host}`) : undefined;
    const key = `${who(e)}\0${e.kind === 'dns' ? `${e.host} (DNS)` : destinationOf(e)}\0${aim(e)}`;
    const g = joined ??
      groups.get(key) ?? {
        phase: e.phase,
        ...(e.package ? { pkg: e.package } : {}),
        events: [],
        indexes: [],
        dns: e.kind === 'dns',
      };
    g.events.push(e);
    g.indexes.push(i);
    if (!joined) groups.set(key, g);
    if (e.kind !== 'dns' && e.host && !byName.has(`${who(e)}\0${e.host}`))
      byName.set(`${who(e)}\0${e.host}`, g);
  }

  // Many names looked up under one zone (data carried in the names, a chunk per lookup), with the
  // attempts that make the count: the indicator names them (an allowed lookup of such a zone is
  // still drawn, and judged, under the indicator).
  const many = activeIndicators.find((i) => i.detector === 'dns-many-subdomains');
  const manyThreshold = (many?.params.threshold as number | undefined) ?? 10;
  const zoneKey = (e: ReportEvent) => `${e.phase}\0${e.package ?? ''}\0${zoneOf(e.host ?? '')}`;
  const zones = new Map<string, { names: Set<string>; indexes: number[] }>();
  if (many)
    for (const { e, i } of indexed) {
      if (e.kind !== 'dns' || !e.host) continue;
      const z = zones.get(zoneKey(e)) ?? { names: new Set<string>(), indexes: [] };
      z.names.add(e.host);
      z.indexes.push(i);
      zones.set(zoneKey(e), z);
    }

  const seenIndicator = new Set<string>();
  const addIndicator = (
    hit: IndicatorHit,
    phase: Phase,
    pkg: string | undefined,
    destination: string,
    extra = '',
    severity?: Severity,
    events?: number[],
  ) => {
    const key = `${hit.indicator.id}\0${phase}\0${pkg ?? ''}\0${destination}`;
    if (seenIndicator.has(key)) return;
    seenIndicator.add(key);
    const who = pkg ?? 'an unidentified package';
    findings.push({
      id: hit.indicator.id,
      severity: severity ?? severityOf.get(hit.indicator.id) ?? hit.indicator.severity,
      phase,
      ...(pkg ? { package: pkg } : {}),
      destination,
      message: `${hit.indicator.id}: ${who} -> ${destination} during ${phase}: ${hit.detail}; ${hit.indicator.rationale}${extra}`,
      rule: `indicator:${hit.indicator.id}`,
      ...(events?.length ? { events } : {}),
    });
  };

  // Where planted secrets went (bait-leak findings, made with the report).
  const leaks = new Set(
    findings
      .filter((f) => f.id === 'bait-leak')
      .map((f) => `${f.phase ?? ''}\0${f.package ?? ''}\0${f.destination ?? ''}`),
  );
  for (const g of groups.values()) {
    const main = g.events.find((e) => e.kind !== 'dns') ?? (g.events[0] as ReportEvent);
    // A lookup asked of a resolver the package chose is a datagram to that resolver: only a rule
    // for its address allows it.
    const asked = g.dns && foreign(main) ? main.resolver : undefined;
    const target: Target = asked
      ? { names: targetOf(main).names, claimedOnly: true, ip: asked, port: 53 }
      : targetOf(main, viaOwnResolver);
    const destination = g.dns
      ? `${main.host} (DNS${asked ? `, asked ${asked}` : ''})`
      : shownDestination(main, target);
    const hits = g.events.flatMap((e) => eventIndicators(e, activeIndicators, ctx));
    const forbidding = hits.find((h) => h.indicator.forbidsAllow);
    const leaked = g.events.some((e) =>
      leaks.has(`${e.phase}\0${e.package ?? ''}\0${destinationOf(e)}`),
    );
    const decision = decide(ctx, g.phase, g.pkg, target, {
      damning: leaked || !!forbidding,
      events: g.events,
    });
    // A human-approved rule or a curated known-egress entry explains an indicator that may be
    // allowed; a package's own declaration does not (evidence, not trust).
    // Where a caller-directed attempt went, how much it sent and whether the caller's server
    // could be read inside (a client that closes mid-handshake, or pins) are the caller's choice.
    const accepted = (h: IndicatorHit) =>
      (decision.id === 'egress-allowed' &&
        decision.rule !== 'declaration' &&
        !decision.rule.startsWith('default:')) ||
      (decision.id === 'egress-caller-directed' &&
        ['nonstandard-port', 'large-upload', 'refused-inspection'].includes(h.indicator.detector));
    // A curated entry may explain even an indicator no policy can allow, at the severity it names.
    const explained = (h: IndicatorHit) => decision.explains?.[h.indicator.id];
    for (const h of hits)
      addIndicator(
        h,
        g.phase,
        g.pkg,
        destination,
        explained(h)
          ? ` (explained: ${decision.because})`
          : h.indicator.forbidsAllow && decision.id === 'egress-allowed'
            ? ` (${decision.because}, but no policy can allow this)`
            : accepted(h)
              ? ` (accepted: ${decision.because})`
              : '',
        explained(h) ?? (accepted(h) && !h.indicator.forbidsAllow ? 'info' : undefined),
        [...g.indexes].sort((a, b) => a - b),
      );
    const who = g.pkg ?? 'an unidentified package';
    const verb = g.dns ? 'looked up' : 'tried to reach';
    findings.push({
      id: decision.id,
      severity: decision.severity,
      phase: g.phase,
      ...(g.pkg ? { package: g.pkg } : {}),
      destination,
      message: `${who} ${verb} ${destination} during ${g.phase}: ${decision.because}`,
      rule: decision.rule,
      ...(!['egress-allowed', 'egress-caller-directed', 'egress-local-name'].includes(
        decision.id,
      ) && !forbidding
        ? (() => {
            const suggestion = suggestRule(g.phase, g.pkg, target);
            return suggestion ? { suggestion } : {};
          })()
        : {}),
      events: [...g.indexes].sort((a, b) => a - b),
    });
  }

  // Many names under one zone, per phase and package (counted before the groups are judged).
  if (many)
    for (const [key, z] of zones) {
      if (z.names.size < manyThreshold) continue;
      const [phase, pkg, zone] = key.split('\0') as [Phase, string, string];
      addIndicator(
        { indicator: many, detail: `${z.names.size} distinct names under ${zone}` },
        phase,
        pkg || undefined,
        `*.${zone} (DNS)`,
        '',
        undefined,
        [...z.indexes].sort((a, b) => a - b),
      );
    }

  // Egress from a package whose code, with its dependencies', shows no way to the network:
  // once per package, at the first phase it happened in.
  const hidden = activeIndicators.find((i) => i.detector === 'hidden-network-code');
  if (hidden && packages.size > 0) {
    const firstPhase = new Map<string, Phase>();
    for (const e of report.events)
      if (e.package && e.kind !== 'dropped' && !firstPhase.has(e.package))
        firstPhase.set(e.package, e.phase);
    for (const [pkg, phase] of firstPhase) {
      if (!packages.has(pkg)) continue;
      const reach = closure(pkg, ctx.dependencies);
      const capable = reach.some(
        (id) => packages.get(id)?.capabilities.some((c) => NETWORK_CAPABLE.includes(c)) ?? true,
      );
      if (capable) continue;
      const severity = severityOf.get(hidden.id) ?? hidden.severity;
      findings.push({
        id: hidden.id,
        severity,
        phase,
        package: pkg,
        message: `${hidden.id}: ${pkg} reached the network from ${phase} on, but none of the ${reach.length} package(s) of its tree use network modules, fetch, child_process, eval, native code or shell scripts; ${hidden.rationale}`,
        rule: `indicator:${hidden.id}`,
      });
    }
  }

  for (const p of packages.values()) {
    if (!p.declarationProblems?.length) continue;
    findings.push({
      id: 'declaration-invalid',
      severity: 'low',
      package: p.id,
      message: `${p.id} declares its egress in a form phonehome does not understand; those entries were ignored: ${p.declarationProblems.join('; ')}`,
      rule: 'declaration',
    });
  }

  findings.push(...knownMalicious(report, ctx.malicious));

  findings.sort(compareFindings);
  return {
    ...report,
    findings,
    verdict: verdictOf(findings),
    policy: {
      sources: ctx.policy.sources,
      hash: ctx.policy.hash,
      ...(ctx.malicious ? { malicious: maliciousSetLine(ctx.malicious) } : {}),
    },
  };
}

/** The imported set, in a line: where from, how many records, how new. */
export function maliciousSetLine(m: MaliciousIntel): string {
  return `${m.records} known-malicious record(s) from ${m.source}, newest ${m.newestModified?.slice(0, 10) ?? 'undated'}, imported ${m.importedAt.slice(0, 10)}`;
}

/**
 * The package and every package of its tree that a known-malicious record names: critical, and
 * nothing allows it. The record decides, not what the run saw (a payload may wait for another
 * machine, another day).
 */
export function knownMalicious(
  report: Pick<CheckReport, 'subject' | 'packages'>,
  malicious: MaliciousIntel | undefined,
): Finding[] {
  if (!malicious) return [];
  const ids = new Set([
    formatId(report.subject.name, report.subject.version),
    ...(report.packages ?? []).map((p) => p.id),
  ]);
  const out: Finding[] = [];
  for (const id of [...ids].sort()) {
    const { name, version } = parseId(id);
    if (!name || !version) continue;
    const records = malicious.affecting(name, version);
    if (!records.length) continue;
    const [first] = records;
    out.push({
      id: 'known-malicious-package',
      severity: 'critical',
      package: id,
      message: `${id} is a known malicious version: ${records
        .slice(0, 3)
        .map((r) => r.id)
        .join(
          ', ',
        )}${records.length > 3 ? ` and ${records.length - 3} more` : ''}${first?.summary ? ` (${first.summary})` : ''}; no policy can allow it`,
      rule: `malicious:${first?.id ?? ''}`,
    });
  }
  return out;
}

const CHANGE_SEVERITY = DEFAULT_SEVERITY;

/**
 * With `--against`: what changed since the earlier version becomes findings. A destination the
 * earlier version did not reach is judged by the policy's `changes` (install: deny by default);
 * an install script that appeared or changed, and a declaration that widened, are findings of
 * their own: most compromised-maintainer releases add exactly that.
 */
export function judgeChanges(report: CheckReport, diff: ReportDiff, policy: Policy): CheckReport {
  const ids = new Map((report.packages ?? []).map((p) => [parseId(p.id).name, p.id]));
  const idOf = (name: string) => ids.get(name) ?? (name || undefined);
  const was = formatId(diff.before.name, diff.before.version);
  const findings: Finding[] = report.findings.filter((f) => !CHANGE_FINDINGS.includes(f.id));
  for (const d of diff.destinations.added) {
    const action = policy.changes[d.phase];
    const pkg = idOf(d.package);
    // A new destination one of the consumer's rules or the curated known-egress list allows was
    // expected by someone who looked; a package's own declaration is not such an approval.
    const approved = report.findings.find(
      (f) =>
        f.id === 'egress-allowed' &&
        f.phase === d.phase &&
        f.package === pkg &&
        f.destination === d.destination &&
        f.rule !== 'declaration' &&
        !f.rule?.startsWith('default:'),
    );
    findings.push({
      id: 'new-destination',
      severity: approved ? 'info' : CHANGE_SEVERITY[action],
      phase: d.phase,
      ...(pkg ? { package: pkg } : {}),
      destination: d.destination,
      message: `new since ${was}: ${pkg ?? 'an unidentified package'} reached ${d.destination} during ${d.phase}, which ${was} did not (${approved ? `allowed by ${approved.rule}` : `changes for ${d.phase}: ${action}`})`,
      rule: approved?.rule ?? `changes:${d.phase}`,
    });
  }
  for (const s of diff.installScripts.added) {
    const pkg = idOf(s.package);
    findings.push({
      id: 'install-script-added',
      severity: 'medium',
      phase: 'install',
      ...(pkg ? { package: pkg } : {}),
      message: `new since ${was}: ${pkg} has a ${s.event} script (${s.after}) it did not have before`,
      rule: 'changes:install-script',
    });
  }
  for (const s of diff.installScripts.changed) {
    const pkg = idOf(s.package);
    findings.push({
      id: 'install-script-changed',
      // Install scripts change in honest releases too; shown, not judged.
      severity: 'info',
      phase: 'install',
      ...(pkg ? { package: pkg } : {}),
      message: s.bodyChanged
        ? `changed since ${was}: the file ${pkg}'s ${s.event} script runs (${s.after}) is different`
        : `changed since ${was}: ${pkg}'s ${s.event} script was "${s.before}", is "${s.after}"`,
      rule: 'changes:install-script',
    });
  }
  for (const d of diff.declarations.widened) {
    const pkg = idOf(d.package);
    findings.push({
      id: 'declaration-widened',
      severity: 'medium',
      phase: d.phase,
      ...(pkg ? { package: pkg } : {}),
      destination: d.destination,
      message: `new since ${was}: ${pkg} now declares ${d.destination} for ${d.phase}; a declaration that widens in a new release deserves a look`,
      rule: 'changes:declaration',
    });
  }
  findings.sort(compareFindings);
  return { ...report, findings, verdict: verdictOf(findings), comparison: diff };
}

/** Findings judgeChanges makes (and remakes). */
export const CHANGE_FINDINGS: readonly string[] = [
  'new-destination',
  'install-script-added',
  'install-script-changed',
  'declaration-widened',
];
