import { createHash } from 'node:crypto';
import { interval, share } from 'rxjs';
import type { Logger } from 'pino';
import type { ClusterConfig } from '../config/types.js';
import type { Proto } from '../protocol/encode.js';
import { keySlot, SLOTS } from '../routing/crc16.js';
import { SlotMap, type NodeAddr } from '../routing/slot-map.js';
import type { ReplyTarget } from '../sources/backend.js';
import { BackendPool, type PoolServer, type PoolSettings } from '../sources/backend-pool.js';
import { openSubscriber, type SubscriberOptions } from '../sources/subscriber.js';
import type { SubKind } from './pubsub.js';
import { BlockingPool, tooManyBlocked, type BlockingOwner } from '../sources/blocking-pool.js';
import { immediateScheduler } from '../sources/scheduler.js';
import { listenTcp } from '../sources/socket.js';
import { proxyUsers, type ProxyFacts } from '../commands/local.js';
import { RequestStats } from '../util/request-stats.js';
import { serveClients } from './front.js';
import type { RunningCluster } from './running-cluster.js';
import { clientPolicy, followClientPolicy } from './client-policy.js';
import type { SessionStats, Upstream } from './session.js';
import { Slowlog } from './slowlog.js';
import { followTopology } from './cluster-topology.js';
import { addrOf, clusterRoutes, NO_MAP, SLOT_NOT_SERVED } from './cluster-routes.js';

const poolSettings = (cfg: ClusterConfig, readOnly: boolean): PoolSettings => ({
  readTimeoutMs: cfg.readTimeout,
  connectTimeoutMs: cfg.writeTimeout,
  writeTimeoutMs: cfg.writeTimeout,
  keepAliveSec: cfg.tcpKeepalive,
  password: cfg.backendPassword,
  username: cfg.backendUsername,
  tls: cfg.backendTls,
  readOnly,
  limits: { maxBulkBytes: cfg.limits.maxBulkBytes, maxDepth: cfg.limits.maxReplyDepth },
});

/**
 * A Redis Cluster behind one listener. Clients see a single node that owns every slot (the
 * proxy answers CLUSTER SLOTS/NODES/... about itself); behind it, each key goes to the master
 * that owns its slot, over one shared pipelined connection per node, following MOVED, ASK,
 * TRYAGAIN and CLUSTERDOWN. This file composes the stages:
 *
 *   cluster-topology.ts   the slot map, fetched with CLUSTER NODES when something asks for it
 *   cluster-routes.ts     each request to its slot's owner (or a replica), redirects, backup races
 *   front.ts, session.ts  the clients
 */
