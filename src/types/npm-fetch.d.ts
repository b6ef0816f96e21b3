// The parts of npm's registry client libraries phonehome uses (they ship no typings).
declare module 'npm-registry-fetch' {
  export function json(path: string, opts?: Record<string, unknown>): Promise<unknown>;
  /** A registry request; throws an HttpErrorGeneral (statusCode, headers) on 4xx/5xx. */
  const npmFetch: {
    (path: string, opts?: Record<string, unknown>): Promise<Response>;
    json: typeof json;
  };
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
    /** An alias's target (`npm:other@^1`). */
    subSpec?: Spec;
  }
  function npa(spec: string, where?: string): Spec;
  namespace npa {
    /** A dependency as package.json writes it: its name and its spec. */
    function resolve(name: string, spec: string, where?: string): Spec;
  }
  export default npa;
}
