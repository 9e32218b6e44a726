import type net from 'node:net';
import type { Logger } from 'pino';
import type { SchedulerLike } from 'rxjs';
import type { LimitsConfig } from '../config/types.js';
import type { ReplyTarget } from '../sources/backend.js';
import { ReorderBuffer } from '../util/reorder.js';
import { FrontError, NO_COMMAND, skipsSlowlog, type InFlight, type RequestStats } from '../util/request-stats.js';
import { turnFlush, type Flushable, type TurnFlush } from './turn-flush.js';

export interface ClientOutputDeps {
  /** the cluster's limits (a reload replaces them) */
  limits(): LimitsConfig;
  logger: Logger;
  stats: RequestStats;
  /** the client's requests in flight: command and arrival time of each, for the counters and SLOWLOG */
  inFlight: InFlight;
  /** the SLOWLOG: threshold (us, negative: off) and where slow requests go */
  slowlog: { thresholdUs: number; record(us: number, args: readonly Buffer[], addr: string, name: string, unixTime: number): void };
  /** who the client is, for logs and SLOWLOG */
  client: { id: number; addr: string; name: string | null };
  /** the client has subscriptions: the pub/sub limit applies, not the normal one */
  subscribed(): boolean;
  /** after each turn's write (flow control hears how far the client got) */
  afterFlush(): void;
  scheduler: SchedulerLike;
  flush?: TurnFlush;
}

/**
 * What goes back to one client, in order: replies arrive from any connection in any order
 * (`target.deliver(seq, frame)`), leave through the reorder buffer in request order, are gathered
 * with the pub/sub messages for the turn and written once per event-loop turn. The output-buffer
 * limits (pub/sub and normal) are checked here; a client over one is disconnected. Reply times
 * are recorded per write, with one clock read.
 */
export class ClientOutput implements Flushable {
  /** where every reply for this client goes */
  readonly target: ReplyTarget;
  /** the socket closed or was cut: nothing more is written */
  gone = false;
  private readonly order: ReorderBuffer;
  private out: Buffer[] = [];
  private outBytes = 0;
  private released = 0;
  private written = 0;
  private marked = false;
  // pub/sub messages: each held until the reply it came after (on its subscriber connection) has
  // left; the gates never go down along the queue, so it drains from the head
  private held: Buffer[] = [];
  private heldGates: number[] = [];
  private heldBytes = 0;
  private softSince = 0;
  private outSoftSince = 0;

  constructor(
    private readonly socket: net.Socket,
    private readonly deps: ClientOutputDeps,
  ) {
    this.order = new ReorderBuffer((frame) => this.release(frame));
    this.target = {
      deliver: (s, frame) => {
        if (this.gone) return;
        const before = this.order.next;
        this.order.put(s, frame);
        if (this.order.next !== before) this.mark();
      },
    };
  }

  /** replies released to the client, in order (= the number of the first one not released) */
  get answered(): number {
    return this.order.next;
  }

  /** reply bytes released so far */
  get releasedBytes(): number {
    return this.released;
  }

  /** reply bytes the client has not read: in the socket's buffer, or held for order */
  get unread(): number {
    return this.socket.writableLength + this.order.heldBytes;
  }

  /** everything waiting here for the client */
  get bytes(): number {
    return this.gone ? 0 : this.socket.writableLength + this.order.heldBytes + this.outBytes + this.heldBytes;
  }

  /** flush in this turn (to tell flow control how far the client got) */
  mark(): void {
    if (!this.marked) {
      this.marked = true;
      (this.deps.flush ?? turnFlush).mark(this);
    }
  }

  /**
   * A pub/sub message (or RESP3 push), out of band. `after`: the request whose reply the node
   * sent before it (a subscribe, an unsubscribe): the message goes out after that reply, and
   * before any reply released later (-1: no such request).
   */
  push(frame: Buffer, after = -1): void {
    if (this.gone) return;
    // the pub/sub output-buffer limit (Redis: 32 MB hard, 8 MB for 60 s soft): a subscriber that
    // does not read is disconnected, and what it was sent is released
    const lim = this.deps.limits();
    const buffered = this.socket.writableLength + this.outBytes + this.heldBytes + frame.length;
    const now = this.deps.scheduler.now();
    if (buffered > lim.pubsubOutputHardBytes || (buffered > lim.pubsubOutputSoftBytes && this.softSince > 0 && now - this.softSince > lim.pubsubOutputSoftSeconds * 1000)) {
      this.cut('subscriber over the pub/sub output-buffer limit: disconnected', buffered);
      return;
    }
    if (buffered > lim.pubsubOutputSoftBytes) {
      if (this.softSince === 0) this.softSince = now;
    } else this.softSince = 0;
    const n = this.held.length;
    const gate = n > 0 ? Math.max(after, this.heldGates[n - 1]) : after;
    if (this.order.next <= gate) {
      this.held.push(frame);
      this.heldGates.push(gate);
      this.heldBytes += frame.length;
    } else {
      this.append(frame);
      this.mark();
    }
  }

