import { interval, share, type Observable } from 'rxjs';
import type { Logger } from 'pino';
import type { ClusterConfig, ServerSpec } from '../config/types.js';
import { ShardMap } from '../routing/shard-map.js';
import { BackendPool, type PoolSettings } from '../sources/backend-pool.js';
import { errorFrame } from '../protocol/encode.js';
import { immediateScheduler } from '../sources/scheduler.js';
import { listenTcp, type Listener } from '../sources/socket.js';
import type { Proto } from '../protocol/encode.js';
import type { ReplyTarget } from '../sources/backend.js';
import type { ProxyFacts } from '../commands/local.js';
import { runSession, type Session, type SessionStats, type Upstream } from './session.js';
import { Slowlog } from './slowlog.js';
import { FrontError, RequestStats } from '../util/request-stats.js';
import { startHealth, type BackendHealth } from './health.js';

export interface RunningCluster {
  name: string;
  listener: Listener;
  stats: SessionStats;
  /** the config it runs on now */
  config(): ClusterConfig;
  /** the current key placement (health checks eject and restore servers on it) */
  shards(): ShardMap;
  /** state of each backend's shared RESP2 connection */
  backends(): Array<{ label: string; state: string }>;
  /** health checks: each backend in service or not, and how often it was ejected and came back */
  health(): BackendHealth[];
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

const poolSettings = (cfg: ClusterConfig): PoolSettings => ({
  readTimeoutMs: cfg.readTimeout,
  connectTimeoutMs: cfg.writeTimeout,
  keepAliveSec: cfg.tcpKeepalive,
  password: cfg.backendPassword,
  limits: { maxBulkBytes: cfg.limits.maxBulkBytes, maxDepth: cfg.limits.maxReplyDepth },
});

/**
 * A standalone (twemproxy-mode) cluster: one listener, keys sharded over the servers with
 * ketama, one shared pipelined connection per backend (and per RESP version in use).
 */
export async function startStandalone(initial: ClusterConfig, version: string, logger: Logger): Promise<RunningCluster> {
  const log = logger.child({ cluster: initial.name });
  let cfg = initial;
  let shards = new ShardMap(cfg.servers, cfg.hashTag, cfg.ejectMode);
  const tickMs = Math.max(5, Math.min(100, Math.floor(cfg.readTimeout / 10)));
  const ticks$: Observable<number> = interval(tickMs, immediateScheduler).pipe(share());
  const pool = new BackendPool(poolSettings(cfg), ticks$, log, (addr, kind) => health.report(addr, kind));
  const health = startHealth(cfg, { shards: () => shards, logger: log, onRestore: (srv) => pool.retryNow(srv.addr) });
  pool.sync(cfg.servers);

  let rejectedClients = 0; // connections refused at maxclients
  const stats: SessionStats = { connectedClients: 0, totalConnections: 0, totalCommands: 0, protocolErrors: 0, internalErrors: 0, requests: new RequestStats() };
  const slowlog = new Slowlog(cfg.slowlogLogSlowerThan, cfg.slowlogMaxLen);
  /** each backend connection counts into its backend's stats (a RESP3 one gets them on first use) */
  const backendStats = (srv: ServerSpec) => stats.requests.backend(srv.alias ?? srv.addr);
  const countBackends = (): void => {
    for (const srv of cfg.servers) {
      const conn = pool.get(srv, 2);
      conn.stats ??= backendStats(srv);
    }
  };
  countBackends();
  // INFO's instantaneous_ops_per_sec: commands per second since the previous sample, a sample
  // being taken by an INFO at least a second after the one before (no timer for it)
  let opsAt = Date.now();
  let opsCount = 0;
  let opsRate = 0;
  const opsPerSec = (): number => {
    const now = Date.now();
    if (now - opsAt >= 1000) {
      opsRate = Math.round(((stats.totalCommands - opsCount) * 1000) / (now - opsAt));
      opsAt = now;
      opsCount = stats.totalCommands;
    }
    return opsRate;
  };
  const listener = await listenTcp(cfg.listenHost, cfg.listenPort).catch((err: unknown) => {
    health.close();
    pool.close();
    throw err;
  });
  const backendLine = (srv: ServerSpec, i: number): [string, string] => [
    `backend${i}`,
    `name=${srv.name},addr=${srv.addr},weight=${srv.weight},live=${shards.isLive(i) ? 1 : 0},state=${pool.state(srv.addr)},inflight=${pool.inFlight(srv.addr)}`,
  ];
  const facts: ProxyFacts = {
    version,
    mode: 'standalone',
    clusterName: cfg.name,
    port: listener.port,
    startedAt: Date.now(),
    password: cfg.password,
    slowlog,
    infoSections: () => [
      [
        'Clients',
        [
          ['connected_clients', stats.connectedClients],
          ['blocked_clients', 0],
        ],
      ],
      [
        'Stats',
        [
          ['total_connections_received', stats.totalConnections],
          ['total_commands_processed', stats.totalCommands],
          ['instantaneous_ops_per_sec', opsPerSec()],
          ['rejected_connections', rejectedClients],
          ['total_error_replies', stats.requests.failed],
          ['protocol_errors', stats.protocolErrors],
        ],
      ],
      [
        'Proxy',
        [
          ['cluster', cfg.name],
          ['cache_type', cfg.cacheType],
          ['hash_tag', cfg.hashTag ?? ''],
          ['slowlog_log_slower_than', slowlog.thresholdUs],
          ['slowlog_max_len', slowlog.maxLen],
          ['backends', cfg.servers.length],
          ...cfg.servers.map(backendLine),
        ],
      ],
    ],
  };
  const up: Upstream = {
    denied: new Set(cfg.denyCommands),
    facts,
    limits: cfg.limits,
    logger: log,
    stats,
    slowlog,
    backendFor: (key: Buffer) => shards.backendFor(key),
    backendCount: () => shards.servers.length,
    send(backend: number, proto: Proto, raw: Buffer, target: ReplyTarget, seq: number) {
      if (backend < 0) {
        stats.requests.errors[FrontError.ejected]++;
        target.deliver(seq, EJECTED);
        return;
      }
      const srv = shards.servers[backend];
      const conn = pool.get(srv, proto);
      conn.stats ??= backendStats(srv);
      conn.send(raw, target, seq);
    },
  };

  let nextId = 1;
  let onNoSessions: (() => void) | undefined; // a drain waiting for the last session to end
  const sessions = new Set<Session>();
  const accepting = listener.connections$.subscribe((socket) => {
    if (stats.connectedClients >= cfg.maxClients) {
      // as Redis: tell the client why, then close; the client that is over counts as an error
      socket.on('error', () => undefined);
      // destroyed once written: nobody reads this socket, so it would never see the peer's FIN
      socket.end(MAX_CLIENTS, () => socket.destroy());
      rejectedClients++;
      stats.requests.errors[FrontError.maxclients]++;
      return;
    }
    try {
      if (cfg.tcpKeepalive > 0) socket.setKeepAlive(true, cfg.tcpKeepalive * 1000);
      socket.setNoDelay(true);
      const session = runSession(socket, up, nextId++);
      sessions.add(session);
      session.subscription.add(() => {
        sessions.delete(session);
        if (sessions.size === 0) onNoSessions?.();
      });
    } catch (err) {
      // one connection that could not be set up is dropped; the listener goes on
      log.error({ err }, 'could not start a client session');
      socket.destroy();
    }
  });

  return {
    name: cfg.name,
    listener,
    stats,
    config: () => cfg,
    shards: () => shards,
    backends: () => cfg.servers.map((srv) => ({ label: srv.alias ?? srv.addr, state: pool.state(srv.addr) })),
    health: () => health.status(),
    reconfigure(next: ClusterConfig) {
      cfg = next;
      const old = shards;
      shards = new ShardMap(next.servers, next.hashTag, next.ejectMode);
      // a server that stays keeps its health state
      next.servers.forEach((srv, i) => {
        const j = old.indexOf(srv.addr);
        if (j >= 0 && !old.isLive(j)) shards.eject(i);
      });
      pool.sync(next.servers, poolSettings(next));
      countBackends();
      slowlog.configure(next.slowlogLogSlowerThan, next.slowlogMaxLen);
      health.follow(next);
      facts.password = next.password;
      up.limits = next.limits;
      up.denied = new Set(next.denyCommands);
    },
    async drain(deadlineMs: number) {
      accepting.unsubscribe();
      // stop listening now; `close` destroys what is still open at the deadline
      void listener.close().catch(() => undefined);
      for (const session of [...sessions]) session.end();
      if (sessions.size === 0) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deadlineMs);
        onNoSessions = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    },
    async close() {
      accepting.unsubscribe();
      // server.close() resolves only once every connection has ended: end them first
      const closing = listener.close().catch(() => undefined);
      for (const session of [...sessions]) session.subscription.unsubscribe();
      await closing;
      health.close();
      pool.close();
    },
  };
}

const MAX_CLIENTS = errorFrame('ERR max number of clients reached');

const EJECTED = errorFrame('ERR the server that owns this key is out of service (ejected by health checks)');
