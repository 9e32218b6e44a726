import { Subject, type Subscription } from 'rxjs';
import type { Logger } from 'pino';
import { retryPlacement, type PlacementEvent } from '../operators/retry-placement.js';
import type { Proto } from '../protocol/encode.js';
import { encodeCommand } from '../protocol/request-decoder.js';
import { arrayElements, bulkValue } from '../protocol/reply-decoder.js';
import { parseRedirect } from '../routing/redirect.js';
import type { ReplyTarget } from '../sources/backend.js';
import type { PoolServer } from '../sources/backend-pool.js';
import { immediateScheduler } from '../sources/scheduler.js';
import type { SubscriberConnection, SubscriberOptions } from '../sources/subscriber.js';
import { Fifo } from '../util/fifo.js';

/** classic channels, patterns, and sharded channels (SSUBSCRIBE) */
export type SubKind = 'channel' | 'pattern' | 'shard';

/** What a client's pub/sub needs from its cluster. */
export interface PubSubUpstream {
  /** the node(s) a subscription goes to (standalone patterns: every server), or an error frame */
  placeSubscription(kind: SubKind, name: Buffer): PoolServer[] | Buffer;
  /** a connection in subscribed mode to `node` */
  subscriber(node: PoolServer, proto: Proto, events: Pick<SubscriberOptions, 'onFrame' | 'onUp' | 'onDown'>): SubscriberConnection;
  /** a node refused a subscription with MOVED, or a subscriber connection was lost: the map may be behind */
  onRedirect?(): void;
  logger: Logger;
}

const COMMANDS: Record<SubKind, [string, string]> = {
  channel: ['subscribe', 'unsubscribe'],
  pattern: ['psubscribe', 'punsubscribe'],
  shard: ['ssubscribe', 'sunsubscribe'],
};
const KIND_OF: Record<string, [SubKind, boolean]> = {
  subscribe: ['channel', true],
  unsubscribe: ['channel', false],
  psubscribe: ['pattern', true],
  punsubscribe: ['pattern', false],
  ssubscribe: ['shard', true],
  sunsubscribe: ['shard', false],
};

/** the subscribe family, by lower-case name */
export const isSubscribeCommand = (name: string): boolean => Object.prototype.hasOwnProperty.call(KIND_OF, name);

interface Ack {
  /** the confirmation expected: subscribe, unsubscribe... */
  kind: string;
  /** the client's request it answers (-1: none, a subscription placed again) */
  seq: number;
  done(): void;
}

interface NodeLink {
  addr: string;
  conn: SubscriberConnection;
  /** confirmations expected, in the order the commands were sent */
  acks: Fifo<Ack>;
  /** the subscriptions on this connection: `kind:name` */
  subs: Set<string>;
  /** the last request this connection confirmed: its messages go out after that reply */
  after: number;
}

const NOTHING = (): void => undefined;
const keyOf = (kind: SubKind, name: string): string => `${kind}:${name}`;
const nameOf = (key: string): [SubKind, string] => {
  const i = key.indexOf(':');
  return [key.slice(0, i) as SubKind, key.slice(i + 1)];
};

/**
 * The subscriptions of one client (SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE and their UN- forms), on
 * subscriber connections of its own, one per node its subscriptions live on.
 *
 * The proxy answers the confirmations itself, with the client's own subscription counts, but
 * only once the node confirmed: a message published after the client saw its confirmation
 * reaches it. Messages are passed on as the node sent them. When a connection is lost (a
 * restart, a failover) or a node drops a sharded channel (its slot moved), those
 * subscriptions are placed again after a backoff (`retryPlacement`), by the map of the moment.
 */
export class PubSub {
  private readonly subs: Record<SubKind, Set<string>> = { channel: new Set(), pattern: new Set(), shard: new Set() };
  /** where each subscription (`kind:name`) lives: node addresses */
  private readonly where = new Map<string, Set<string>>();
  private readonly links = new Map<string, NodeLink>();
  /** subscriptions to place again */
  private readonly lost = new Set<string>();
  private readonly events$ = new Subject<PlacementEvent>();
  private readonly retrying: Subscription;
  private closed = false;

  constructor(
    private readonly up: PubSubUpstream,
    private readonly proto: () => Proto,
    /** answers the client's request `seq` (through its reorder buffer) */
    private readonly target: ReplyTarget,
    /** a message for the client, out of band, after the reply to request `after` */
    private readonly push: (frame: Buffer, after: number) => void,
  ) {
    this.retrying = this.events$.pipe(retryPlacement({ minDelayMs: 100, maxDelayMs: 2000, scheduler: immediateScheduler })).subscribe(() => this.placeLost());
  }

