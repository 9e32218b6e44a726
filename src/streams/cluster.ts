import { createHash } from 'node:crypto';
import { asyncScheduler, concatMap, defer, from, interval, Observable, share, Subject, Subscription, take, tap } from 'rxjs';
import type { Logger } from 'pino';
import type { ClusterConfig } from '../config/types.js';
import { followRedirects, type Redirected } from '../operators/follow-redirects.js';
import { refreshTopology } from '../operators/refresh-topology.js';
import { hedgeRequests, type HedgeEvent } from '../operators/hedge-requests.js';
import { errorFrame, type Proto } from '../protocol/encode.js';
import { encodeCommand } from '../protocol/request-decoder.js';
import { bulkValue } from '../protocol/reply-decoder.js';
import { parseClusterNodes, type ClusterNodeInfo } from '../routing/cluster-nodes.js';
import { keySlot, SLOTS } from '../routing/crc16.js';
import { parseRedirect, type Redirect } from '../routing/redirect.js';
import { SlotMap, type ClusterNode, type NodeAddr } from '../routing/slot-map.js';
import { isConnectionError, type ReplyTarget } from '../sources/backend.js';
import { BackendPool, type PoolServer, type PoolSettings } from '../sources/backend-pool.js';
import { openSubscriber, type SubscriberOptions } from '../sources/subscriber.js';
import type { SubKind } from './pubsub.js';
import { BlockingPool, tooManyBlocked, WAIT_MARK, type BlockingOwner } from '../sources/blocking-pool.js';
import { immediateScheduler } from '../sources/scheduler.js';
import { listenTcp } from '../sources/socket.js';
import { proxyUsers, type ProxyFacts } from '../commands/local.js';
import { RequestStats } from '../util/request-stats.js';
import { serveClients } from './front.js';
import type { RunningCluster } from './running-cluster.js';
import { clientPolicy, followClientPolicy } from './client-policy.js';
import type { SessionStats, Upstream } from './session.js';
import { Slowlog } from './slowlog.js';

/** Redirects one request may follow (aster: 5); one more ends it with an error. */
const MAX_REDIRECTS = 5;
/** least time between two topology fetches, ms */
const REFRESH_GAP_MS = 250;
/** while slots have no owner or a master is unreachable, the topology is fetched this often, ms */
const DEGRADED_REFRESH_MS = 1000;

/** What a cluster-mode cluster counts besides the per-request stats (INFO, metrics). */
export interface TopologyStats {
  /** fetches that got a view */
  fetched: number;
  /** fetches where no node answered */
  failed: number;
  /** views that changed the slot map */
  changes: number;
  /** views refused slot by slot as older than the map (their count of slots) */
  staleSlots: number;
  redirects: Record<Redirect['kind'], number>;
}

const poolSettings = (cfg: ClusterConfig, readOnly: boolean): PoolSettings => ({
  readTimeoutMs: cfg.readTimeout,
  connectTimeoutMs: cfg.writeTimeout,
  keepAliveSec: cfg.tcpKeepalive,
  password: cfg.backendPassword,
  username: cfg.backendUsername,
  tls: cfg.backendTls,
  readOnly,
  limits: { maxBulkBytes: cfg.limits.maxBulkBytes, maxDepth: cfg.limits.maxReplyDepth },
});

/** the answer path of a request without a backup race: straight to its client (shared, not one closure per request) */
const NO_RACE = (a: Attempt, frame: Buffer): void => a.target.deliver(a.seq, frame);

/** One request on its way through the cluster: it follows redirects until a node answers it. */
class Attempt implements ReplyTarget {
  redirects = 0;
  /** where it was sent last */
  node: NodeAddr | undefined;
  /** sent to a replica (a read with read_from_slave) */
  onReplica = false;

  constructor(
    readonly slot: number,
    readonly proto: Proto,
    readonly raw: Buffer,
    readonly target: ReplyTarget,
    readonly seq: number,
    readonly readOnly: boolean,
    private readonly onError: (a: Attempt, frame: Buffer) => void,
    /** a blocking command: sent over a blocking connection, cancelled by its client's owner */
    readonly owner?: BlockingOwner,
  ) {}

