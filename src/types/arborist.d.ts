// The part of @npmcli/arborist phonehome uses (it ships no typings).
declare module '@npmcli/arborist' {
  export interface ArboristNode {
    name: string;
    packageName: string;
    version: string;
    location: string;
    path: string;
    integrity: string | null;
    resolved: string | null;
    isLink: boolean;
    isRoot: boolean;
    /** A workspace folder of the root project (not a package to fetch). */
    isWorkspace: boolean;
    /** What a link points at. */
    target?: ArboristNode | null;
    /** Shipped inside another package's tarball (bundleDependencies). */
    inBundle: boolean;
    parent: ArboristNode | null;
    dev: boolean;
    optional: boolean;
    peer: boolean;
    /** Needed only by dev dependencies' optional dependencies, or by both. */
    devOptional: boolean;
    package: Record<string, unknown> & { scripts?: Record<string, string> };
    children: Map<string, ArboristNode>;
    inventory: Map<string, ArboristNode>;
    edgesIn: Set<{ from: ArboristNode | null; spec: string; name: string; type: string }>;
    edgesOut: Map<
      string,
      { to: ArboristNode | null; spec: string; name: string; type: string; valid: boolean }
    >;
  }
  export interface ArboristOptions {
    path: string;
    registry?: string;
    ignoreScripts?: boolean;
    audit?: boolean;
    fund?: boolean;
    cache?: string;
    [key: string]: unknown;
  }
  export default class Arborist {
    constructor(opts: ArboristOptions);
    reify(opts?: { add?: string[]; save?: boolean; [key: string]: unknown }): Promise<ArboristNode>;
    loadActual(): Promise<ArboristNode>;
    loadVirtual(): Promise<ArboristNode>;
  }
}