  /** subscriptions to channels and patterns (what RESP2's subscribed mode and the counts go by) */
  get count(): number {
    return this.subs.channel.size + this.subs.pattern.size;
  }

  /** any subscription at all */
  get active(): boolean {
    return this.count + this.subs.shard.size > 0;
  }

  /** SUBSCRIBE & co; returns the reply, or null when it comes once the nodes confirmed */
  handle(name: string, args: readonly Buffer[], seq: number): Buffer | null {
    const [kind, subscribe] = KIND_OF[name];
    const set = this.subs[kind];
    const frames: Buffer[] = [];
    let waiting = 1; // released at the end of this loop, so that a synchronous ack cannot finish early
    const reply = (): void => {
      if (--waiting === 0) this.target.deliver(seq, frames.length === 1 ? frames[0] : Buffer.concat(frames));
    };
    const names = args.length > 1 ? args.slice(1) : subscribe ? [] : [...set].map((n) => Buffer.from(n, 'latin1'));
    if (subscribe) {
      // every placement first: an error changes nothing
      const placed: Array<PoolServer[] | null> = [];
      for (const n of names) {
        if (set.has(n.toString('latin1'))) {
          placed.push(null);
          continue;
        }
        const p = this.up.placeSubscription(kind, n);
        if (Buffer.isBuffer(p)) return p;
        placed.push(p);
      }
      names.forEach((n, i) => {
        const text = n.toString('latin1');
        const nodes = placed[i];
        if (nodes !== null && !set.has(text)) {
          set.add(text);
          for (const node of nodes) {
            waiting++;
            this.subscribeOn(node, kind, text, seq, reply);
          }
        }
        frames.push(this.confirmation(name, n, kind));
      });
    } else if (names.length === 0) {
      frames.push(this.confirmation(name, null, kind));
    } else {
      for (const n of names) {
        const text = n.toString('latin1');
        if (set.delete(text)) {
          const key = keyOf(kind, text);
          this.lost.delete(key);
          for (const addr of this.where.get(key) ?? []) {
            waiting++;
            this.unsubscribeOn(addr, kind, text, seq, reply);
          }
          this.where.delete(key);
        }
        frames.push(this.confirmation(name, n, kind));
      }
    }
    waiting--;
    if (waiting === 0) return frames.length === 1 ? frames[0] : Buffer.concat(frames);
    return null;
  }

  /** RESET: every subscription is dropped (the connections close), the client is no longer subscribed */
  reset(): void {
    for (const link of this.links.values()) link.conn.close();
    this.links.clear();
    this.where.clear();
    this.lost.clear();
    for (const set of Object.values(this.subs)) set.clear();
  }

  /** the client left: its connections close (the nodes drop its subscriptions) */
  close(): void {
    this.closed = true;
    this.retrying.unsubscribe();
    for (const link of this.links.values()) link.conn.close();
    this.links.clear();
  }

  /** `*3 kind name count` (RESP3: a push), with the client's count after this change */
  private confirmation(command: string, name: Buffer | null, kind: SubKind): Buffer {
    const count = kind === 'shard' ? this.subs.shard.size : this.count;
    const head = this.proto() === 3 ? '>3' : '*3';
    const nil = this.proto() === 3 ? '_\r\n' : '$-1\r\n';
    const parts = [Buffer.from(`${head}\r\n$${command.length}\r\n${command}\r\n`, 'latin1')];
    parts.push(name === null ? Buffer.from(nil, 'latin1') : Buffer.concat([Buffer.from(`$${name.length}\r\n`, 'latin1'), name, Buffer.from('\r\n', 'latin1')]));
    parts.push(Buffer.from(`:${count}\r\n`, 'latin1'));
    return Buffer.concat(parts);
  }

  private subscribeOn(node: PoolServer, kind: SubKind, name: string, seq: number, done: () => void): void {
    const key = keyOf(kind, name);
    const link = this.link(node);
    link.subs.add(key);
    let at = this.where.get(key);
    if (at === undefined) this.where.set(key, (at = new Set()));
    at.add(node.addr);
    link.acks.push({ kind: COMMANDS[kind][0], seq, done });
    link.conn.send(encodeCommand([COMMANDS[kind][0], Buffer.from(name, 'latin1')]));
  }

