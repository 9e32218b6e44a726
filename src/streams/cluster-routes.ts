import { asyncScheduler, Subject, type Subscription } from 'rxjs';
import type { ClusterConfig } from '../config/types.js';
import { followRedirects, type Redirected } from '../operators/follow-redirects.js';
import { hedgeRequests, type HedgeEvent } from '../operators/hedge-requests.js';
import { errorFrame, type Proto } from '../protocol/encode.js';
import { encodeCommand } from '../protocol/request-decoder.js';
import { parseRedirect, type Redirect } from '../routing/redirect.js';
import type { ClusterNode, NodeAddr, SlotMap } from '../routing/slot-map.js';
import { isConnectionError, type BackendConnection, type ReplyTarget } from '../sources/backend.js';
import type { BackendPool } from '../sources/backend-pool.js';
import { tooManyBlocked, type BlockingOwner, type BlockingPool } from '../sources/blocking-pool.js';
import type { BackendStats } from '../util/request-stats.js';

/** Redirects one request may follow (aster: 5); one more ends it with an error. */
const MAX_REDIRECTS = 5;

const ASKING = encodeCommand(['ASKING']);
export const NO_MAP = errorFrame('CLUSTERDOWN aster-proxy has no slot map yet: no node answered CLUSTER NODES (it keeps trying)');
export const SLOT_NOT_SERVED = errorFrame('CLUSTERDOWN Hash slot not served');
const DISCARD: ReplyTarget = { deliver: () => undefined };
const BACKUP_NONE = errorFrame('ERR no replica for a backup request');

export const addrOf = (host: string, port: number): NodeAddr => ({ host, port, addr: `${host}:${port}` });

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

export interface RoutesDeps {
  slots: SlotMap;
  /** the masters' shared connections, the replicas' (READONLY), and the blocking ones */
  pool: BackendPool;
  replicaPool: BackendPool;
  blocking: BlockingPool;
  cfg(): ClusterConfig;
  /** the shared connection of a pool to a node, with its counters set */
  conn(pool: BackendPool, node: NodeAddr, proto: Proto): BackendConnection;
  /** the counters of a node */
  backendStats(addr: string): BackendStats;
  /** asks the topology for a fresh view */
  refresh(why: string): void;
  /** a MOVED changed the map: connections follow it */
  changed(): void;
  /** redirects counted by kind */
  redirects: Record<Redirect['kind'], number>;
}

/** Where the requests of a cluster-mode cluster's clients go. */
export interface Routes {
  /** a request for the owner of `slot` (a read may go to a replica) */
  send(slot: number, proto: Proto, raw: Buffer, target: ReplyTarget, seq: number, readOnly: boolean): void;
  /** a blocking command, over a connection of its own to the owner of `slot` */
  sendBlocking(slot: number, proto: Proto, raw: Buffer, target: ReplyTarget, seq: number, owner: BlockingOwner): void;
  backup: BackupStats;
  close(): void;
}

/**
 * The request stage of a cluster-mode cluster:
 *
 *   request ─► slot ─► owner (or a replica for reads) ─► reply ─┬─► client
 *                 └─► backup race (slow reads, hedgeRequests) ─┤
 *                                                             └─► redirect ─► followRedirects ─► again
 *
 * An Attempt is the one object a request makes: it is the reply target of every node it is
 * sent to, and follows MOVED, ASK, TRYAGAIN and CLUSTERDOWN until a node answers.
 */
export function clusterRoutes(deps: RoutesDeps): Routes {
  const { slots, pool, replicaPool, blocking, refresh } = deps;

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
    const cfg = deps.cfg();
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
          deps.conn(replicaPool, replica, a.proto).send(a.raw, a, a.seq);
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
      if (!blocking.send(node, a.proto, a.raw, a, a.seq, a.owner, deps.backendStats(node.addr), asking ? ASKING : undefined)) a.target.deliver(a.seq, tooManyBlocked(cfg.maxBlockingConnections, node.addr));
      return;
    }
    const c = deps.conn(pool, node, a.proto);
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
  const hedging: Subscription = hedgeIn$
    .pipe(
      hedgeRequests<Buffer>(() => {
        const b = deps.cfg().backupRequest;
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
      deps.conn(replicaPool, replica, a.proto).send(a.raw, { deliver: (_s, frame) => hedgeIn$.next({ kind: 'answered', id, from: 'backup', ok: isRealAnswer(frame), value: frame }) }, a.seq);
    });

  // ---- redirects ---------------------------------------------------------------------------------
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
    deps.redirects[r.kind]++;
    redirects$.next({ attempt: a, redirect: r, frame, count: ++a.redirects });
  };

  const redirecting: Subscription = redirects$
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
          if (slots.moved(r.slot, host, r.port)) deps.changed();
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

  return {
    send: (slot, proto, raw, target, seq, readOnly) => dispatch(new Attempt(slot, proto, raw, target, seq, readOnly, onError)),
    sendBlocking: (slot, proto, raw, target, seq, owner) => dispatch(new Attempt(slot, proto, raw, target, seq, false, onError, owner)),
    backup,
    close() {
      redirecting.unsubscribe();
      hedging.unsubscribe();
    },
  };
}
