import http from 'node:http';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { SessionStats } from '../streams/session.js';
import { registerRequestMetrics } from './request-metrics.js';

/** What the metrics endpoint reads at scrape time (nothing is counted per request here). */
export interface MetricsView {
  version: string;
  threads: number;
  clusters: () => Array<{
    name: string;
    stats: SessionStats;
    backends: Array<{ label: string; state: string }>;
  }>;
  /** true once every listener is bound */
  ready: () => boolean;
}

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

/**
 * Builds the registry. Every metric is declared here, in one place. Values are read from
 * the live counters when Prometheus scrapes, so the request path pays nothing for them.
 * The aster names are kept for existing dashboards; Prometheus-style names stand beside them.
 */
export function buildRegistry(view: MetricsView): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  new Gauge({ name: 'aster_version', help: 'aster-proxy version (value 1)', labelNames: ['version'], registers: [registry] }).set({ version: view.version }, 1);
  new Gauge({ name: 'aster_thread_count', help: 'worker threads', registers: [registry] }).set(view.threads);
  new Gauge({
    name: 'aster_front_connection',
    help: 'client connections open now',
    labelNames: ['cluster'],
    registers: [registry],
    collect() {
      for (const c of view.clusters()) this.set({ cluster: c.name }, c.stats.connectedClients);
    },
  });
  const perCluster = (read: (c: ClusterView) => number) => () =>
    view.clusters().map((c): [Labels, number] => [{ cluster: c.name }, read(c)]);
  mirrorCounter(registry, 'aster_front_connection_incr', 'client connections accepted', ['cluster'], perCluster((c) => c.stats.totalConnections));
  mirrorCounter(registry, 'aster_client_connections_total', 'client connections accepted', ['cluster'], perCluster((c) => c.stats.totalConnections));
  mirrorCounter(registry, 'aster_commands_total', 'commands received from clients', ['cluster'], perCluster((c) => c.stats.totalCommands));
  mirrorCounter(registry, 'aster_protocol_errors_total', 'client connections closed for a protocol error', ['cluster'], perCluster((c) => c.stats.protocolErrors));
  mirrorCounter(registry, 'aster_internal_errors_total', 'requests answered with an internal error', ['cluster'], perCluster((c) => c.stats.internalErrors));
  mirrorCounter(registry, 'aster_global_error', 'errors (client protocol errors and internal errors)', [], () => [
    [{}, view.clusters().reduce((sum, c) => sum + c.stats.protocolErrors + c.stats.internalErrors, 0)],
  ]);
  new Gauge({
    name: 'aster_backend_health_status',
    help: 'backend connection state: 1 up, 0 down or connecting',
    labelNames: ['cluster', 'backend'],
    registers: [registry],
    collect() {
      this.reset();
      for (const c of view.clusters()) for (const b of c.backends) this.set({ cluster: c.name, backend: b.label }, b.state === 'up' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'aster_memory_usage',
    help: 'resident memory of the process, bytes',
    registers: [registry],
    collect() {
      this.set(process.memoryUsage.rss());
    },
  });
  let lastCpu = process.cpuUsage();
  let lastAt = process.hrtime.bigint();
  new Gauge({
    name: 'aster_cpu_usage',
    help: 'CPU used by the process since the previous scrape, percent of one core',
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
  registerRequestMetrics(registry, view);
  return registry;
}

type Labels = Record<string, string>;
type ClusterView = ReturnType<MetricsView['clusters']>[number];

/** A counter that mirrors running totals kept elsewhere (read at scrape time). */
function mirrorCounter(registry: Registry, name: string, help: string, labelNames: string[], read: () => Array<[Labels, number]>): void {
  const seen = new Map<string, number>();
  new Counter({
    name,
    help,
    labelNames,
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

/** Serves `/metrics`, `/healthz` (alive) and `/ready` (listening) over HTTP. */
export function serveMetrics(host: string, port: number, view: MetricsView): Promise<MetricsServer> {
  const registry = buildRegistry(view);
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      registry
        .metrics()
        .then((body) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(body);
        })
        .catch((err: unknown) => {
          res.writeHead(500);
          res.end(String(err));
        });
    } else if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
    } else if (path === '/ready') {
      const ok = view.ready();
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
      const addr = server.address() as import('node:net').AddressInfo;
      resolve({ port: addr.port, close: () => new Promise<void>((res) => server.close(() => res())) });
    });
  });
}
