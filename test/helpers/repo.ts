import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's root (where package.json and bin/aster-proxy.js are), from test sources or their build. */
function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'bin', 'aster-proxy.js'))) return dir;
    dir = dirname(dir);
  }
  throw new Error('repository root not found');
}

export const REPO_ROOT = findRoot();
