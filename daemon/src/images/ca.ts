import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';

const PEM = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * The PEM certificates in `path`: a bundle file, or every `*.crt`/`*.pem` under a directory (Debian's
 * /usr/local/share/ca-certificates layout), in name order. A missing path has none.
 */
export async function readCaCerts(path: string): Promise<string[]> {
  const st = await stat(path).catch(() => null);
  if (!st) return [];
  const files: string[] = [];
  if (st.isDirectory()) {
    const walk = async (dir: string) => {
      for (const e of (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
        const p = join(dir, e.name);
        if (e.isDirectory()) await walk(p);
        else if (e.isFile() && /\.(crt|pem)$/.test(e.name)) files.push(p);
      }
    };
    await walk(path);
  } else files.push(path);
  const certs: string[] = [];
  for (const f of files) certs.push(...((await readFile(f, 'utf8')).match(PEM) ?? []));
  return [...new Set(certs)];
}
