// Start-up time and idle memory of a server in its own process, as an operator would run it.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';

/** Resolves with the `url` of the first JSON log line on stdout whose msg is readyMsg. */
function announcedUrl(child, readyMsg) {
  return new Promise((resolve, reject) => {
    let stderr = '';
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code} before ready:\n${stderr}`)));
    // Lines keep being read (and dropped) after ready so a full pipe never stalls the child.
    createInterface({ input: child.stdout }).on('line', (line) => {
      // The first-run operator notice is plain text (with a token): skipped, never kept.
      if (!line.startsWith('{')) return;
      try {
        const entry = JSON.parse(line);
        if (entry.msg === readyMsg) resolve(entry.url);
      } catch {}
    });
  });
}

async function firstOk(url) {
  for (;;) {
    const res = await fetch(url).catch(() => null);
    if (res?.ok) return;
    await sleep(5);
  }
}

/** Resident memory of a live process, from the kernel's own accounting (Linux). */
function rssMiB(pid) {
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kb) / 1024;
}

/**
 * Spawns `node args`, measures milliseconds from spawn to the first 2xx from readyPath, then RSS after
 * idleMs of idling, then stops it with SIGTERM.
 */
export async function startAndMeasure(args, { env, readyMsg, readyPath, idleMs }) {
  const started = performance.now();
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try {
    const url = await announcedUrl(child, readyMsg);
    await firstOk(new URL(readyPath, url));
    const startMs = performance.now() - started;
    await sleep(idleMs);
    return { startMs, rssMiB: rssMiB(child.pid) };
  } finally {
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}
