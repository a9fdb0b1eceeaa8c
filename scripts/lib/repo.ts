/** Locating the repository (and its built dist/) from any compiled or source file. */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The nearest ancestor directory of `fromUrl` holding a package.json. */
export function repoRoot(fromUrl: string = import.meta.url): string {
  let dir = dirname(fileURLToPath(fromUrl));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${fileURLToPath(fromUrl)}`);
    dir = up;
  }
}

/** Path of a compiled script, e.g. distScript('backend-server') -> <root>/dist/scripts/backend-server.js */
export function distScript(name: string): string {
  return join(repoRoot(), 'dist', 'scripts', `${name}.js`);
}
