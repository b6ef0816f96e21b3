// The part of pacote phonehome uses (pacote ships no typings).
declare module 'pacote' {
  export interface PacoteOptions {
    registry?: string;
    cache?: string;
    integrity?: string;
    fullMetadata?: boolean;
    [key: string]: unknown;
  }
  export interface FetchResult {
    from: string;
    resolved: string;
    integrity: string;
  }
  export interface Manifest {
    name: string;
    version: string;
    _resolved: string;
    _integrity: string;
    [key: string]: unknown;
  }
  export function extract(spec: string, dest: string, opts?: PacoteOptions): Promise<FetchResult>;
  export function manifest(spec: string, opts?: PacoteOptions): Promise<Manifest>;
  export function packument(spec: string, opts?: PacoteOptions): Promise<Record<string, unknown>>;
  export const tarball: {
    file(spec: string, dest: string, opts?: PacoteOptions): Promise<FetchResult>;
  };
  const pacote: {
    extract: typeof extract;
    manifest: typeof manifest;
    packument: typeof packument;
    tarball: typeof tarball;
  };
  export default pacote;
}
