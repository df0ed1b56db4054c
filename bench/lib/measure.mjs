// Shared measuring helpers: every subject is measured next to its baseline in the same run.

/** One result row in the harness's contract; ratio = subject / baseline. */
export function metric(scenario, name, value, unit, baseline = null) {
  const ratio = baseline ? value / baseline : null;
  return { scenario, metric: name, value, unit, baseline, ratio };
}

/**
 * Runs each named measurement in turn, `rounds` times over, and returns the median of each by name.
 * Alternating spreads drift (CPU frequency, GC) over all sides instead of one; the median drops a round
 * that another process's burst of work spoiled, where a mean would carry it.
 */
export async function interleaveAll(rounds, measurements) {
  const samples = Object.fromEntries(Object.keys(measurements).map((key) => [key, []]));
  for (let i = 0; i < rounds; i++) {
    for (const [key, measure] of Object.entries(measurements)) samples[key].push(await measure());
  }
  return Object.fromEntries(Object.entries(samples).map(([key, values]) => [key, median(values)]));
}

/** interleaveAll for one baseline and one subject: resolves to { baseline, subject }. */
export const interleave = (rounds, measureBaseline, measureSubject) =>
  interleaveAll(rounds, { baseline: measureBaseline, subject: measureSubject });

/** Calls fn from `concurrency` loops for `seconds`; returns completed calls per second. */
export async function opsPerSecond(fn, { seconds, concurrency }) {
  const start = performance.now();
  const end = start + seconds * 1000;
  let done = 0;
  const loop = async (worker) => {
    for (let i = worker; performance.now() < end; i += concurrency) {
      await fn(i);
      done += 1;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, worker) => loop(worker)));
  return done / ((performance.now() - start) / 1000);
}

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
