// Copies the non-TypeScript files the compiled modules read at run time: SQL migrations, and static
// assets (stylesheets, templates) of the hosted pages.
import { cpSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const copied = new Set(['migrations', 'assets']);

function walk(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (!statSync(path).isDirectory()) continue;
    if (copied.has(name)) cpSync(path, path.replace(/^src/, 'dist'), { recursive: true });
    else walk(path);
  }
}
walk('src');
