import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { AggregatorRegistry, Counter, Gauge, Registry, collectDefaultMetrics, type Aggregator } from 'prom-client';
import type { SessionStats } from '../streams/session.js';
import { registerRequestMetrics } from './request-metrics.js';

/** What the metrics read at scrape time (nothing is counted per request here). */
export interface MetricsView {
  version: string;
  threads: number;
  clusters: () => ClusterView[];
  /** true once every listener is bound */
  ready: () => boolean;
  /** reload counters (RunningProxy.reloads), when reloading is on */
  reloads?: () => { ok: number; failed: number };
  /**
   * Set when this process is one worker of several (src/streams/workers.ts): its process
   * metrics get a `worker` label, and the process-wide ones (build info, version, thread count)
   * are left to the primary, which sums the workers' registries.
   */
  worker?: number;
}

export interface ClusterView {
  name: string;
  stats: SessionStats;
  backends: Array<{ label: string; state: string }>;
  /** health checks (RunningCluster.health): in service or ejected, and how often each changed */
  health?: Array<{ backend: string; live: boolean; ejections: number; returns: number }>;
  /** cluster mode: slot-map fetches and redirects followed */
  topology?: {
    fetched: number;
    failed: number;
    changes: number;
    staleSlots: number;
    slotsCovered: number;
    redirects: Record<'moved' | 'ask' | 'tryagain' | 'clusterdown', number>;
  };
  /** cluster mode: backup requests */
  backups?: { planned: number; dispatched: number; exhausted: number; primaryWins: number; replicaWins: number };
}

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

type Labels = Record<string, string>;

/**
 * The registry of one proxy process (or of one worker). Every proxy metric is declared here, in
 * one place. Values are read from the live counters when Prometheus scrapes, so the request
 * path pays nothing for them. The aster names are kept for existing dashboards;
 * Prometheus-style names stand beside them.
 *
 * How the primary sums workers (the `aggregator` of each metric): counters and histograms add
 * up; client connections add up; backend health takes the minimum (1 only when the backend is
 * up in every worker serving the cluster), ejection the maximum; reloads the maximum (each
 * worker reloads: one reload counts once); memory and CPU add up (the whole proxy).
 */
