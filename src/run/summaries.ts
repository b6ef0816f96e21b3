/**
 * What a report says about the packages of a staged tree, computed in one place for check and
 * audit: a summary per package (install scripts, capabilities, declaration) and the dependency
 * closure of a package.
 */
import { formatId } from '../core/package-id.js';
import type { PackageSummary } from '../core/report.js';
import type { Phase } from '../core/terms.js';
import { parseDeclaration } from '../policy/parse.js';
import type { TreePackageInfo } from '../resolve/stage.js';

export const idOf = (p: { name: string; version: string }): string => formatId(p.name, p.version);

export function packageSummary(p: TreePackageInfo): PackageSummary {
  const declared = p.egress !== undefined ? parseDeclaration(p.egress) : undefined;
  return {
    id: idOf(p),
    installScripts: p.installScripts,
    ...(Object.keys(p.scripts).length ? { scripts: p.scripts } : {}),
    capabilities: p.capabilities,
    ...(declared
      ? {
          declares: Object.fromEntries(
            Object.entries(declared.byPhase).map(([phase, list]) => [
              phase,
              list.map((d) => d.text),
            ]),
          ) as Partial<Record<Phase, string[]>>,
        }
      : {}),
    ...(declared?.problems.length ? { declarationProblems: declared.problems } : {}),
    dependencies: p.dependencies,
    fromRegistry: p.fromRegistry,
    ...(p.links?.length ? { links: p.links } : {}),
  };
}

/** `id` and every package it depends on, directly or not, as summaries. */
export function closure(id: string, summaries: Map<string, PackageSummary>): PackageSummary[] {
  const seen = new Set([id]);
  const todo = [id];
  while (todo.length)
    for (const d of summaries.get(todo.pop() as string)?.dependencies ?? [])
      if (!seen.has(d)) {
        seen.add(d);
        todo.push(d);
      }
  return [...seen].map((x) => summaries.get(x)).filter((x): x is PackageSummary => !!x);
}
