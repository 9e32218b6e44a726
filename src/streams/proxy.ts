import { config as rxConfig } from 'rxjs';
import type { Logger } from 'pino';
import type { ClusterConfig, Config } from '../config/types.js';
import { announcedIp } from '../config/address.js';
import { serveMetrics, type MetricsServer, type MetricsView } from '../sinks/metrics.js';
import { VERSION } from '../sources/package-info.js';
import { startStandalone } from './standalone.js';
import { startCluster } from './cluster.js';
import type { RunningCluster } from './running-cluster.js';
import { startReloading, type ClusterHost, type ReloadStatus } from './reload.js';

export interface ProxyOptions {
  /** address announced in CLUSTER replies (by clusters listening on a wildcard address, unless `ipGiven`) */
  ip: string;
  /** `ip` was asked for (--ip): every cluster announces it, whatever its listen_addr */
  ipGiven?: boolean;
  /** Prometheus port; 0 = off */
  metricsPort: number;
  /** where the metrics go (default: served over HTTP on `metricsPort`); a worker hands them to its primary instead */
  exposeMetrics?: (view: MetricsView) => Promise<MetricsServer>;
  /** watch the config file and apply its changes (SIGHUP reloads it either way) */
  reload: boolean;
  /** the file the config was read from: what a reload reads; without it, no reload at all */
  configFile?: string;
  /** on reload, the clusters of the file this process serves (workers); default all */
  selectClusters?: (config: Config) => Config;
  logger: Logger;
}

export interface RunningProxy {
  /** the listeners now (a reload adds and removes some), with their bound ports (a config port of 0 binds a free one) */
  readonly listeners: Array<{ cluster: string; host: string; port: number }>;
  /** reload counters (for metrics): reloads applied, reloads refused or failed */
  reloads?(): ReloadStatus;
  /** the bound metrics port, when metrics are on */
  metricsPort?: number;
  /** graceful stop (see RunningCluster.drain), then close; within `deadlineMs` */
  shutdown(deadlineMs: number): Promise<void>;
  close(): Promise<void>;
}


/** Starts every cluster of the config, each with its own listener. */
export async function startProxy(config: Config, opts: ProxyOptions): Promise<RunningProxy> {
  // an error no subscriber handled is logged, not rethrown on a timer (which would end the process)
  rxConfig.onUnhandledError = (err: unknown) => opts.logger.error({ err }, 'unhandled error in a stream');
  const running: RunningCluster[] = [];
  const startOne = (c: ClusterConfig): Promise<RunningCluster> =>
    c.cacheType === 'redis_cluster' ? startCluster(c, VERSION, announcedIp(c.listenHost, opts.ip, opts.ipGiven === true), opts.logger) : startStandalone(c, VERSION, opts.logger);
  // clusters removed by a reload whose clients are still being answered
  const retiring = new Set<RunningCluster>();
  let wanted: Config = config;
  let closing = false;
  let metrics: MetricsServer | undefined;
  try {
    for (const cluster of config.clusters) {
      for (const note of notYetApplied(cluster)) opts.logger.warn({ cluster: cluster.name }, note);
      running.push(await startOne(cluster));
    }
    if (opts.metricsPort > 0) {
      metrics = await (opts.exposeMetrics ?? ((view: MetricsView) => serveMetrics('0.0.0.0', opts.metricsPort, view)))({
        version: VERSION,
        threads: 1,
        clusters: () => running.map((r) => ({ name: r.name, stats: r.stats, backends: r.backends(), health: r.health(), topology: r.topology?.(), backups: r.backups?.() })),
        ready: () => wanted.clusters.every((c) => running.some((r) => r.name === c.name)),
        // read at scrape time, once `reloading` (below) exists
        reloads: () => reloading?.status() ?? { ok: 0, failed: 0 },
      });
      // (a worker's metrics are served by its primary, which says so)
      if (opts.exposeMetrics === undefined) opts.logger.info({ port: metrics.port }, 'metrics on /metrics');
    }
  } catch (err) {
    await Promise.all(running.map((r) => r.close()));
    throw err;
  }
  const host: ClusterHost = {
    clusters: () => running,
    want: (next) => {
      wanted = next;
    },
    start: async (c) => {
      for (const note of notYetApplied(c)) opts.logger.warn({ cluster: c.name }, note);
      const cluster = await startOne(c);
      if (closing) {
        await cluster.close();
        throw new Error('the proxy is shutting down');
      }
      running.push(cluster);
      opts.logger.info({ cluster: c.name, address: `${cluster.listener.host}:${cluster.listener.port}` }, 'listening');
    },
    retire: async (name, deadlineMs) => {
      const i = running.findIndex((r) => r.name === name);
      if (i < 0) return;
      const [cluster] = running.splice(i, 1);
      retiring.add(cluster);
      try {
        await cluster.drain(deadlineMs);
        await cluster.close();
      } finally {
        retiring.delete(cluster);
      }
    },
  };
  if (opts.reload && opts.configFile === undefined) opts.logger.warn('--reload: no config file to watch');
  const reloading = opts.configFile === undefined ? undefined : startReloading({
          file: opts.configFile,
          watch: opts.reload,
          host,
          logger: opts.logger,
          ...(opts.selectClusters ? { select: opts.selectClusters } : {}),
        });
  const stopReloading = (): void => {
    closing = true;
    reloading?.stop();
  };
  return {
    get listeners() {
      return running.map((r) => ({ cluster: r.name, host: r.listener.host, port: r.listener.port }));
    },
    metricsPort: metrics?.port,
    reloads: () => reloading?.status() ?? { ok: 0, failed: 0, watching: false },
    shutdown: async (deadlineMs: number) => {
      stopReloading();
      await Promise.all([...running, ...retiring].map((r) => r.drain(deadlineMs)));
      await Promise.all([...[...running, ...retiring].map((r) => r.close()), metrics?.close()]);
    },
    close: async () => {
      stopReloading();
      await Promise.all([...[...running, ...retiring].map((r) => r.close()), metrics?.close()]);
    },
  };
}

/** Settings that parse but that this version does not act on yet: said out loud, not ignored. */
function notYetApplied(c: ClusterConfig): string[] {
  const notes: string[] = [];
  if (c.backupRequest.enabled && c.cacheType === 'redis') notes.push('backup_request: backup requests go to replicas, which only cache_type = "redis_cluster" knows; ignored here');
  if (c.cacheType === 'redis_cluster' && c.pingFailLimit > 0) notes.push('ping_fail_limit: health-check ejection applies to cache_type = "redis"; in cluster mode the cluster\'s own failover moves slots, and the proxy follows its slot map');
  return notes;
}
