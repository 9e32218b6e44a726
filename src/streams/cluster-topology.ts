import { asyncScheduler, concatMap, defer, from, Observable, Subject, Subscription, take, tap } from 'rxjs';
import type { Logger } from 'pino';
import { refreshTopology } from '../operators/refresh-topology.js';
import type { Proto } from '../protocol/encode.js';
import { encodeCommand } from '../protocol/request-decoder.js';
import { bulkValue } from '../protocol/reply-decoder.js';
import { parseClusterNodes, type ClusterNodeInfo } from '../routing/cluster-nodes.js';
import { SLOTS } from '../routing/crc16.js';
import type { Redirect } from '../routing/redirect.js';
import type { NodeAddr, SlotMap } from '../routing/slot-map.js';
import type { BackendConnection } from '../sources/backend.js';

/** least time between two topology fetches, ms */
const REFRESH_GAP_MS = 250;
/** while slots have no owner or a master is unreachable, the topology is fetched this often, ms */
const DEGRADED_REFRESH_MS = 1000;

const CLUSTER_NODES = encodeCommand(['CLUSTER', 'NODES']);

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

export interface TopologyDeps {
  /** the map the views are applied to */
  slots: SlotMap;
  /** the seeds of the config (a reload may change them) */
  seeds(): NodeAddr[];
  /** the shared connection to a node, and the state of the node's */
  conn(node: NodeAddr, proto: Proto): BackendConnection;
  state(addr: string): string;
  /** fetch_interval, ms (read when the stream starts) */
  periodMs(): number;
  /** the map changed: connections follow it */
  changed(): void;
  log: Logger;
}

/** The slot map kept up to date: `refresh` asks for a fetch (throttled), `restart` after fetch_interval changed. */
export interface Topology {
  stats: TopologyStats;
  refresh(why: string): void;
  restart(): void;
  close(): void;
}

/**
 * The topology stage of a cluster-mode cluster:
 *
 *   refresh triggers (start, fetch_interval, MOVED, lost nodes, degraded ticks)
 *     ─► refreshTopology (throttled) ─► CLUSTER NODES of one node, live ones first
 *     ─► SlotMap.apply (views older than the map refused slot by slot) ─► changed()
 */
export function followTopology(deps: TopologyDeps): Topology {
  const { slots, log } = deps;
  const stats: TopologyStats = { fetched: 0, failed: 0, changes: 0, staleSlots: 0, redirects: { moved: 0, ask: 0, tryagain: 0, clusterdown: 0 } };
  const refresh$ = new Subject<string>();
  let fetches = 0;
  let lastFetchError = '';

  /** the nodes to ask, the ones with a live connection first, starting at a different one each time */
  const candidates = (): NodeAddr[] => {
    const all = new Map<string, NodeAddr>();
    for (const n of [...slots.masters(), ...deps.seeds()]) all.set(n.addr, n);
    const list = [...all.values()];
    const rank = (n: NodeAddr): number => ({ up: 0, connecting: 1, idle: 1, down: 2, closed: 3 })[deps.state(n.addr)] ?? 1;
    const start = fetches++ % Math.max(1, list.length);
    const rotated = [...list.slice(start), ...list.slice(0, start)];
    return rotated.sort((a, b) => rank(a) - rank(b));
  };

  /** CLUSTER NODES of one node: its view, or nothing when it cannot answer */
  const askNode = (node: NodeAddr): Observable<ClusterNodeInfo[]> =>
    new Observable<ClusterNodeInfo[]>((sub) => {
      deps.conn(node, 2).send(
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
            stats.failed++;
            if (stats.failed === 1 || stats.failed % 60 === 0) log.warn({ lastError: lastFetchError, failures: stats.failed }, 'no cluster node answered CLUSTER NODES; retrying');
          },
        }),
      );
    });

  const applyView = (view: ClusterNodeInfo[]): void => {
    stats.fetched++;
    const before = slots.coveredSlots;
    const r = slots.apply(view);
    stats.staleSlots += r.stale;
    if (r.stale > 0) log.debug({ stale: r.stale }, 'a node answered with an older view of some slots: kept the newer owners');
    if (r.changed === 0) return;
    stats.changes++;
    deps.changed();
    log.info({ masters: slots.masters().map((m) => `${m.addr}(${m.replicas.length} replicas)`), slots: slots.coveredSlots, moved: r.changed }, before === 0 ? 'cluster slot map loaded' : 'cluster slot map changed');
  };

  const degraded = (): boolean => slots.coveredSlots < SLOTS || slots.masters().some((m) => deps.state(m.addr) === 'down');
  let running = new Subscription();
  const restart = (): void => {
    running.unsubscribe();
    running = refresh$
      .pipe(refreshTopology({ fetch: fetchView, minGapMs: REFRESH_GAP_MS, periodMs: deps.periodMs(), degradedEveryMs: DEGRADED_REFRESH_MS, degraded, scheduler: asyncScheduler }))
      .subscribe(applyView);
  };
  restart();

  return {
    stats,
    refresh: (why) => refresh$.next(why),
    restart,
    close: () => running.unsubscribe(),
  };
}
