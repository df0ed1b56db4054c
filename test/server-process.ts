/**
 * A real Rampart server process for tests that need one (two nodes, SIGTERM, kill -9): started with a
 * clean environment (nothing of the runner's own DATABASE_URL leaks in), its stdout collected, ready
 * once it logs "rampart ready" with its URL (PORT=0 picks a free port).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface ServerProcess {
  child: ChildProcess;
  /** Every stdout line so far (JSON log lines and the first-run banner). */
  lines: string[];
  /** The URL it listens on. */
  ready: Promise<string>;
  /** The exit code, or the signal that ended it. */
  exited: Promise<NodeJS.Signals | number | null>;
}

/** Started processes, so a file's afterAll can SIGKILL whatever is still running. */
export const runningServers = new Set<ChildProcess>();

export function parseJsonLine(line: string): Record<string, unknown> | null {
  if (!line.startsWith('{')) return null;
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return null;
  }
}

/** `node <script> [args]` from `cwd`, with HOST=127.0.0.1, PORT=0 and no online breach checks. */
export function startServerProcess(cwd: string, argv: string[], env: Record<string, string>): ServerProcess {
  const child = spawn(process.execPath, argv, {
    cwd,
    env: {
      PATH: process.env.PATH ?? '',
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'info',
      BREACHED_ONLINE: 'off',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  runningServers.add(child);
  const lines: string[] = [];
  let stderr = '';
  child.stderr?.on('data', (chunk) => {
    stderr += String(chunk);
  });
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => {
    child.on('exit', (code, signal) => {
      runningServers.delete(child);
      resolve(signal ?? code);
    });
  });
  const ready = new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      lines.push(line);
      const entry = parseJsonLine(line);
      if (entry?.msg === 'rampart ready' && typeof entry.url === 'string') resolve(entry.url);
    });
    void exited.then((code) => reject(new Error(`server exited with ${code} before ready:\n${stderr}`)));
  });
  return { child, lines, ready, exited };
}

/** The first operator's API token, printed once by the node that bootstrapped it. */
export const bootstrapToken = (server: ServerProcess) =>
  server.lines.map((l) => l.trim()).find((l) => /^rmp_op_\S+$/.test(l));
