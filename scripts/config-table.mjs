// Prints the README's configuration table from the settings schema (src/platform/config/schema.ts),
// so the documentation cannot drift from what the server reads. Run it with `npm run docs:config`,
// which compiles first: this script reads the compiled module in dist/. Columns are padded the way
// Biome formats Markdown tables, so the output can be pasted as is.
import { envNames } from '../dist/platform/config/schema.js';

const cell = (text) => String(text).replaceAll('|', '\\|');
const defaultOf = (meta) => (meta.default === undefined ? '(unset)' : `\`${cell(meta.default)}\``);

const header = ['variable', 'default', 'what it sets', 'config file key'];
const rows = Object.entries(envNames).map(([key, meta]) => [
  `\`${meta.env}\``,
  defaultOf(meta),
  cell(meta.doc),
  `\`${key}\``,
]);
const widths = header.map((_, i) => Math.max(...[header, ...rows].map((row) => row[i].length)));
const line = (row) => `| ${row.map((text, i) => text.padEnd(widths[i])).join(' | ')} |`;

const lines = [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)];
process.stdout.write(`${lines.join('\n')}\n`);
