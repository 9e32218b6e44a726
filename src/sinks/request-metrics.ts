/**
 * Per-request metrics: latency histograms, replies by command and result, errors by kind,
 * per-backend results. The request path only moves the plain counters of `RequestStats`
 * (src/util/request-stats.ts); this file turns them into labelled Prometheus series when the
 * registry is scraped. aster's names are kept (µs histograms with aster's buckets) and
 * Prometheus-style ones (seconds, `_total`) stand beside them.
 */
import { Counter, Histogram as PromHistogram, type MetricObjectWithValues, type MetricValueWithName, type Registry } from 'prom-client';
import type { SessionStats } from '../streams/session.js';
import { ASTER_REMOTE_BUCKETS_US, ASTER_TOTAL_BUCKETS_US, SECONDS_BUCKETS, type Histogram } from '../util/histogram.js';
import {
  BACKEND_ERROR_KINDS,
  BACKEND_RESULTS,
  BackendResultIndex,
  COMMAND_NAMES,
  commandKind,
  FRONT_ERROR_KINDS,
  type RequestStats,
} from '../util/request-stats.js';

/** What these metrics read at scrape time: each cluster's name and counters. */
export interface RequestMetricsView {
  clusters: () => Array<{ name: string; stats: SessionStats }>;
}

type Labels = Record<string, string>;
type Row = [Labels, number];

/** Declares the per-request metrics on `registry`. */
export function registerRequestMetrics(registry: Registry, view: RequestMetricsView): void {
  const each = (f: (name: string, r: RequestStats, stats: SessionStats) => Row[]) => (): Row[] =>
    view.clusters().flatMap((c) => f(c.name, c.stats.requests, c.stats));
  const hist = (read: (r: RequestStats) => Histogram) => () => view.clusters().map((c): [Labels, Histogram] => [{ cluster: c.name }, read(c.stats.requests)]);

  // -- latency
  mirrorHistogram(registry, 'aster_total_timer', 'time from a request\'s arrival to its reply leaving the proxy, microseconds', ASTER_TOTAL_BUCKETS_US, 1, hist((r) => r.total()));
  mirrorHistogram(registry, 'aster_remote_timer', 'time of a request at a backend, from send to reply, microseconds', ASTER_REMOTE_BUCKETS_US, 1, hist((r) => r.remote));
  mirrorHistogram(registry, 'aster_request_duration_seconds', 'time from a request\'s arrival to its reply leaving the proxy', SECONDS_BUCKETS, 1e-6, hist((r) => r.total()));
  mirrorHistogram(registry, 'aster_backend_request_duration_seconds', 'time of a request at a backend, from send to reply', SECONDS_BUCKETS, 1e-6, hist((r) => r.remote));
  // by command: the top-level names of the command table, others as "other" (bounded series)
  mirrorHistogram(registry, 'aster_command_duration_seconds', 'time from a request\'s arrival to its reply leaving the proxy, by command (top-level name from the command table, else "other")', SECONDS_BUCKETS, 1e-6, () =>
    view.clusters().flatMap((c) => c.stats.requests.byCommand.flatMap((h, i): Array<[Labels, Histogram]> => (h === undefined ? [] : [[{ cluster: c.name, command: COMMAND_NAMES[i] }, h]]))),
    ['cluster', 'command'],
  );

  // -- commands: by name (bounded: the command table's names, else "other") and by aster's kind
  mirrorCounter(registry, 'aster_commands_total', 'replies to clients by command (top-level name from the command table, else "other") and result (ok, error)', ['cluster', 'command', 'result'], each((cluster, r) => {
    const rows: Row[] = [];
    for (let i = 0; i < COMMAND_NAMES.length; i++) {
      const ok = r.commands[i * 2];
      const bad = r.commands[i * 2 + 1];
      if (ok > 0) rows.push([{ cluster, command: COMMAND_NAMES[i], result: 'ok' }, ok]);
      if (bad > 0) rows.push([{ cluster, command: COMMAND_NAMES[i], result: 'error' }, bad]);
    }
    return rows;
  }));
  mirrorCounter(registry, 'aster_front_command_total', 'replies to clients by kind (read, write, other, invalid) and result (ok, fail)', ['cluster', 'kind', 'result'], each((cluster, r) => {
    const sums = new Map<string, number>();
    for (const kind of ['read', 'write', 'other', 'invalid']) for (const result of ['ok', 'fail']) sums.set(`${kind} ${result}`, 0);
    for (let i = 0; i < COMMAND_NAMES.length; i++) {
      const kind = commandKind(i);
      sums.set(`${kind} ok`, (sums.get(`${kind} ok`) ?? 0) + r.commands[i * 2]);
      sums.set(`${kind} fail`, (sums.get(`${kind} fail`) ?? 0) + r.commands[i * 2 + 1]);
    }
    return [...sums].map(([key, n]): Row => {
      const [kind, result] = key.split(' ');
      return [{ cluster, kind, result }, n];
    });
  }));

  // -- errors by kind: the session's, protocol and internal from the session stats, and
  // backend failures (requests that got no reply: timeout, connection lost, backend down)
  const errorRows = each((cluster, r, stats) => {
    let backend = 0;
    for (const b of r.backends.values()) {
      backend += b.results[BackendResultIndex.timeout] + b.results[BackendResultIndex.closed] + b.results[BackendResultIndex.unavailable];
    }
    return [
      [{ cluster, kind: 'protocol' }, stats.protocolErrors],
      [{ cluster, kind: 'internal' }, stats.internalErrors],
      ...FRONT_ERROR_KINDS.map((kind, i): Row => [{ cluster, kind }, r.errors[i]]),
      [{ cluster, kind: 'backend' }, backend],
    ];
  });
  const errorsHelp = 'errors by kind: protocol (connection closed), internal, connection (client socket error), unknown_command, wrong_arity, noauth, unsupported, crossslot, ejected, backend (a backend request that got no reply)';
  mirrorCounter(registry, 'aster_errors_total', errorsHelp, ['cluster', 'kind'], errorRows);
  mirrorCounter(registry, 'aster_front_error_total', errorsHelp, ['cluster', 'kind'], errorRows);

  // -- per backend
  mirrorCounter(registry, 'aster_backend_request_total', 'requests sent to a backend by result: ok, resp_error (an error reply), timeout, closed (connection lost), unavailable (backend down, failed fast)', ['cluster', 'backend', 'result'], each((cluster, r) =>
    [...r.backends.values()].flatMap((b) => BACKEND_RESULTS.map((result, i): Row => [{ cluster, backend: b.label, result }, b.results[i]])),
  ));
  mirrorCounter(registry, 'aster_backend_error_total', 'backend connections closed, by kind: connect (could not connect), timeout (read timeout), closed (lost), protocol (malformed or unexpected reply)', ['cluster', 'backend', 'kind'], each((cluster, r) =>
    [...r.backends.values()].flatMap((b) => BACKEND_ERROR_KINDS.map((kind, i): Row => [{ cluster, backend: b.label, kind }, b.errors[i]])),
  ));
}

