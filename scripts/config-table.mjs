// Prints the README's configuration table from the settings schema (src/platform/config/schema.ts),
// so the documentation cannot drift from what the server reads. Run it with `npm run docs:config`,
// which compiles first: this script reads the compiled module in dist/.
import { envNames } from '../dist/platform/config/schema.js';

const cell = (text) => String(text).replaceAll('|', '\\|');
const defaultOf = (meta) => (meta.default === undefined ? '(unset)' : `\`${cell(meta.default)}\``);

const lines = [
  '| variable | default | what it sets | config file key |',
  '|---|---|---|---|',
  ...Object.entries(envNames).map(
    ([key, meta]) => `| \`${meta.env}\` | ${defaultOf(meta)} | ${cell(meta.doc)} | \`${key}\` |`,
  ),
];
process.stdout.write(`${lines.join('\n')}\n`);
