/**
 * Comparing two reports of a package (an earlier version and a later one): which destinations
 * appeared or went away per phase and package, which phases gained egress, which install scripts
 * were added or changed, which declarations widened, which packages of the tree changed. Pure and
 * order-independent: the same two reports give the same diff whatever the order of their lists.
 *
 * Packages are compared by name (their versions differ between the two trees); destinations as
 * the findings name them (a DNS lookup of a name the package connected to is part of the
 * connection).
 */
import {
  reachedDestination,
  type CheckReport,
  type PackageSummary,
  type Verdict,
} from './report.js';
import { parseId } from './package-id.js';
import { PHASES, type Phase } from './terms.js';

export const DIFF_SCHEMA_VERSION = 1;

export interface DestinationChange {
  phase: Phase;
  /** Package name, without its version. */
  package: string;
  destination: string;
}

export interface ScriptChange {
  package: string;
  event: string;
  before?: string;
  after?: string;
  /** The command is the same but the file it runs changed. */
  bodyChanged?: boolean;
}

export interface ReportDiff {
  schemaVersion: number;
  before: { name: string; version: string; integrity: string | null; verdict: Verdict };
  after: { name: string; version: string; integrity: string | null; verdict: Verdict };
  destinations: { added: DestinationChange[]; removed: DestinationChange[] };
  /** Phases with egress now that had none before (install is the loudest). */
  phasesGainedEgress: Phase[];
  phasesLostEgress: Phase[];
  installScripts: { added: ScriptChange[]; removed: ScriptChange[]; changed: ScriptChange[] };
  /** Destinations a package declares now and did not before, and the reverse. */
  declarations: { widened: DestinationChange[]; narrowed: DestinationChange[] };
  packages: {
    added: string[];
    removed: string[];
    changed: { name: string; from: string; to: string }[];
  };
}

const nameOf = (id: string) => parseId(id).name;
const versionOf = (id: string) => parseId(id).version ?? '';

function destinations(r: CheckReport): Map<string, DestinationChange> {
  const out = new Map<string, DestinationChange>();
  for (const f of r.findings) {
    if (!reachedDestination(f) || !f.phase || !f.destination) continue;
    const d = {
      phase: f.phase,
      package: f.package ? nameOf(f.package) : '',
      destination: f.destination,
    };
    out.set(`${d.phase}\0${d.package}\0${d.destination}`, d);
  }
  return out;
}

function declared(r: CheckReport): Map<string, DestinationChange> {
  const out = new Map<string, DestinationChange>();
  for (const p of r.packages ?? [])
    for (const [phase, list] of Object.entries(p.declares ?? {}) as [Phase, string[]][])
      for (const destination of list) {
        const d = { phase, package: nameOf(p.id), destination };
        out.set(`${phase}\0${d.package}\0${destination}`, d);
      }
  return out;
}

function minus<T>(a: Map<string, T>, b: Map<string, T>): T[] {
  return [...a].filter(([k]) => !b.has(k)).map(([, v]) => v);
}

const byDestination = (x: DestinationChange, y: DestinationChange) =>
  PHASES.indexOf(x.phase) - PHASES.indexOf(y.phase) ||
  x.package.localeCompare(y.package) ||
  x.destination.localeCompare(y.destination);

function scripts(p: PackageSummary | undefined): Map<string, { command: string; digest?: string }> {
  const out = new Map<string, { command: string; digest?: string }>();
  for (const ev of p?.installScripts ?? []) out.set(ev, p?.scripts?.[ev] ?? { command: '' });
  return out;
}

export function diffReports(before: CheckReport, after: CheckReport): ReportDiff {
  const da = destinations(before);
  const db = destinations(after);
  const phasesWith = (m: Map<string, DestinationChange>) =>
    new Set([...m.values()].map((d) => d.phase));
  const pa = phasesWith(da);
  const pb = phasesWith(db);

  const pkgs = (r: CheckReport) => new Map((r.packages ?? []).map((p) => [nameOf(p.id), p]));
  const ka = pkgs(before);
  const kb = pkgs(after);
  const added: ScriptChange[] = [];
  const removed: ScriptChange[] = [];
  const changed: ScriptChange[] = [];
  for (const name of new Set([...ka.keys(), ...kb.keys()])) {
    const sa = scripts(ka.get(name));
    const sb = scripts(kb.get(name));
    for (const ev of new Set([...sa.keys(), ...sb.keys()])) {
      const x = sa.get(ev);
      const y = sb.get(ev);
      if (!x && y) added.push({ package: name, event: ev, after: y.command });
      else if (x && !y) removed.push({ package: name, event: ev, before: x.command });
      else if (x && y && (x.command !== y.command || x.digest !== y.digest))
        changed.push({
          package: name,
          event: ev,
          before: x.command,
          after: y.command,
          ...(x.command === y.command ? { bodyChanged: true } : {}),
        });
    }
  }
  const byScript = (x: ScriptChange, y: ScriptChange) =>
    x.package.localeCompare(y.package) || x.event.localeCompare(y.event);

  const names = new Set([...ka.keys(), ...kb.keys()]);
  const packages: ReportDiff['packages'] = { added: [], removed: [], changed: [] };
  for (const name of [...names].sort()) {
    const a = ka.get(name);
    const b = kb.get(name);
    if (!a && b) packages.added.push(b.id);
    else if (a && !b) packages.removed.push(a.id);
    // The package asked about is the diff's own subject, not a change of its tree.
    else if (a && b && a.id !== b.id && name !== after.subject.name)
      packages.changed.push({ name, from: versionOf(a.id), to: versionOf(b.id) });
  }

  const ca = declared(before);
  const cb = declared(after);
  const subject = (r: CheckReport) => ({
    name: r.subject.name,
    version: r.subject.version,
    integrity: r.subject.integrity,
    verdict: r.verdict,
  });
  return {
    schemaVersion: DIFF_SCHEMA_VERSION,
    before: subject(before),
    after: subject(after),
    destinations: {
      added: minus(db, da).sort(byDestination),
      removed: minus(da, db).sort(byDestination),
    },
    phasesGainedEgress: PHASES.filter((p) => pb.has(p) && !pa.has(p)),
    phasesLostEgress: PHASES.filter((p) => pa.has(p) && !pb.has(p)),
    installScripts: {
      added: added.sort(byScript),
      removed: removed.sort(byScript),
      changed: changed.sort(byScript),
    },
    declarations: {
      widened: minus(cb, ca).sort(byDestination),
      narrowed: minus(ca, cb).sort(byDestination),
    },
    packages,
  };
}

/** Whether the diff has anything to say. */
export function diffIsEmpty(d: ReportDiff): boolean {
  return (
    d.destinations.added.length +
      d.destinations.removed.length +
      d.installScripts.added.length +
      d.installScripts.removed.length +
      d.installScripts.changed.length +
      d.declarations.widened.length +
      d.declarations.narrowed.length +
      d.packages.added.length +
      d.packages.removed.length +
      d.packages.changed.length ===
    0
  );
}
