/**
 * A package id: `name@version` (`@scope/name@1.2.3` for scoped names), the form reports, the
 * store and the policy use to name one version of one package. The version is whatever follows
 * the last `@` past the first character, so a scope's own `@` is never taken for the separator.
 */

export function formatId(name: string, version: string): string {
  return `${name}@${version}`;
}

/**
 * The name and version of an id. Without a version (`name`, `@scope/name`) the version is
 * undefined; the text after the separator is returned as it is (a range in a policy scope, say),
 * not checked to be semver.
 */
export function parseId(id: string): { name: string; version: string | undefined } {
  const at = id.lastIndexOf('@');
  return at > 0
    ? { name: id.slice(0, at), version: id.slice(at + 1) }
    : { name: id, version: undefined };
}
