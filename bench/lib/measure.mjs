// Shared measuring helpers: every subject is measured next to its baseline in the same run.

/** One result row in the harness's contract; ratio = subject / baseline. */
export function metric(scenario, name, value, unit, baseline = null) {
  const ratio = baseline ? value / baseline : null;
  return { scenario, metric: name, value, unit, baseline, ratio };
}

/**
 * Runs each named measurement in turn, `rounds` times over, and returns the mean of each by name.
 * Alternating spreads drift (CPU frequency, GC, another process) over all sides instead of one.
 */
export async function interleaveAll(rounds, measurements) {
  const sums = Object.fromEntries(Object.keys(measurements).map((key) => [key, 0]));
  for (let i = 0; i < rounds; i++) {
    for (const [key, measure] of Object.entries(measurements)) sums[key] += await measure();
  }
  return Object.fromEntries(Object.entries(sums).map(([key, sum]) => [key, sum / rounds]));
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

export const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
};
