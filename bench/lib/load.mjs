// HTTP load on loopback with autocannon (see docs/decisions/0003-benchmark-load-generator.md).
import autocannon from 'autocannon';

/**
 * Requests per second that `url` sustains with a fixed number of open connections for a fixed time.
 * Throws if any answer was not 2xx: a rate of errors is not a rate of work.
 */
export async function measureRps(url, { seconds = 2, connections = 10, method = 'GET', body, headers } = {}) {
  // workers: 1 puts the load in its own thread. On the server's event loop it would steal the very time
  // it measures (a bare route reads ~45% slower that way on a 2-core machine); in a thread it gets a core.
  const request = { method, ...(body === undefined ? {} : { body }), ...(headers ? { headers } : {}) };
  const result = await autocannon({
    url,
    connections,
    duration: seconds,
    pipelining: 1,
    workers: 1,
    ...request,
  });
  const failed = result.non2xx + result.errors + result.timeouts;
  if (failed > 0) throw new Error(`${url}: ${failed} of ${result.requests.total} requests failed`);
  const elapsed = (result.finish.getTime() - result.start.getTime()) / 1000;
  return result.requests.total / elapsed;
}
