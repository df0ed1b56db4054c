import { Writable } from 'node:stream';
import { runCli } from '../src/cli/main.ts';

/** Runs one `rampart` command line in this process with `env`; returns its exit code and what it wrote. */
export async function runRampart(env: Record<string, string>, args: string[]) {
  let out = '';
  let err = '';
  const sink = (append: (s: string) => void) =>
    new Writable({
      write(chunk, _encoding, done) {
        append(String(chunk));
        done();
      },
    });
  const code = await runCli(args, { out: sink((s) => (out += s)), err: sink((s) => (err += s)), env });
  return { code, out, err };
}