  /** its backup-request race (0: none) */
  hedge = 0;
  /** a backup of it went to a replica */
  backedUp = false;

  deliver(_seq: number, frame: Buffer): void {
    if (frame[0] !== 0x2d /* - */) this.answer(frame, true);
    else this.onError(this, frame);
  }

  /** the final answer (`ok` false: a lost connection, too many redirects): the client's, or its race's */
  answer(frame: Buffer, ok: boolean): void {
    if (this.hedge !== 0) this.onAnswer(this, frame, ok);
    else this.target.deliver(this.seq, frame);
  }

  /** set by the cluster when backup requests are on */
  onAnswer: (a: Attempt, frame: Buffer, ok: boolean) => void = NO_RACE;
}

const DISCARD: ReplyTarget = { deliver: () => undefined };
const BACKUP_NONE = errorFrame('ERR no replica for a backup request');

/** a replica's answer that may win a backup race: not a lost connection, a redirect, or a replica not ready */
function isRealAnswer(frame: Buffer): boolean {
  if (frame[0] !== 0x2d /* - */) return true;
  if (isConnectionError(frame) || parseRedirect(frame) !== null) return false;
  const head = frame.toString('latin1', 1, 12);
  return !(head.startsWith('LOADING') || head.startsWith('MASTERDOWN') || head.startsWith('READONLY') || head.startsWith('NOREPLICAS'));
}

/** backup requests: due (planned), sent, refused by the budget, and which side answered first */
export interface BackupStats {
  planned: number;
  dispatched: number;
  exhausted: number;
  primaryWins: number;
  replicaWins: number;
}
const ASKING = encodeCommand(['ASKING']);
const CLUSTER_NODES = encodeCommand(['CLUSTER', 'NODES']);
const NO_MAP = errorFrame('CLUSTERDOWN aster-proxy has no slot map yet: no node answered CLUSTER NODES (it keeps trying)');
const SLOT_NOT_SERVED = errorFrame('CLUSTERDOWN Hash slot not served');

const addrOf = (host: string, port: number): NodeAddr => ({ host, port, addr: `${host}:${port}` });