/** Registers `metric` in place of one already registered under its name (an older, narrower declaration). */
function replacing(registry: Registry, name: string): Registry[] {
  if (registry.getSingleMetric(name) !== undefined) registry.removeSingleMetric(name);
  return [registry];
}

/** A counter whose values are running totals kept elsewhere, copied at scrape time. */
function mirrorCounter(registry: Registry, name: string, help: string, labelNames: string[], read: () => Row[]): void {
  new Counter({
    name,
    help,
    labelNames,
    aggregator: 'sum',
    registers: replacing(registry, name),
    collect() {
      this.reset();
      for (const [labels, total] of read()) this.inc(labels, total);
    },
  });
}

/**
 * A histogram whose buckets are copied from a `Histogram` at scrape time. `upper` are the
 * published bounds in µs (each a bound of the source); `scale` converts µs to the published
 * unit (1 for µs, 1e-6 for seconds), for the `le` labels and the sum.
 */
function mirrorHistogram(registry: Registry, name: string, help: string, upper: readonly number[], scale: number, read: () => Array<[Labels, Histogram]>, labelNames = ['cluster']): void {
  const upperUs = upper.map((u) => Math.round(u / scale));
  new MirroredHistogram({ name, help, labelNames, buckets: [...upper], aggregator: 'sum', registers: replacing(registry, name) }, () =>
    read().flatMap(([labels, h]) => {
      const cumulative = h.cumulative(upperUs);
      const count = h.count;
      return [
        ...upper.map((le, i): MetricValueWithName<string> => ({ labels: { ...labels, le }, value: cumulative[i], metricName: `${name}_bucket` })),
        { labels: { ...labels, le: '+Inf' }, value: count, metricName: `${name}_bucket` },
        { labels, value: h.sum * scale, metricName: `${name}_sum` },
        { labels, value: count, metricName: `${name}_count` },
      ];
    }),
  );
}

/** prom-client's Histogram, its values read from elsewhere instead of observed one by one. */
class MirroredHistogram extends PromHistogram<string> {
  private readonly meta: { name: string; help: string };

  constructor(
    config: ConstructorParameters<typeof PromHistogram<string>>[0],
    private readonly values: () => Array<MetricValueWithName<string>>,
  ) {
    super(config);
    this.meta = { name: config.name, help: config.help };
  }

  override get(): Promise<MetricObjectWithValues<MetricValueWithName<string>>> {
    // the shape prom-client's own Histogram returns (its typings call `type` an enum; the
    // registry and the worker aggregation read the string)
    const data = { ...this.meta, type: 'histogram', aggregator: 'sum', values: this.values() };
    return Promise.resolve(data as unknown as MetricObjectWithValues<MetricValueWithName<string>>);
  }

  /** what the registry's text output reads (prom-client prefers it to `get`) */
  getForPromString(): Promise<MetricObjectWithValues<MetricValueWithName<string>>> {
    return this.get();
  }
}
