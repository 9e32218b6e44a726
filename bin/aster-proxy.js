#!/usr/bin/env node
// aster-proxy command: runs the compiled program in dist/ (build it with `npm run build`).
import { existsSync } from 'node:fs';

const main = new URL('../dist/src/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write(
    `aster-proxy: ${main.pathname} not found: run npm run build first\n`,
  );
  process.exit(1);
}
await import(main.href);