/**
 * A Redis Cluster behind one listener. Clients see a single node that owns every slot (the
 * proxy answers CLUSTER SLOTS/NODES/... about itself); behind it, each key goes to the master
 * that owns its slot, over one shared pipelined connection per node, following MOVED, ASK,
 * TRYAGAIN and CLUSTERDOWN.
 *
 *   refresh triggers (start, fetch_interval, MOVED, lost nodes, degraded ticks)
 *     ─► throttleRefresh ─► CLUSTER NODES of one node ─► SlotMap.apply (stale views refused)
 *   request ─► slot ─► owner (or a replica for reads) ─► reply ─┬─► client
 *                                                             └─► redirect ─► followRedirects ─► again
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
  const topo: TopologyStats = { fetched: 0, failed: 0, changes: 0, staleSlots: 0, redirects: { moved: 0, ask: 0, tryagain: 0, clusterdown: 0 } };
  const slowlog = new Slowlog(cfg.slowlogLogSlowerThan, cfg.slowlogMaxLen);
  const seeds = (): NodeAddr[] => cfg.servers.map((s) => addrOf(s.host, s.port));
  const counted = <C extends { stats: unknown }>(conn: C, addr: string): C => {
    conn.stats ??= stats.requests.backend(addr);
    return conn;
  };
  const conn = (node: NodeAddr, proto: Proto) => counted(pool.get(node, proto), node.addr);

  /** connections follow the map: the masters and the seeds (replicas too with read_from_slave) */
  const syncPools = (): void => {
    const wanted = new Map<string, NodeAddr>();
    for (const n of [...slots.masters(), ...seeds()]) wanted.set(n.addr, n);
    pool.sync([...wanted.values()], poolSettings(cfg, false));
    const replicas = cfg.readFromSlave || cfg.backupRequest.enabled ? slots.masters().flatMap((m) => m.replicas) : [];
    replicaPool.sync(replicas, poolSettings(cfg, true));
    for (const n of wanted.values()) conn(n, 2);
  };

  // ---- topology ------------------------------------------------------------------------------
  const refresh$ = new Subject<string>();
  const refresh = (why: string): void => refresh$.next(why);
  let fetches = 0;
  let lastFetchError = '';

  /** the nodes to ask, the ones with a live connection first, starting at a different one each time */
  const candidates = (): NodeAddr[] => {
    const all = new Map<string, NodeAddr>();
    for (const n of [...slots.masters(), ...seeds()]) all.set(n.addr, n);
    const list = [...all.values()];
    const rank = (n: NodeAddr): number => ({ up: 0, connecting: 1, idle: 1, down: 2, closed: 3 })[pool.state(n.addr)] ?? 1;
    const start = fetches++ % Math.max(1, list.length);
    const rotated = [...list.slice(start), ...list.slice(0, start)];
    return rotated.sort((a, b) => rank(a) - rank(b));
  };

  /** CLUSTER NODES of one node: its view, or nothing when it cannot answer */
  const askNode = (node: NodeAddr): Observable<ClusterNodeInfo[]> =>
    new Observable<ClusterNodeInfo[]>((sub) => {
      conn(node, 2).send(
        CLUSTER_NODES,
        {
          deliver: (_seq, frame) => {
            if (sub.closed) return;
            const text = bulkValue(frame);
            if (text === null) {
              lastFetchError = `${node.addr}: ${frame.toString('utf8', 1, Math.min(frame.length - 2, 200))}`;
              sub.complete();
              return;
            }
            try {
              const view = parseClusterNodes(text.toString('utf8'));
              // a node that never met another one does not know its own address
              for (const n of view) {
                if (n.myself && n.host === '') {
                  n.host = node.host;
                  n.addr = `${node.host}:${n.port}`;
                }
              }
              sub.next(view);
            } catch (err) {
              lastFetchError = `${node.addr}: ${err instanceof Error ? err.message : String(err)}`;
            }
            sub.complete();
          },
        },
        0,
      );
    });

  const fetchView = (): Observable<ClusterNodeInfo[]> =>
    defer(() => {
      let got = false;
      return from(candidates()).pipe(
        concatMap(askNode),
        take(1),
        tap({
          next: () => {
            got = true;
          },
          complete: () => {
            if (got) return;
            topo.failed++;
            if (topo.failed === 1 || topo.failed % 60 === 0) log.warn({ lastError: lastFetchError, failures: topo.failed }, 'no cluster node answered CLUSTER NODES; retrying');
          },
        }),
      );
    });

  const applyView = (view: ClusterNodeInfo[]): void => {
    topo.fetched++;
    const before = slots.coveredSlots;
    const r = slots.apply(view);
    topo.staleSlots += r.stale;
    if (r.stale > 0) log.debug({ stale: r.stale }, 'a node answered with an older view of some slots: kept the newer owners');
    if (r.changed === 0) return;
    topo.changes++;
    syncPools();
    log.info({ masters: slots.masters().map((m) => `${m.addr}(${m.replicas.length} replicas)`), slots: slots.coveredSlots, moved: r.changed }, before === 0 ? 'cluster slot map loaded' : 'cluster slot map changed');
  };

  const degraded = (): boolean => slots.coveredSlots < SLOTS || slots.masters().some((m) => pool.state(m.addr) === 'down');
  let topology = new Subscription();
  /** (re)starts the topology stream: at start, and when a reload changes fetch_interval */
  const startTopology = (): void => {
    topology.unsubscribe();
    topology = refresh$
      .pipe(refreshTopology({ fetch: fetchView, minGapMs: REFRESH_GAP_MS, periodMs: cfg.fetchInterval, degradedEveryMs: DEGRADED_REFRESH_MS, degraded, scheduler: asyncScheduler }))
      .subscribe(applyView);
  };
  startTopology();

  // ---- requests --------------------------------------------------------------------------------
  const pickReplica = (owner: ClusterNode): NodeAddr | undefined => {
    const n = owner.replicas.length;
    for (let i = 0; i < n; i++) {
      const r = owner.replicas[(owner.next + i) % n];
      if (replicaPool.state(r.addr) !== 'down') {
        owner.next = (owner.next + i + 1) % n;
        return r;
      }
    }
    return undefined;
  };

  /** sends `a` to `to` (an ASK target), else to its slot's owner or, for a read, one of its replicas */
  const dispatch = (a: Attempt, to?: NodeAddr, asking = false, masterOnly = false): void => {
    let node: NodeAddr | undefined = to;
    if (node === undefined) {
      const owner = slots.ownerOf(a.slot);
      if (owner === undefined) {
        refresh('uncovered slot');
        a.target.deliver(a.seq, slots.coveredSlots === 0 ? NO_MAP : SLOT_NOT_SERVED);
        return;
      }
      if (a.readOnly && !masterOnly && cfg.readFromSlave && owner.replicas.length > 0) {
        const replica = pickReplica(owner);
        if (replica !== undefined) {
          a.node = replica;
          a.onReplica = true;
          counted(replicaPool.get(replica, a.proto), replica.addr).send(a.raw, a, a.seq);
          return;
        }
      }
      node = owner;
      if (a.hedge === 0 && a.readOnly && a.owner === undefined && cfg.backupRequest.enabled && owner.replicas.length > 0) startRace(a);
    }
    a.node = node;
    a.onReplica = false;
    if (a.owner !== undefined) {
      if (pool.state(node.addr) === 'down') refresh('node down');
      if (!blocking.send(node, a.proto, a.raw, a, a.seq, a.owner, stats.requests.backend(node.addr), asking ? ASKING : undefined)) a.target.deliver(a.seq, tooManyBlocked(cfg.maxBlockingConnections, node.addr));
      return;
    }
    const c = conn(node, a.proto);
    if (c.state === 'down') refresh('node down'); // a dead master sends no MOVED
    if (asking) c.send(ASKING, DISCARD, 0);
    c.send(a.raw, a, a.seq);
  };

  // ---- backup requests (reads a slow master has not answered go to a replica too) ----------------
  const backup: BackupStats = { planned: 0, dispatched: 0, exhausted: 0, primaryWins: 0, replicaWins: 0 };
  const races = new Map<number, Attempt>();
  const hedgeIn$ = new Subject<HedgeEvent<Buffer>>();
  let nextRace = 1;
  // one function for every race (not a closure per request)
  const raceAnswer = (x: Attempt, frame: Buffer, ok: boolean): void => hedgeIn$.next({ kind: 'answered', id: x.hedge, from: 'primary', ok, value: frame });
  const startRace = (a: Attempt): void => {
    a.hedge = nextRace++;
    a.onAnswer = raceAnswer;
    races.set(a.hedge, a);
    hedgeIn$.next({ kind: 'sent', id: a.hedge });
  };
  const hedging = hedgeIn$
    .pipe(
      hedgeRequests<Buffer>(() => {
        const b = cfg.backupRequest;
        return { ...(b.triggerSlowMs !== undefined ? { triggerMs: b.triggerSlowMs } : {}), multiplier: b.multiplier, minMs: 1, budgetPercent: b.budgetPercent, burst: b.burst, scheduler: asyncScheduler };
      }),
    )
    .subscribe((act) => {
      const a = races.get(act.id);
      if (act.kind === 'deliver') {
        races.delete(act.id);
        if (a === undefined) return;
        if (act.from === 'backup') backup.replicaWins++;
        else if (a.backedUp) backup.primaryWins++;
        a.target.deliver(a.seq, act.value);
        return;
      }
      backup.planned++;
      if (act.kind === 'exhausted') {
        backup.exhausted++;
        return;
      }
      const owner = a === undefined ? undefined : slots.ownerOf(a.slot);
      const replica = owner === undefined ? undefined : pickReplica(owner);
      if (a === undefined || replica === undefined) {
        hedgeIn$.next({ kind: 'answered', id: act.id, from: 'backup', ok: false, value: BACKUP_NONE });
        return;
      }
      backup.dispatched++;
      a.backedUp = true;
      const id = act.id;
      counted(replicaPool.get(replica, a.proto), replica.addr).send(a.raw, { deliver: (_s, frame) => hedgeIn$.next({ kind: 'answered', id, from: 'backup', ok: isRealAnswer(frame), value: frame }) }, a.seq);
    });

  const redirects$ = new Subject<Redirected<Attempt>>();
  const onError = (a: Attempt, frame: Buffer): void => {
    const r = parseRedirect(frame);
    if (r === null) {
      if (isConnectionError(frame)) {
        refresh('node unreachable');
        // a replica that went away: the master answers instead (once)
        if (a.onReplica) {
          dispatch(a, undefined, false, true);
          return;
        }
      }
      a.answer(frame, !isConnectionError(frame));
      return;
    }
    topo.redirects[r.kind]++;
    redirects$.next({ attempt: a, redirect: r, frame, count: ++a.redirects });
  };

  const redirecting = redirects$
      .pipe(
        followRedirects<Attempt>({
          maxRedirects: MAX_REDIRECTS,
          tryAgainDelayMs: 25,
          clusterDownDelayMs: 100,
          tooMany: (r) => errorFrame(`ERR aster-proxy: too many cluster redirects for one command (last: ${r.frame.toString('utf8', 1, r.frame.length - 2)})`),
        }),
      )
      .subscribe((step) => {
        const a = step.attempt;
        if (step.kind === 'give-up') {
          a.answer(step.frame, false);
          return;
        }
        const r = step.redirect;
        switch (r.kind) {
          case 'moved': {
            const host = r.host === '' ? (a.node?.host ?? '') : r.host;
            if (slots.moved(r.slot, host, r.port)) syncPools();
            refresh('MOVED');
            dispatch(a);
            return;
          }
          case 'ask':
            dispatch(a, addrOf(r.host === '' ? (a.node?.host ?? '') : r.host, r.port), true);
            return;
          case 'clusterdown':
            refresh('CLUSTERDOWN');
            dispatch(a);
            return;
          case 'tryagain':
            dispatch(a);
            return;
        }
      });

  syncPools();

  // ---- clients ---------------------------------------------------------------------------------
  const listener = await listenTcp(cfg.listenHost, cfg.listenPort, cfg.tls).catch((err: unknown) => {
    topology.unsubscribe();
    redirecting.unsubscribe();
    hedging.unsubscribe();
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
      else conn(node, proto).send(raw, target, seq);
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
    sendBlocking(slot: number, proto: Proto, raw: Buffer, target: ReplyTarget, seq: number, owner: BlockingOwner) {
      dispatch(new Attempt(slot, proto, raw, target, seq, false, onError, owner));
    },
    sendBlockingToNode(i: number, proto: Proto, raw: Buffer, target: ReplyTarget, seq: number, owner: BlockingOwner) {
      const node = slots.masters()[i];
      if (node === undefined) target.deliver(seq, NO_MAP);
      else if (!blocking.send(node, proto, raw, target, seq, owner, stats.requests.backend(node.addr), WAIT_MARK)) target.deliver(seq, tooManyBlocked(cfg.maxBlockingConnections, node.addr));
    },
    send(slot: number, proto: Proto, raw: Buffer, target: ReplyTarget, seq: number, readOnly: boolean) {
      dispatch(new Attempt(slot, proto, raw, target, seq, readOnly, onError));
    },
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
      if (intervalChanged) startTopology();
      slowlog.configure(next.slowlogLogSlowerThan, next.slowlogMaxLen);
      followClientPolicy(up, facts, listener, next);
      refresh('reload');
    },
    drain: (deadlineMs: number) => front.drain(deadlineMs),
    async close() {
      await front.close();
      topology.unsubscribe();
      redirecting.unsubscribe();
      hedging.unsubscribe();
      pool.close();
      replicaPool.close();
      blocking.close();
    },
  };
}
