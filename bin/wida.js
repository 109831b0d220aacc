#!/usr/bin/env node
import { existsSync } from 'node:fs';

const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('wida: the build is missing (dist/); run `npm install` or `npm run build` in the wida package\n');
  process.exit(1);
}
await import(entry.href);
