// The parts of npm's registry client libraries phonehome uses (they ship no typings).
declare module 'npm-registry-fetch' {
  export function json(path: string, opts?: Record<string, unknown>): Promise<unknown>;
  const npmFetch: { json: typeof json };
  export default npmFetch;
}
declare module 'npm-pick-manifest' {
  export default function pickManifest(
    packument: unknown,
    wanted: string,
    opts?: Record<string, unknown>,
  ): { name: string; version: string; dist?: { integrity?: string; shasum?: string } };
}
declare module 'npm-package-arg' {
  export interface Spec {
    type: 'version' | 'range' | 'tag' | 'alias' | 'file' | 'directory' | 'git' | 'remote';
    name: string | null;
    escapedName: string | null;
    fetchSpec: string | null;
    registry?: boolean;
  }
  export default function npa(spec: string, where?: string): Spec;
}
