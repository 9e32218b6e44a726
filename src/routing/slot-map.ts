import type { ClusterNodeInfo } from './cluster-nodes.js';
import { SLOTS } from './crc16.js';

/** A node the proxy talks to, by address. */
export interface NodeAddr {
  host: string;
  port: number;
  /** `host:port` */
  addr: string;
}

/** A master that owns slots, with the replicas that serve its reads. */
export interface ClusterNode extends NodeAddr {
  /** '' while it is known only from a MOVED */
  id: string;
  /** the config epoch of the view that described it last; -1 while known only from a MOVED */
  epoch: number;
  /** replicas not flagged as failing, from the freshest view */
  replicas: NodeAddr[];
  /** round-robin position for reads from replicas */
  next: number;
}

export interface ApplyResult {
  /** slots whose owner changed */
  changed: number;
  /** slots the view gave to an owner with an older config epoch than the one they have: refused */
  stale: number;
}

/**
 * Which master owns each of the 16384 slots, learnt from CLUSTER NODES views and MOVED replies.
 *
 * Views come from different nodes and some are behind (a node that has not heard of a failover
 * or a finished migration yet). Redis settles such conflicts by config epoch: the claim with
 * the higher epoch wins, and a failover or a migration always gives the new owner an epoch
 * above the old one. So a slot takes a view's owner only when that owner's epoch is at least
 * the one its current owner was accepted with, and one stale node cannot flip the map back.
 *
 * A MOVED is first-hand news from the node that gave the slot up: the slot moves at once, and
 * is marked half an epoch above its old owner, so a view that still shows the old owner (equal
 * epoch) cannot undo it while the real new owner (a higher epoch) can confirm it.
 */
export class SlotMap {
  private readonly owners: Array<ClusterNode | undefined> = new Array<ClusterNode | undefined>(SLOTS).fill(undefined);
  private readonly epochs = new Float64Array(SLOTS).fill(-1);
  private readonly nodes = new Map<string, ClusterNode>();
  private mastersCache: ClusterNode[] | null = null;
  private covered = 0;
  /** bumped by every change of an owner */
  version = 0;

  /** the master that owns `slot`, if any */
  ownerOf(slot: number): ClusterNode | undefined {
    return this.owners[slot];
  }

  /** slots with an owner */
  get coveredSlots(): number {
    return this.covered;
  }

  /** the masters that own at least one slot, in slot order */
  masters(): ClusterNode[] {
    if (this.mastersCache === null) {
      const seen = new Set<ClusterNode>();
      for (const n of this.owners) if (n !== undefined) seen.add(n);
      this.mastersCache = [...seen];
    }
    return this.mastersCache;
  }

  /** every slot range with its owner, in slot order (CLUSTER SLOTS-like) */
  ranges(): Array<{ start: number; end: number; node: ClusterNode }> {
    const out: Array<{ start: number; end: number; node: ClusterNode }> = [];
    for (let s = 0; s < SLOTS; s++) {
      const node = this.owners[s];
      if (node === undefined) continue;
      const last = out[out.length - 1];
      if (last !== undefined && last.node === node && last.end === s - 1) last.end = s;
      else out.push({ start: s, end: s, node });
    }
    return out;
  }

  /** Takes what a CLUSTER NODES view says, slot by slot, unless it is older than what the map knows. */
  apply(view: readonly ClusterNodeInfo[]): ApplyResult {
    let changed = 0;
    let stale = 0;
    for (const m of view) {
      if (!m.master || m.noaddr || m.handshake || m.host === '' || m.slots.length === 0) continue;
      const node = this.node(m.host, m.port);
      if (m.configEpoch >= node.epoch) {
        node.id = m.id;
        node.epoch = m.configEpoch;
        node.replicas = view
          .filter((r) => r.replicaOf === m.id && !r.master && !r.failing && !r.suspect && !r.noaddr && !r.handshake && r.host !== '')
          .map((r) => ({ host: r.host, port: r.port, addr: r.addr }));
        if (node.next >= node.replicas.length) node.next = 0;
      }
      for (const [start, end] of m.slots) {
        for (let s = start; s <= end; s++) {
          if (m.configEpoch < this.epochs[s]) {
            if (this.owners[s] !== node) stale++;
            continue;
          }
          this.epochs[s] = m.configEpoch;
          if (this.set(s, node)) changed++;
        }
      }
    }
    if (changed > 0) this.prune();
    return { changed, stale };
  }

  /** A MOVED: `slot` is served by `host:port` now. True when that changed the map. */
  moved(slot: number, host: string, port: number): boolean {
    const node = this.node(host, port);
    if (this.owners[slot] === node) return false;
    this.epochs[slot] = Math.floor(this.epochs[slot]) + 0.5;
    this.set(slot, node);
    this.prune();
    return true;
  }

  private set(slot: number, node: ClusterNode): boolean {
    const old = this.owners[slot];
    if (old === node) return false;
    if (old === undefined) this.covered++;
    this.owners[slot] = node;
    this.mastersCache = null;
    this.version++;
    return true;
  }

  private node(host: string, port: number): ClusterNode {
    const addr = `${host}:${port}`;
    let n = this.nodes.get(addr);
    if (n === undefined) {
      n = { id: '', host, port, addr, epoch: -1, replicas: [], next: 0 };
      this.nodes.set(addr, n);
    }
    return n;
  }

  /** forgets nodes that own no slot any more (a failed master, a node emptied by resharding) */
  private prune(): void {
    const owning = new Set(this.masters());
    for (const [addr, n] of this.nodes) if (!owning.has(n)) this.nodes.delete(addr);
  }
}