export function buildRegistry(view: MetricsView): Registry {
  const registry = new Registry();
  registerProcessMetrics(registry, view.worker === undefined ? {} : { worker: String(view.worker) });
  if (view.worker === undefined) registerIdentity(registry, view.version, () => view.threads);

  const perCluster = (read: (c: ClusterView) => number) => () => view.clusters().map((c): [Labels, number] => [{ cluster: c.name }, read(c)]);
  for (const name of ['aster_front_connection', 'aster_client_connections']) {
    new Gauge({
      name,
      help: 'client connections open now',
      labelNames: ['cluster'],
      registers: [registry],
      collect() {
        for (const c of view.clusters()) this.set({ cluster: c.name }, c.stats.connectedClients);
      },
    });
  }
  mirrorCounter(registry, 'aster_front_connection_incr', 'client connections accepted', ['cluster'], perCluster((c) => c.stats.totalConnections));
  mirrorCounter(registry, 'aster_client_connections_total', 'client connections accepted', ['cluster'], perCluster((c) => c.stats.totalConnections));
  mirrorCounter(registry, 'aster_commands_received_total', 'commands read from clients (counted on arrival; replies are counted on leaving)', ['cluster'], perCluster((c) => c.stats.totalCommands));
  mirrorCounter(registry, 'aster_protocol_errors_total', 'client connections closed for a protocol error', ['cluster'], perCluster((c) => c.stats.protocolErrors));
  mirrorCounter(registry, 'aster_internal_errors_total', 'requests answered with an internal error', ['cluster'], perCluster((c) => c.stats.internalErrors));
  mirrorCounter(registry, 'aster_global_error', 'errors (client protocol errors and internal errors)', [], () => [
    [{}, view.clusters().reduce((sum, c) => sum + c.stats.protocolErrors + c.stats.internalErrors, 0)],
  ]);
  const backendUp: Array<[string, string]> = [
    ['aster_backend_health_status', 'backend connection state: 1 up, 0 down or connecting (with workers: 1 only if up in every worker serving the cluster)'],
    ['aster_backend_up', 'backend connection up (1) or not (0); with workers, 1 only if up in every worker serving the cluster'],
  ];
  for (const [name, help] of backendUp) {
    new Gauge({
      name,
      help,
      labelNames: ['cluster', 'backend'],
      aggregator: 'min',
      registers: [registry],
      collect() {
        this.reset();
        for (const c of view.clusters()) for (const b of c.backends) this.set({ cluster: c.name, backend: b.label }, b.state === 'up' ? 1 : 0);
      },
    });
  }
  new Gauge({
    name: 'aster_backend_ejected',
    help: 'backend taken out of service by health checks (1) or in service (0); with workers, 1 if ejected in any worker (each checks on its own)',
    labelNames: ['cluster', 'backend'],
    aggregator: 'max',
    registers: [registry],
    collect() {
      this.reset();
      for (const c of view.clusters()) for (const h of c.health ?? []) this.set({ cluster: c.name, backend: h.backend }, h.live ? 0 : 1);
    },
  });
  const perBackend = (read: (h: NonNullable<ClusterView['health']>[number]) => number) => () =>
    view.clusters().flatMap((c) => (c.health ?? []).map((h): [Labels, number] => [{ cluster: c.name, backend: h.backend }, read(h)]));
  mirrorCounter(registry, 'aster_backend_ejections_total', 'times health checks took a backend out of service (summed over workers)', ['cluster', 'backend'], perBackend((h) => h.ejections));
  mirrorCounter(registry, 'aster_backend_returns_total', 'times health checks brought a backend back into service (summed over workers)', ['cluster', 'backend'], perBackend((h) => h.returns));
  const topologies = () => view.clusters().flatMap((c) => (c.topology === undefined ? [] : [{ cluster: c.name, t: c.topology }]));
  mirrorCounter(registry, 'aster_cluster_topology_fetches_total', 'CLUSTER NODES fetches by result: ok (a node answered), failed (no node did)', ['cluster', 'result'], () =>
    topologies().flatMap(({ cluster, t }): Array<[Labels, number]> => [
      [{ cluster, result: 'ok' }, t.fetched],
      [{ cluster, result: 'failed' }, t.failed],
    ]),
  );
  mirrorCounter(registry, 'aster_cluster_topology_changes_total', 'fetched views that changed the slot map', ['cluster'], () => topologies().map(({ cluster, t }): [Labels, number] => [{ cluster }, t.changes]));
  mirrorCounter(registry, 'aster_cluster_stale_slots_total', 'slots a fetched view gave to an owner older (by config epoch) than the one the map has: refused', ['cluster'], () =>
    topologies().map(({ cluster, t }): [Labels, number] => [{ cluster }, t.staleSlots]),
  );
  mirrorCounter(registry, 'aster_redirect_total', 'cluster redirects followed by kind: moved, ask, tryagain, clusterdown', ['cluster', 'kind'], () =>
    topologies().flatMap(({ cluster, t }) => Object.entries(t.redirects).map(([kind, n]): [Labels, number] => [{ cluster, kind }, n])),
  );
  mirrorCounter(
    registry,
    'aster_backup_request_total',
    'backup requests by event: planned (a read passed the threshold), dispatched (sent to a replica), exhausted (the budget said no), primary_win, replica_win',
    ['cluster', 'event'],
    () =>
      view.clusters().flatMap((c): Array<[Labels, number]> => {
        const b = c.backups;
        if (b === undefined) return [];
        return [
          [{ cluster: c.name, event: 'planned' }, b.planned],
          [{ cluster: c.name, event: 'dispatched' }, b.dispatched],
          [{ cluster: c.name, event: 'exhausted' }, b.exhausted],
          [{ cluster: c.name, event: 'primary_win' }, b.primaryWins],
          [{ cluster: c.name, event: 'replica_win' }, b.replicaWins],
        ];
      }),
  );
  new Gauge({
    name: 'aster_cluster_slots_covered',
    help: 'slots with a known owner in the proxy\'s slot map (16384 when complete); with workers, the least of them',
    labelNames: ['cluster'],
    aggregator: 'min',
    registers: [registry],
    collect() {
      this.reset();
      for (const { cluster, t } of topologies()) this.set({ cluster }, t.slotsCovered);
    },
  });
  // every worker reloads on its own: the largest count, so that one reload counts once
  const reloads = view.reloads;
  mirrorCounter(registry, 'aster_reloads_total', 'config reloads by result: ok (applied), failed (refused or failed; the old config keeps serving)', ['result'], () => {
    if (reloads === undefined) return [];
    const r = reloads();
    return [
      [{ result: 'ok' }, r.ok],
      [{ result: 'failed' }, r.failed],
    ];
  }, 'max');
  // per request: commands by command and result (aster_commands_total), errors by kind
  // (aster_front_error_total, aster_errors_total), latency histograms, backend results
  registerRequestMetrics(registry, view);
  return registry;
}

