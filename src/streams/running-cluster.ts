import type { ClusterConfig } from '../config/types.js';
import type { Listener } from '../sources/socket.js';
import type { BackendHealth } from './health.js';
import type { SessionStats } from './session.js';
import type { ClusterView } from '../sinks/metrics.js';

/** One cluster of the config, running: its listener, its sessions and its backends. */
export interface RunningCluster {
  name: string;
  listener: Listener;
  stats: SessionStats;
  /** the config it runs on now */
  config(): ClusterConfig;
  /** state of each backend's shared RESP2 connection (cluster mode: each node's) */
  backends(): Array<{ label: string; state: string }>;
  /** health checks: each backend in service or not, and how often it was ejected and came back (none in cluster mode) */
  health(): BackendHealth[];
  /** cluster mode: slot-map fetches, redirects followed, slots covered */
  topology?(): NonNullable<ClusterView['topology']>;
  /** cluster mode: backup requests by event */
  backups?(): NonNullable<ClusterView['backups']>;
  /**
   * Applies a new config of this cluster (same name, listen address and cache type) without
   * dropping client connections: servers added, removed or reweighted, timeouts, passwords,
   * limits. Requests in flight finish on the connections they were sent on.
   */
  reconfigure(cfg: ClusterConfig): void;
  /**
   * Graceful stop: no new connections, clients stop being read, every request already read is
   * answered and its connection closed; resolves when all are closed or at the deadline.
   * Backends stay open until `close`.
   */
  drain(deadlineMs: number): Promise<void>;
  close(): Promise<void>;
}
