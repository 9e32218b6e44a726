import { interval, share, type Observable } from 'rxjs';
import type { Logger } from 'pino';
import type { ClusterConfig, ServerSpec } from '../config/types.js';
import { ShardMap } from '../routing/shard-map.js';
import { BackendPool, type PoolServer, type PoolSettings } from '../sources/backend-pool.js';
import { openSubscriber, type SubscriberOptions } from '../sources/subscriber.js';
import type { SubKind } from './pubsub.js';
import { BlockingPool, tooManyBlocked, type BlockingOwner } from '../sources/blocking-pool.js';
import { errorFrame } from '../protocol/encode.js';
import { immediateScheduler } from '../sources/scheduler.js';
import { listenTcp } from '../sources/socket.js';
import type { Proto } from '../protocol/encode.js';
import type { ReplyTarget } from '../sources/backend.js';
import { proxyUsers, type ProxyFacts } from '../commands/local.js';
import type { SessionStats, Upstream } from './session.js';
import { serveClients } from './front.js';
import type { RunningCluster } from './running-cluster.js';
import { clientPolicy, followClientPolicy } from './client-policy.js';
import { Slowlog } from './slowlog.js';
import { FrontError, RequestStats } from '../util/request-stats.js';
import { startHealth } from './health.js';

/** A standalone cluster also shows its key placement (health checks eject and restore servers on it). */
export interface StandaloneCluster extends RunningCluster {
  shards(): ShardMap;
}

const poolSettings = (cfg: ClusterConfig): PoolSettings => ({
  readTimeoutMs: cfg.readTimeout,
  connectTimeoutMs: cfg.writeTimeout,
  writeTimeoutMs: cfg.writeTimeout,
  keepAliveSec: cfg.tcpKeepalive,
  password: cfg.backendPassword,
  username: cfg.backendUsername,
  tls: cfg.backendTls,
  limits: { maxBulkBytes: cfg.limits.maxBulkBytes, maxDepth: cfg.limits.maxReplyDepth },
});

/**
 * A standalone (twemproxy-mode) cluster: one listener, keys sharded over the servers with
 * ketama, one shared pipelined connection per backend (and per RESP version in use).
 */
export async function startStandalone(initial: ClusterConfig, version: string, logger: Logger): Promise<StandaloneCluster> {
  const log = logger.child({ cluster: initial.name });
  let cfg = initial;
  let shards = new ShardMap(cfg.servers, cfg.hashTag, cfg.ejectMode);
  const tickMs = Math.max(5, Math.min(100, Math.floor(cfg.readTimeout / 10)));
  const ticks$: Observable<number> = interval(tickMs, immediateScheduler).pipe(share());
  const pool = new BackendPool(poolSettings(cfg), ticks$, log, (addr, kind) => health.report(addr, kind));
  const health = startHealth(cfg, { shards: () => shards, logger: log, onRestore: (srv) => pool.retryNow(srv.addr) });
  pool.sync(cfg.servers);
  const blocking = new BlockingPool(poolSettings(cfg), ticks$, log, cfg.maxBlockingConnections);

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
  const listener = await listenTcp(cfg.listenHost, cfg.listenPort, cfg.tls).catch((err: unknown) => {
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
    users: proxyUsers(cfg.users),
    slowlog,
    infoSections: () => [
      ...front.infoSections(),
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
    ...clientPolicy(cfg),
    facts,
    logger: log,
    stats,
    slowlog,
    backendFor: (key: Buffer, start?: number, end?: number) => shards.backendFor(key, start, end),
    nodeCount: () => shards.servers.length,
    sendToNode: (i: number, proto: Proto, raw: Buffer, target: ReplyTarget, seq: number) => up.send(i, proto, raw, target, seq, false),
    sendBlocking(backend: number, proto: Proto, raw: Buffer, target: ReplyTarget, seq: number, owner: BlockingOwner) {
      if (backend < 0) {
        stats.requests.errors[FrontError.ejected]++;
        target.deliver(seq, EJECTED);
        return;
      }
      const srv = shards.servers[backend];
      if (!blocking.send(srv, proto, raw, target, seq, owner, backendStats(srv))) target.deliver(seq, tooManyBlocked(cfg.maxBlockingConnections, srv.alias ?? srv.addr));
    },
    sendBlockingToNode(i: number, proto: Proto, raw: Buffer, target: ReplyTarget, seq: number, owner: BlockingOwner, before?: Buffer) {
      const srv = shards.servers[i];
      if (!blocking.send(srv, proto, raw, target, seq, owner, backendStats(srv), before)) target.deliver(seq, tooManyBlocked(cfg.maxBlockingConnections, srv.alias ?? srv.addr));
    },
    placeSubscription(kind: SubKind, name: Buffer) {
      // patterns can match channels of every server; a channel lives where PUBLISH sends it
      if (kind === 'pattern') return [...shards.servers];
      const b = shards.backendFor(name);
      return b < 0 ? EJECTED : [shards.servers[b]];
    },
    subscriber: (node: PoolServer, proto: Proto, events: Pick<SubscriberOptions, 'onFrame' | 'onUp' | 'onDown'>) => openSubscriber(node, proto, poolSettings(cfg), log, events),
    dedicated(backend: number, proto: Proto) {
      if (backend < 0) return EJECTED;
      const srv = shards.servers[backend];
      const conn = pool.dedicated(srv, proto);
      conn.stats = backendStats(srv);
      return conn;
    },
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

  const front = serveClients(listener, up, stats, () => cfg, log);

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
      blocking.configure(poolSettings(next), next.maxBlockingConnections);
      countBackends();
      slowlog.configure(next.slowlogLogSlowerThan, next.slowlogMaxLen);
      health.follow(next);
      followClientPolicy(up, facts, listener, next);
    },
    drain: (deadlineMs: number) => front.drain(deadlineMs),
    async close() {
      await front.close();
      health.close();
      pool.close();
      blocking.close();
    },
  };
}

const EJECTED = errorFrame('ERR the server that owns this key is out of service (ejected by health checks)');
