/** Small statistics and markdown helpers shared by the benchmarks. */

export interface Summary {
  runs: number;
  median: number;
  p95: number;
  p99: number;
  min: number;
  max: number;
}

/** Nearest-rank percentile: the smallest sample with at least `quantile` of the samples at or below it. */
export function percentile(samples: number[], quantile: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(quantile * sorted.length) - 1))];
}

export function summarize(samples: number[]): Summary {
  return {
    runs: samples.length,
    median: percentile(samples, 0.5),
    p95: percentile(samples, 0.95),
    p99: percentile(samples, 0.99),
    // Not Math.min(...samples): spreading ~10^5 samples overflows the stack.
    min: samples.reduce((least, sample) => Math.min(least, sample), Number.POSITIVE_INFINITY),
    max: samples.reduce((most, sample) => Math.max(most, sample), Number.NEGATIVE_INFINITY),
  };
}

/** Milliseconds with one decimal. */
export function ms(value: number): string {
  return Number.isFinite(value) ? value.toFixed(1) : 'n/a';
}

export function markdownTable(header: string[], rows: string[][], rightAligned: boolean[] = header.map((_, index) => index > 0)): string {
  const separator = rightAligned.map((right) => (right ? '---:' : '---'));
  return [header, separator, ...rows].map((cells) => `| ${cells.join(' | ')} |`).join('\n');
}

/** Wall-clock time in epoch milliseconds with sub-millisecond resolution, comparable across one process. */
export function epochNow(): number {
  return performance.timeOrigin + performance.now();
}

/** Runs an action and returns its duration in milliseconds with its result. */
export async function timed<T>(action: () => Promise<T>): Promise<{ ms: number; result: T }> {
  const started = performance.now();
  const result = await action();
  return { ms: performance.now() - started, result };
}

export interface BenchOptions {
  quick: boolean;
  database: 'pglite' | 'postgres';
}

/** `--quick` for fewer iterations, `--postgres` for a throwaway PostgreSQL database instead of PGlite. */
export function benchOptions(argv: string[] = process.argv.slice(2)): BenchOptions {
  return { quick: argv.includes('--quick'), database: argv.includes('--postgres') ? 'postgres' : 'pglite' };
}

/** `work`, or an error naming `what` (and `describe()`, if given) after `timeoutMs`. */
export async function withTimeout<T>(work: Promise<T>, timeoutMs: number, what: string, describe?: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}${describe ? `:\n${describe()}` : ''}`)), timeoutMs)));
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