  flushTurn(): void {
    this.marked = false;
    if (this.gone) return;
    if (this.out.length > 0) {
      const buf = this.out.length === 1 ? this.out[0] : Buffer.concat(this.out, this.outBytes);
      this.out = [];
      this.outBytes = 0;
      this.socket.write(buf);
      if (this.written < this.order.next) this.recordTimes();
      const lim = this.deps.limits();
      if (lim.outputHardBytes > 0 || lim.outputSoftBytes > 0) this.checkOutput();
      if (this.gone) return;
    }
    this.deps.afterFlush();
  }

  private append(frame: Buffer): void {
    this.out.push(frame);
    this.outBytes += frame.length;
  }

  private release(frame: Buffer): void {
    this.deps.stats.replied(this.deps.inFlight.command(this.order.next - 1), frame);
    this.append(frame);
    this.released += frame.length;
    // messages held for the reply they came after go right after it
    if (this.held.length > 0 && this.heldGates[0] < this.order.next) this.releaseHeld();
  }

  private releaseHeld(): void {
    const next = this.order.next;
    let i = 0;
    for (; i < this.held.length && this.heldGates[i] < next; i++) {
      this.append(this.held[i]);
      this.heldBytes -= this.held[i].length;
    }
    this.held.splice(0, i);
    this.heldGates.splice(0, i);
  }

  /** the replies up to `order.next` go out in this write: one clock read for all of them */
  private recordTimes(): void {
    const { inFlight, slowlog, stats } = this.deps;
    const now = this.deps.scheduler.now();
    const slowUs = slowlog.thresholdUs;
    const upTo = this.order.next;
    for (let s = this.written; s < upTo; s++) {
      const cmd = inFlight.command(s);
      if (cmd === NO_COMMAND) continue;
      const us = (now - inFlight.arrivedAt(s)) * 1000;
      stats.timed(cmd, us);
      if (slowUs >= 0 && us >= slowUs) {
        const req = inFlight.request(s);
        const c = this.deps.client;
        if (req !== undefined && !skipsSlowlog(cmd)) slowlog.record(us, req.args, c.addr, c.name ?? '', Math.floor(Date.now() / 1000));
      }
    }
    inFlight.release(upTo);
    this.written = upTo;
  }

  /**
   * The normal clients' output-buffer limit (off by default, as in Redis): a client whose unread
   * replies pass `output_hard_bytes`, or `output_soft_bytes` for `output_soft_seconds`, is
   * disconnected. (Subscribers have their own limit, in `push`.)
   */
  private checkOutput(): void {
    if (this.deps.subscribed()) return;
    const lim = this.deps.limits();
    const now = this.deps.scheduler.now();
    const buffered = this.socket.writableLength;
    const soft = lim.outputSoftBytes > 0 && buffered > lim.outputSoftBytes;
    if ((lim.outputHardBytes > 0 && buffered > lim.outputHardBytes) || (soft && this.outSoftSince > 0 && now - this.outSoftSince > lim.outputSoftSeconds * 1000)) {
      this.cut('client over the output-buffer limit: disconnected', buffered);
      return;
    }
    this.outSoftSince = soft ? this.outSoftSince || now : 0;
  }

  private cut(why: string, buffered: number): void {
    this.deps.stats.errors[FrontError.output_limit]++;
    this.deps.logger.warn({ client: this.deps.client.id, addr: this.deps.client.addr, buffered }, why);
    this.held = [];
    this.heldGates = [];
    this.heldBytes = 0;
    this.gone = true; // (its 'close' comes later: what arrives until then is dropped, not counted again)
    this.socket.destroy();
  }
}
