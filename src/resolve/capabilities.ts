/**
 * What a package's code could do, read from its files on the host without running anything. This
 * is an inferred, weak declaration: a pattern in a file proves nothing about behaviour, but a
 * package with none of them that still reaches the network has hidden how it does so.
 */
import { open, readdir } from 'node:fs/promises';
import { extname, join } from 'node:path';
import type { Capability } from '../core/terms.js';

const CODE_EXTENSIONS = new Set(['.js', '.cjs', '.mjs', '.jsx']);
/** Bounds, so a hostile package with a million files or a 2 GB file cannot stall the host. */
const MAX_FILES = 5000;
const MAX_FILE_BYTES = 4 * 1024 * 1024;
const MAX_TOTAL_BYTES = 128 * 1024 * 1024;

const NET_MODULES = '(?:node:)?(?:http|https|http2|net|tls|dgram|dns|dns/promises|undici)';
const PATTERNS: [Capability, RegExp][] = [
  [
    'network',
    new RegExp(
      [
        `require\\(\\s*['"\`]${NET_MODULES}['"\`]\\s*\\)`,
        `\\bfrom\\s*['"]${NET_MODULES}['"]`,
        `import\\(\\s*['"\`]${NET_MODULES}['"\`]\\s*\\)`,
        `\\bfetch\\s*\\(`,
        `\\bXMLHttpRequest\\b`,
        `\\bWebSocket\\b`,
        `process\\.binding\\(\\s*['"](?:tcp_wrap|udp_wrap|cares_wrap|tls_wrap)`,
      ].join('|'),
    ),
  ],
  ['child-process', /['"`](?:node:)?child_process['"`]/],
  [
    'dynamic-code',
    /\beval\s*\(|\bnew\s+Function\s*\(|\bFunction\s*\(\s*['"`]|['"`](?:node:)?vm['"`]/,
  ],
  // require() of something that is not a literal: the module name is computed at run time.
  ['dynamic-require', /\brequire\s*\(\s*(?!['"`)\s])|\bimport\s*\(\s*(?!['"`)\s])/],
];

/** Install-script commands that are not `node <file>` run a shell with whatever it finds. */
const NODE_FILE_SCRIPT = /^node\s+[\w./@-]+(\s+[\w./=@-]+)*$/;

export async function scanCapabilities(
  folder: string,
  scripts: Record<string, string>,
): Promise<Capability[]> {
  const found = new Set<Capability>();
  for (const cmd of Object.values(scripts))
    if (!NODE_FILE_SCRIPT.test(cmd.trim())) found.add('shell-script');
  let files = 0;
  let total = 0;
  const walk = async (dir: string, depth: number): Promise<void> => {
    if (depth > 20) return;
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const ent of entries) {
      if (found.has('not-scanned')) return;
      const path = join(dir, ent.name);
      // Nested packages are scanned as packages of their own.
      if (ent.isDirectory()) {
        if (ent.name !== 'node_modules') await walk(path, depth + 1);
        continue;
      }
      if (!ent.isFile()) continue;
      const ext = extname(ent.name);
      if (ext === '.node' || ent.name === 'binding.gyp') found.add('native-code');
      if (!CODE_EXTENSIONS.has(ext)) continue;
      if (++files > MAX_FILES || total > MAX_TOTAL_BYTES) {
        found.add('not-scanned');
        return;
      }
      const text = await readHead(path);
      total += text.length;
      for (const [cap, re] of PATTERNS) if (!found.has(cap) && re.test(text)) found.add(cap);
      if (looksMinified(text)) found.add('minified');
      if (looksObfuscated(text)) found.add('obfuscated');
    }
  };
  await walk(folder, 0);
  return [...found].sort();
}

async function readHead(path: string): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const size = Math.min((await fh.stat()).size, MAX_FILE_BYTES);
    const buf = Buffer.alloc(size);
    const { bytesRead } = await fh.read(buf, 0, size, 0);
    return buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await fh.close();
  }
}

function looksMinified(text: string): boolean {
  if (text.length < 20_000) return false;
  const lines = text.split('\n').length;
  return text.length / lines > 500;
}

/** Identifier mangling of the common obfuscators, or code written mostly as escapes. */
function looksObfuscated(text: string): boolean {
  const mangled = text.match(/\b_0x[0-9a-f]{4,6}\b/g)?.length ?? 0;
  if (mangled >= 20) return true;
  const escapes = text.match(/\\x[0-9a-f]{2}|\\u[0-9a-f]{4}/gi)?.length ?? 0;
  return escapes >= 200 && (escapes * 4) / text.length > 0.2;
}