export async function startCluster(initial: ClusterConfig, version: string, announceIp: string, logger: Logger): Promise<RunningCluster> {
  const log = logger.child({ cluster: initial.name });
  let cfg = initial;
  const slots = new SlotMap();
  const tickMs = Math.max(5, Math.min(100, Math.floor(cfg.readTimeout / 10)));
  const ticks$ = interval(tickMs, immediateScheduler).pipe(share());
  const pool = new BackendPool(poolSettings(cfg, false), ticks$, log);
  const replicaPool = new BackendPool(poolSettings(cfg, true), ticks$, log);
  const blocking = new BlockingPool(poolSettings(cfg, false), ticks$, log, cfg.maxBlockingConnections);
  const stats: SessionStats = { connectedClients: 0, totalConnections: 0, totalCommands: 0, protocolErrors: 0, internalErrors: 0, requests: new RequestStats() };
  const slowlog = new Slowlog(cfg.slowlogLogSlowerThan, cfg.slowlogMaxLen);
  const seeds = (): NodeAddr[] => cfg.servers.map((s) => addrOf(s.host, s.port));
  /** a pool's shared connection to a node, counted under the node's address */
  const conn = (from: BackendPool, node: NodeAddr, proto: Proto) => {
    const c = from.get(node, proto);
    c.stats ??= stats.requests.backend(node.addr);
    return c;
  };

  /** connections follow the map: the masters and the seeds (replicas too with read_from_slave) */
  const syncPools = (): void => {
    const wanted = new Map<string, NodeAddr>();
    for (const n of [...slots.masters(), ...seeds()]) wanted.set(n.addr, n);
    pool.sync([...wanted.values()], poolSettings(cfg, false));
    const replicas = cfg.readFromSlave || cfg.backupRequest.enabled ? slots.masters().flatMap((m) => m.replicas) : [];
    replicaPool.sync(replicas, poolSettings(cfg, true));
    for (const n of wanted.values()) conn(pool, n, 2);
  };

  const topology = followTopology({
    slots,
    seeds,
    conn: (node, proto) => conn(pool, node, proto),
    state: (addr) => pool.state(addr),
    periodMs: () => cfg.fetchInterval,
    changed: syncPools,
    log,
  });
  const topo = topology.stats;
  const refresh = topology.refresh;
  const routes = clusterRoutes({
    slots,
    pool,
    replicaPool,
    blocking,
    cfg: () => cfg,
    conn,
    backendStats: (addr) => stats.requests.backend(addr),
    refresh,
    changed: syncPools,
    redirects: topo.redirects,
  });
  const backup = routes.backup;

  syncPools();

  // ---- clients ---------------------------------------------------------------------------------
  const listener = await listenTcp(cfg.listenHost, cfg.listenPort, cfg.tls).catch((err: unknown) => {
    topology.close();
    routes.close();
    pool.close();
    replicaPool.close();
    throw err;
  });
  const myId = createHash('sha1').update(`aster-proxy:${cfg.name}:${announceIp}:${listener.port}`).digest('hex');
  const facts: ProxyFacts = {
    version,
    mode: 'cluster',
    clusterName: cfg.name,
    port: listener.port,
    startedAt: Date.now(),
    password: cfg.password,
    users: proxyUsers(cfg.users),
    slowlog,
    cluster: { ip: announceIp, myId, ok: () => slots.coveredSlots === SLOTS },
    infoSections: () => [
      ...front.infoSections(),
      [
        'Proxy',
        [
          ['cluster', cfg.name],
          ['cache_type', cfg.cacheType],
          ['read_from_slave', cfg.readFromSlave ? 1 : 0],
          ['slowlog_log_slower_than', slowlog.thresholdUs],
          ['slowlog_max_len', slowlog.maxLen],
          ['slots_covered', slots.coveredSlots],
          ['topology_fetches', topo.fetched],
          ['topology_fetch_failures', topo.failed],
          ['topology_changes', topo.changes],
          ['topology_stale_slots', topo.staleSlots],
          ['redirects_moved', topo.redirects.moved],
          ['redirects_ask', topo.redirects.ask],
          ['redirects_tryagain', topo.redirects.tryagain],
          ['redirects_clusterdown', topo.redirects.clusterdown],
          ['backup_requests', cfg.backupRequest.enabled ? 1 : 0],
          ['backup_planned', backup.planned],
          ['backup_dispatched', backup.dispatched],
          ['backup_exhausted', backup.exhausted],
          ['backup_primary_wins', backup.primaryWins],
          ['backup_replica_wins', backup.replicaWins],
          ['masters', slots.masters().length],
          ...slots.masters().map((m, i): [string, string] => [
            `master${i}`,
            `id=${m.id},addr=${m.addr},state=${pool.state(m.addr)},inflight=${pool.inFlight(m.addr)},replicas=${m.replicas.map((r) => r.addr).join('|')}`,
          ]),
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
    backendFor: keySlot,
    nodeCount: () => slots.masters().length,
    sendToNode(i: number, proto: Proto, raw: Buffer, target: ReplyTarget, seq: number) {
      const node = slots.masters()[i];
      if (node === undefined) target.deliver(seq, NO_MAP);
      else conn(pool, node, proto).send(raw, target, seq);
    },
    dedicated(slot: number, proto: Proto) {
      const owner = slots.ownerOf(slot);
      if (owner === undefined) {
        refresh('uncovered slot');
        return slots.coveredSlots === 0 ? NO_MAP : SLOT_NOT_SERVED;
      }
      const c = pool.dedicated(owner, proto);
      c.stats = stats.requests.backend(owner.addr);
      return c;
    },
    onRedirect: () => refresh('MOVED in a transaction or for a subscription'),
    placeSubscription(_kind: SubKind, name: Buffer) {
      // PUBLISH reaches every node of a cluster: a channel or a pattern may live on any node
      // (the owner of its name's slot spreads them); a sharded channel on its slot's owner
      const owner = slots.ownerOf(keySlot(name));
      if (owner !== undefined) return [owner];
      refresh('uncovered slot');
      return slots.coveredSlots === 0 ? NO_MAP : SLOT_NOT_SERVED;
    },
    subscriber: (node: PoolServer, proto: Proto, events: Pick<SubscriberOptions, 'onFrame' | 'onUp' | 'onDown'>) => openSubscriber(node, proto, poolSettings(cfg, false), log, events),
    sendBlocking: routes.sendBlocking,
    sendBlockingToNode(i: number, proto: Proto, raw: Buffer, target: ReplyTarget, seq: number, owner: BlockingOwner, before?: Buffer) {
      const node = slots.masters()[i];
      if (node === undefined) target.deliver(seq, NO_MAP);
      else if (!blocking.send(node, proto, raw, target, seq, owner, stats.requests.backend(node.addr), before)) target.deliver(seq, tooManyBlocked(cfg.maxBlockingConnections, node.addr));
    },
    send: routes.send,
  };
  const front = serveClients(listener, up, stats, () => cfg, log);

  return {
    name: cfg.name,
    listener,
    stats,
    config: () => cfg,
    backends: () => slots.masters().map((m) => ({ label: m.addr, state: pool.state(m.addr) })),
    health: () => [],
    topology: () => ({ ...topo, slotsCovered: slots.coveredSlots }),
    backups: () => ({ ...backup }),
    reconfigure(next: ClusterConfig) {
      const intervalChanged = next.fetchInterval !== cfg.fetchInterval;
      cfg = next;
      syncPools();
      blocking.configure(poolSettings(next, false), next.maxBlockingConnections);
      if (intervalChanged) topology.restart();
      slowlog.configure(next.slowlogLogSlowerThan, next.slowlogMaxLen);
      followClientPolicy(up, facts, listener, next);
      refresh('reload');
    },
    drain: (deadlineMs: number) => front.drain(deadlineMs),
    async close() {
      await front.close();
      topology.close();
      routes.close();
      pool.close();
      replicaPool.close();
      blocking.close();
    },
  };
}
