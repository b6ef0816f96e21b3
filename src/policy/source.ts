/**
 * Reading policy-like files (YAML or JSON) so that every problem can name its file and line.
 * JSON is read by the YAML parser too (YAML 1.2 is a superset for our purposes), which keeps one
 * code path for positions.
 */
import { LineCounter, isMap, isNode, isScalar, parseDocument, type Document } from 'yaml';

export type PathSegment = string | number;

export interface Problem {
  /** `file:line:col` */
  where: string;
  /** Path in the document, as `rules[2].allow[0]`. */
  path: string;
  message: string;
  fix: string;
}

export interface StructuredSource {
  file: string;
  value: unknown;
  /** Problems of the syntax itself; when not empty, `value` is not to be trusted. */
  syntax: Problem[];
  /** `file:line:col` of the node at a path (the nearest ancestor that exists). */
  where(path: PathSegment[]): string;
  /** `file:line:col` of the key of the last path segment (for problems with the key itself). */
  whereKey(path: PathSegment[]): string;
  line(path: PathSegment[]): number;
}

export function formatPath(path: PathSegment[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}

export function readStructured(file: string, text: string): StructuredSource {
  const lines = new LineCounter();
  const doc: Document = parseDocument(text, {
    lineCounter: lines,
    prettyErrors: false,
    uniqueKeys: true,
  });
  const pos = (offset: number) => lines.linePos(offset);
  const syntax: Problem[] = [...doc.errors, ...doc.warnings].map((e) => {
    const p = pos(e.pos[0]);
    return {
      where: `${file}:${p.line}:${p.col}`,
      path: '',
      message: e.message.split('\n')[0] ?? e.message,
      fix: 'Correct the YAML/JSON syntax at that position.',
    };
  });
  const nodeAt = (path: PathSegment[]) => {
    for (let n = path.length; n >= 0; n--) {
      const node = n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true);
      if (isNode(node) && node.range) return node.range[0];
    }
    return 0;
  };
  return {
    file,
    value: syntax.length ? undefined : doc.toJS({ maxAliasCount: 100 }),
    syntax,
    where: (path) => {
      const p = pos(nodeAt(path));
      return `${file}:${p.line}:${p.col}`;
    },
    whereKey: (path) => {
      const parent = path.length > 1 ? doc.getIn(path.slice(0, -1), true) : doc.contents;
      const last = path[path.length - 1];
      const pair = isMap(parent)
        ? parent.items.find((p) => isScalar(p.key) && p.key.value === last)
        : undefined;
      const offset = isNode(pair?.key) && pair.key.range ? pair.key.range[0] : nodeAt(path);
      const p = pos(offset);
      return `${file}:${p.line}:${p.col}`;
    },
    line: (path) => pos(nodeAt(path)).line,
  };
}
