// Copies SQL migrations next to the compiled modules that read them.
import { cpSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function walk(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (!statSync(path).isDirectory()) continue;
    if (name === 'migrations') cpSync(path, path.replace(/^src/, 'dist'), { recursive: true });
    else walk(path);
  }
}
walk('src');
