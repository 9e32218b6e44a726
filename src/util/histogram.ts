/**
 * A latency histogram cheap enough to update on every request: a bucket count in a
 * `Float64Array`, found with a few comparisons, and a running sum. No labels, no allocation,
 * no prom-client call; the metrics sink reads `counts` and `sum` when Prometheus scrapes.
 *
 * Values are microseconds. The bucket bounds are the union of every bucket set published from
 * it (aster's µs buckets and the Prometheus-style seconds buckets), so each published set is
 * an exact sum of these counts (see `cumulative`).
 */
export class Histogram {
  /** count of observations `v` with `bounds[i-1] < v <= bounds[i]`; the last slot is above every bound */
  readonly counts: Float64Array;
  /** sum of every observation, µs */
  sum = 0;

  constructor(readonly bounds: readonly number[] = LATENCY_BOUNDS_US) {
    for (let i = 1; i < bounds.length; i++) {
      if (!(bounds[i] > bounds[i - 1])) throw new Error('histogram bounds must be strictly increasing');
    }
    this.counts = new Float64Array(bounds.length + 1);
  }

  /** Adds one observation (µs). Latencies are mostly small, so the scan from the bottom is short. */
  observe(us: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && us > b[i]) i++;
    this.counts[i]++;
    this.sum += us;
  }

  /** how many observations in all */
  get count(): number {
    let n = 0;
    for (let i = 0; i < this.counts.length; i++) n += this.counts[i];
    return n;
  }

  /**
   * Cumulative counts at each of `upper` (each must be one of this histogram's bounds), in
   * Prometheus's `le` sense: observations <= the bound.
   */
  cumulative(upper: readonly number[]): number[] {
    const out: number[] = [];
    let acc = 0;
    let i = 0;
    for (const u of upper) {
      const at = this.bounds.indexOf(u);
      if (at < 0) throw new Error(`${u} is not a bound of this histogram`);
      for (; i <= at; i++) acc += this.counts[i];
      out.push(acc);
    }
    return out;
  }

  reset(): void {
    this.counts.fill(0);
    this.sum = 0;
  }

  /** adds `other`'s observations (the same bounds) to this one */
  add(other: Histogram): void {
    if (other.counts.length !== this.counts.length) throw new Error('histograms with different bounds');
    for (let i = 0; i < this.counts.length; i++) this.counts[i] += other.counts[i];
    this.sum += other.sum;
  }
}

/** aster's `aster_total_timer` buckets, µs */
export const ASTER_TOTAL_BUCKETS_US: readonly number[] = [1000, 10000, 40000, 100000, 200000];
/** aster's `aster_remote_timer` buckets, µs */
export const ASTER_REMOTE_BUCKETS_US: readonly number[] = [1000, 10000, 100000];
/** the Prometheus-style duration buckets, seconds (100 µs to 5 s) */
export const SECONDS_BUCKETS: readonly number[] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** every bound any published histogram needs, µs, ascending */
export const LATENCY_BOUNDS_US: readonly number[] = [
  ...new Set([...ASTER_TOTAL_BUCKETS_US, ...ASTER_REMOTE_BUCKETS_US, ...SECONDS_BUCKETS.map((s) => Math.round(s * 1e6))]),
].sort((a, b) => a - b);