  private unsubscribeOn(addr: string, kind: SubKind, name: string, seq: number, done: () => void): void {
    const link = this.links.get(addr);
    if (link === undefined) {
      done();
      return;
    }
    link.subs.delete(keyOf(kind, name));
    link.acks.push({
      kind: COMMANDS[kind][1],
      seq,
      done: () => {
        done();
        // nothing left on it: the connection goes
        if (link.subs.size === 0 && link.acks.length === 0 && this.links.get(addr) === link) {
          this.links.delete(addr);
          link.conn.close();
        }
      },
    });
    link.conn.send(encodeCommand([COMMANDS[kind][1], Buffer.from(name, 'latin1')]));
  }

  private link(node: PoolServer): NodeLink {
    const existing = this.links.get(node.addr);
    if (existing !== undefined) return existing;
    const link: NodeLink = {
      addr: node.addr,
      acks: new Fifo<Ack>(8),
      subs: new Set(),
      after: -1,
      conn: this.up.subscriber(node, this.proto(), {
        onFrame: (frame) => this.frame(link, frame),
        onUp: () => this.events$.next('up'),
        onDown: (reason) => this.down(link, reason),
      }),
    };
    this.links.set(node.addr, link);
    return link;
  }

  private frame(link: NodeLink, frame: Buffer): void {
    if (frame[0] === 0x2d /* - */ || frame[0] === 0x21 /* ! */) {
      // a refused subscription (MOVED for a sharded channel whose slot moved, NOPERM...)
      const head = link.acks.peek();
      if (parseRedirect(frame) !== null) this.up.onRedirect?.();
      this.up.logger.warn({ node: link.addr, reply: frame.toString('utf8', 1, Math.min(frame.length - 2, 200)) }, 'a node refused a subscription command');
      if (head !== undefined && !head.kind.includes('unsub')) {
        // an error does not say which name it is about: every subscription of this connection is placed again
        this.relocate(link);
      } else {
        link.acks.shift();
        if (head !== undefined) this.acked(link, head);
      }
      return;
    }
    const elems = arrayElements(frame);
    const kindFrame = elems?.[0];
    const what = kindFrame === undefined ? null : bulkValue(kindFrame)?.toString('latin1').toLowerCase();
    if (what === 'message' || what === 'pmessage' || what === 'smessage') {
      this.push(frame, link.after);
      return;
    }
    if (what === undefined || what === null) return;
    const head = link.acks.peek();
    if (head !== undefined && head.kind === what) {
      link.acks.shift();
      this.acked(link, head);
      return;
    }
    if (what === 'sunsubscribe' && elems !== null && elems.length >= 2) {
      // unasked: the node gave up the slot of this sharded channel; place it again
      const name = bulkValue(elems[1])?.toString('latin1');
      if (name !== undefined && this.subs.shard.has(name)) {
        const key = keyOf('shard', name);
        link.subs.delete(key);
        this.where.get(key)?.delete(link.addr);
        this.lost.add(key);
        this.up.onRedirect?.();
        this.events$.next('lost');
      }
    }
  }

  /** `link` confirmed `ack`: what it sends from now on comes after that reply */
  private acked(link: NodeLink, ack: Ack): void {
    if (ack.seq > link.after) link.after = ack.seq;
    ack.done();
  }

  /** every subscription of `link` is placed again (its node refused one or went away) */
  private relocate(link: NodeLink): void {
    // the confirmations it owed are given now (the client must not wait for them)
    for (let ack = link.acks.shift(); ack !== undefined; ack = link.acks.shift()) ack.done();
    for (const key of link.subs) {
      this.where.get(key)?.delete(link.addr);
      this.lost.add(key);
    }
    link.subs.clear();
    if (this.links.get(link.addr) === link) this.links.delete(link.addr);
    link.conn.close();
    this.events$.next('lost');
  }

  private down(link: NodeLink, reason: string): void {
    if (this.closed) return;
    this.up.logger.info({ node: link.addr, reason, subscriptions: link.subs.size }, 'subscriber connection lost; its subscriptions are placed again');
    this.up.onRedirect?.();
    this.relocate(link);
  }

  /** places the lost subscriptions that the client still wants */
  private placeLost(): void {
    if (this.closed) return;
    const keys = [...this.lost];
    this.lost.clear();
    for (const key of keys) {
      const [kind, name] = nameOf(key);
      if (!this.subs[kind].has(name)) continue;
      const nodes = this.up.placeSubscription(kind, Buffer.from(name, 'latin1'));
      if (Buffer.isBuffer(nodes)) {
        this.lost.add(key);
        continue;
      }
      const at = this.where.get(key);
      for (const node of nodes) if (at === undefined || !at.has(node.addr)) this.subscribeOn(node, kind, name, -1, NOTHING);
    }
    if (this.lost.size > 0) this.events$.next('lost');
  }
}
