/**
 * The user's npm configuration, as far as resolving needs it: registries (default and per scope),
 * credentials, proxy and TLS settings. Read the way npm reads them, later sources winning: the
 * global npmrc, the user npmrc (`NPM_CONFIG_USERCONFIG` or `~/.npmrc`), the project's `.npmrc`,
 * `npm_config_*` environment variables, then phonehome's own flags.
 *
 * Only settings that say where and how to fetch are taken. Anything that would change what runs
 * (`ignore-scripts`, `script-shell`, …) is ignored: nothing runs on the host, whatever the npmrc says.
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { PhonehomeError } from '../core/errors.js';

/** npm's config keys (kebab-case) we honour, besides `@scope:registry` and `//host/:key` ones. */
const FETCH_KEYS = new Set([
  'registry',
  'proxy',
  'https-proxy',
  'noproxy',
  'strict-ssl',
  'ca',
  'cafile',
  'cert',
  'key',
  'fetch-retries',
  'fetch-retry-factor',
  'fetch-retry-mintimeout',
  'fetch-retry-maxtimeout',
  'fetch-timeout',
  'user-agent',
]);

export type NpmConfig = Record<string, string | boolean | string[]>;

function wanted(key: string): boolean {
  return FETCH_KEYS.has(key) || /^@[^:]+:registry$/.test(key) || key.startsWith('//');
}

/** `${VAR}` expands from the environment, as npm does; an unset variable is an error there too. */
function expand(value: string, where: string): string {
  return value.replace(/(\\*)\$\{([^}]+)\}/g, (whole, esc: string, name: string) => {
    if (esc.length % 2) return whole.slice((esc.length + 1) / 2);
    const v = process.env[name];
    if (v === undefined)
      throw new PhonehomeError(
        'EUSAGE',
        `${where} uses \${${name}}, which is not set in the environment.`,
      );
    return esc.slice(esc.length / 2) + v;
  });
}

function parseValue(raw: string): string | boolean {
  let v = raw.trim();
  if ((v.startsWith('"') && v.endsWith('"')) || (v.startsWith("'") && v.endsWith("'")))
    v = v.slice(1, -1);
  if (v === 'true') return true;
  if (v === 'false') return false;
  return v;
}

/** An npmrc file's settings (ini: `key = value`, `key[] = value`, `;` and `#` comments). */
export function parseNpmrc(text: string, where: string): NpmConfig {
  const out: NpmConfig = {};
  for (const line of text.split(/\r?\n/)) {
    const t = line.trim();
    if (!t || t.startsWith(';') || t.startsWith('#') || t.startsWith('[')) continue;
    const eq = t.indexOf('=');
    if (eq < 0) continue;
    let key = expand(t.slice(0, eq).trim(), where);
    const value = parseValue(expand(t.slice(eq + 1), where));
    if (key.endsWith('[]')) {
      key = key.slice(0, -2);
      const prev = out[key];
      out[key] = [...(Array.isArray(prev) ? prev : []), String(value)];
    } else out[key] = value;
  }
  return out;
}

function readIfThere(path: string): NpmConfig {
  if (!existsSync(path)) return {};
  return parseNpmrc(readFileSync(path, 'utf8'), path);
}

/** The project folder npm would use: the nearest folder up from cwd with a package.json. */
function projectDir(cwd: string): string {
  for (let d = resolve(cwd); ; d = dirname(d)) {
    if (existsSync(join(d, 'package.json')) || existsSync(join(d, 'node_modules'))) return d;
    if (dirname(d) === d) return resolve(cwd);
  }
}

export interface LoadOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** `--registry`: wins over every file. */
  registry?: string;
}

/** The merged settings, kebab-case keys as in npmrc files. */
export function loadNpmConfig(opts: LoadOptions = {}): NpmConfig {
  const env = opts.env ?? process.env;
  const get = (k: string) => env[k] ?? env[k.toUpperCase()];
  const layers: NpmConfig[] = [];
  const globalrc = get('npm_config_globalconfig');
  if (globalrc) layers.push(readIfThere(globalrc));
  layers.push(readIfThere(get('npm_config_userconfig') ?? join(homedir(), '.npmrc')));
  layers.push(readIfThere(join(projectDir(opts.cwd ?? process.cwd()), '.npmrc')));
  const fromEnv: NpmConfig = {};
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined || !/^npm_config_/i.test(k)) continue;
    const key = k.slice('npm_config_'.length).toLowerCase().replace(/_/g, '-');
    fromEnv[key] = parseValue(v);
  }
  layers.push(fromEnv);
  if (opts.registry) layers.push({ registry: opts.registry });
  const merged: NpmConfig = {};
  for (const layer of layers)
    for (const [k, v] of Object.entries(layer)) if (wanted(k)) merged[k] = v;
  return merged;
}

/**
 * The options pacote and arborist (npm-registry-fetch underneath) take: scoped registries and
 * `//host/:_authToken`-style keys as they are, the rest camel-cased as npm flattens them.
 */
export function fetchOptions(config: NpmConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(config)) {
    if (k.startsWith('//') || k.startsWith('@')) {
      out[k] = v;
      continue;
    }
    switch (k) {
      case 'strict-ssl':
        out.strictSSL = v !== false && v !== 'false';
        break;
      case 'noproxy':
        out.noProxy = Array.isArray(v) ? v.join(',') : v;
        break;
      case 'cafile': {
        const text = readFileSync(String(v), 'utf8');
        out.ca = text
          .split(/(?=-----BEGIN CERTIFICATE-----)/)
          .map((c) => c.trim())
          .filter(Boolean);
        break;
      }
      default:
        out[k.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())] = v;
    }
  }
  return out;
}

/**
 * The registries the configuration names (the default one and every scope's), as origin and base
 * path: a tarball fetched from elsewhere is not vouched for by a registry.
 */
export function registryOrigins(config: NpmConfig): string[] {
  const urls = Object.entries(config)
    .filter(([k]) => k === 'registry' || /^@[^:]+:registry$/.test(k))
    .map(([, v]) => String(v));
  const origins = new Set<string>();
  for (const u of [...urls, 'https://registry.npmjs.org/']) {
    try {
      const url = new URL(u);
      origins.add(`${url.origin}${url.pathname}`);
    } catch {
      // not a URL: npm would not fetch from it either
    }
  }
  return [...origins];
}