/**
 * The primary's own registry when workers run: identity (build info, version, worker count),
 * worker restarts, and the primary's process metrics (labelled `worker="primary"`). The
 * workers' registries are added to it at scrape time (see `sumRegistries`).
 */
export function buildPrimaryRegistry(p: { version: string; workers: () => number; restarts: () => number }): Registry {
  const registry = new Registry();
  registerProcessMetrics(registry, { worker: 'primary' });
  registerIdentity(registry, p.version, p.workers);
  mirrorCounter(registry, 'aster_worker_restarts_total', 'workers started to replace one that exited', [], () => [[{}, p.restarts()]]);
  return registry;
}

function registerIdentity(registry: Registry, version: string, threads: () => number): void {
  new Gauge({ name: 'aster_build_info', help: 'aster-proxy build (value 1)', labelNames: ['version', 'node'], registers: [registry] }).set({ version, node: process.version }, 1);
  new Gauge({ name: 'aster_version', help: 'aster-proxy version (value 1)', labelNames: ['version'], registers: [registry] }).set({ version }, 1);
  new Gauge({
    name: 'aster_thread_count',
    help: 'workers (event loops) running',
    registers: [registry],
    collect() {
      this.set(threads());
    },
  });
}

/**
 * Node's process metrics (prom-client defaults: CPU seconds, resident memory, heap, event-loop
 * lag, GC...) with `labels`, and aster's process gauges, summed over processes by the primary.
 */
function registerProcessMetrics(registry: Registry, labels: Labels): void {
  collectDefaultMetrics({ register: registry, labels });
  new Gauge({
    name: 'aster_memory_usage',
    help: 'resident memory, bytes (with workers: of every process of the proxy together)',
    registers: [registry],
    collect() {
      this.set(process.memoryUsage.rss());
    },
  });
  let lastCpu = process.cpuUsage();
  let lastAt = process.hrtime.bigint();
  new Gauge({
    name: 'aster_cpu_usage',
    help: 'CPU used since the previous scrape, percent of one core (with workers: every process together)',
    registers: [registry],
    collect() {
      const now = process.hrtime.bigint();
      const cpu = process.cpuUsage(lastCpu);
      const elapsedUs = Number(now - lastAt) / 1000;
      lastCpu = process.cpuUsage();
      lastAt = now;
      this.set(elapsedUs > 0 ? ((cpu.user + cpu.system) / elapsedUs) * 100 : 0);
    },
  });
}

/** A counter that mirrors running totals kept elsewhere (read at scrape time). */
export function mirrorCounter(
  registry: Registry,
  name: string,
  help: string,
  labelNames: string[],
  read: () => Array<[Labels, number]>,
  aggregator: Aggregator = 'sum',
): void {
  const seen = new Map<string, number>();
  new Counter({
    name,
    help,
    labelNames,
    aggregator,
    registers: [registry],
    collect() {
      for (const [labels, total] of read()) {
        const key = JSON.stringify(labels);
        const before = seen.get(key) ?? 0;
        if (total >= before) this.inc(labels, total - before);
        seen.set(key, total);
      }
    },
  });
}

// -----------------------------------------------------------------------------------------------
// Summing workers

