import { config as rxConfig } from 'rxjs';
import type { Logger } from 'pino';
import type { ClusterConfig, Config } from '../config/types.js';
import { serveMetrics, type MetricsServer } from '../sinks/metrics.js';
import { VERSION } from '../sources/package-info.js';
import { startStandalone, type RunningCluster } from './standalone.js';

export interface ProxyOptions {
  /** address announced in CLUSTER replies */
  ip: string;
  /** Prometheus port; 0 = off */
  metricsPort: number;
  reload: boolean;
  logger: Logger;
}

export interface RunningProxy {
  /** the listeners, with their bound ports (a config port of 0 binds a free one) */
  listeners: Array<{ cluster: string; host: string; port: number }>;
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
  if (opts.reload) opts.logger.warn('--reload: hot reload is not implemented in this version yet; restart the proxy to apply config changes');
  const running: RunningCluster[] = [];
  let metrics: MetricsServer | undefined;
  try {
    for (const cluster of config.clusters) {
      if (cluster.cacheType !== 'redis') {
        throw new Error(
          `${config.file}: cluster "${cluster.name}": cache_type "${cluster.cacheType}" is not supported by this version of aster-proxy yet (only "redis", the twemproxy mode)`,
        );
      }
      for (const note of notYetApplied(cluster)) opts.logger.warn({ cluster: cluster.name }, note);
      running.push(await startStandalone(cluster, VERSION, opts.logger));
    }
    if (opts.metricsPort > 0) {
      metrics = await serveMetrics('0.0.0.0', opts.metricsPort, {
        version: VERSION,
        threads: 1,
        clusters: () => running.map((r) => ({ name: r.name, stats: r.stats, backends: r.backends() })),
        ready: () => running.length === config.clusters.length,
      });
      opts.logger.info({ port: metrics.port }, 'metrics on /metrics');
    }
  } catch (err) {
    await Promise.all(running.map((r) => r.close()));
    throw err;
  }
  return {
    listeners: running.map((r) => ({ cluster: r.name, host: r.listener.host, port: r.listener.port })),
    metricsPort: metrics?.port,
    shutdown: async (deadlineMs: number) => {
      await Promise.all(running.map((r) => r.drain(deadlineMs)));
      await Promise.all([...running.map((r) => r.close()), metrics?.close()]);
    },
    close: async () => {
      await Promise.all([...running.map((r) => r.close()), metrics?.close()]);
    },
  };
}

/** Settings that parse but that this version does not act on yet: said out loud, not ignored. */
function notYetApplied(c: ClusterConfig): string[] {
  const notes: string[] = [];
  if (c.thread > 1) notes.push(`thread = ${c.thread}: this version runs one worker per process; workers come in a later version`);
  if (c.backupRequest.enabled) notes.push('backup_request: backup requests are not implemented yet (cluster mode feature)');
  return notes;
}