/** One metric of `Registry.getMetricsAsJSON()`: what a worker sends its primary per scrape. */
export interface MetricSnapshot {
  name: string;
  help: string;
  type: string;
  aggregator?: string;
  values: Array<{ value: number; labels: Record<string, string | number>; metricName?: string }>;
}

/** A registry's metrics as plain data. */
export async function snapshotOf(registry: Registry): Promise<MetricSnapshot[]> {
  return (await registry.getMetricsAsJSON()) as unknown as MetricSnapshot[];
}

/**
 * One registry from several snapshots, each metric combined with its `aggregator` (sum unless
 * the metric says otherwise), in Prometheus text.
 */
export function sumRegistries(snapshots: MetricSnapshot[][]): Promise<{ contentType: string; body: string }> {
  const registry = AggregatorRegistry.aggregate(snapshots as unknown as Parameters<typeof AggregatorRegistry.aggregate>[0]);
  return registry.metrics().then((body) => ({ contentType: registry.contentType, body }));
}

/**
 * The counters and histograms of workers that have exited, kept so that the sums over workers
 * never go down when a worker is replaced (a replacement starts from zero). Only metrics summed
 * across workers are kept; gauges leave with their worker.
 */
export class RetiredCounters {
  private readonly metrics = new Map<string, { meta: Omit<MetricSnapshot, 'values'>; values: Map<string, MetricSnapshot['values'][number]> }>();

  add(snapshot: readonly MetricSnapshot[]): void {
    for (const m of snapshot) {
      if ((m.type !== 'counter' && m.type !== 'histogram') || (m.aggregator ?? 'sum') !== 'sum') continue;
      let kept = this.metrics.get(m.name);
      if (kept === undefined) {
        kept = { meta: { name: m.name, help: m.help, type: m.type, aggregator: m.aggregator }, values: new Map() };
        this.metrics.set(m.name, kept);
      }
      for (const v of m.values) {
        const key = `${v.metricName ?? ''}\n${labelKey(v.labels)}`;
        const before = kept.values.get(key);
        if (before === undefined) kept.values.set(key, { value: v.value, labels: { ...v.labels }, ...(v.metricName ? { metricName: v.metricName } : {}) });
        else before.value += v.value;
      }
    }
  }

  snapshot(): MetricSnapshot[] {
    return [...this.metrics.values()].map((m) => ({ ...m.meta, values: [...m.values.values()].map((v) => ({ ...v })) }));
  }
}

function labelKey(labels: Record<string, string | number>): string {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${String(labels[k])}`)
    .join(',');
}

// -----------------------------------------------------------------------------------------------
// HTTP

/** What the HTTP endpoint serves. */
export interface MetricsEndpoints {
  /** the `/metrics` page */
  metrics: () => Promise<{ contentType: string; body: string }>;
  /** `/ready`: 200 when true, else 503 */
  ready: () => boolean;
}

/** Serves `/metrics`, `/healthz` (alive) and `/ready` (listening) for one proxy process. */
export function serveMetrics(host: string, port: number, view: MetricsView): Promise<MetricsServer> {
  const registry = buildRegistry(view);
  return serveEndpoints(host, port, {
    metrics: () => registry.metrics().then((body) => ({ contentType: registry.contentType, body })),
    ready: view.ready,
  });
}

/** Serves `/metrics`, `/healthz` (alive: 200 while the process runs) and `/ready` over HTTP. */
export function serveEndpoints(host: string, port: number, endpoints: MetricsEndpoints): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      endpoints
        .metrics()
        .then(({ contentType, body }) => {
          res.writeHead(200, { 'content-type': contentType });
          res.end(body);
        })
        .catch((err: unknown) => {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(`${String(err)}\n`);
        });
    } else if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
    } else if (path === '/ready') {
      const ok = endpoints.ready();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' });
      res.end(ok ? 'ready\n' : 'not ready\n');
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found: try /metrics, /healthz or /ready\n');
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      const addr = server.address() as AddressInfo;
      resolve({
        port: addr.port,
        close: () =>
          new Promise<void>((res) => {
            server.close(() => res());
            // a scraper's idle keep-alive connection must not hold the shutdown
            server.closeIdleConnections();
          }),
      });
    });
  });
}
