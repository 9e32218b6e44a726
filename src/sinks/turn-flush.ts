import type net from 'node:net';
import type { SchedulerLike, Subscription } from 'rxjs';
import { immediateScheduler } from '../sources/scheduler.js';

/** Something that gathers output during a turn of the event loop and writes it in `flushTurn`. */
export interface Flushable {
  flushTurn(): void;
}

/**
 * One flush per event-loop turn for every socket of the process: a client session or backend
 * connection that has output marks itself once, and one macrotask (the scheduler's, so after
 * every socket readable in this turn was read) writes them all. What a flush makes ready
 * (requests a reply unblocked) is flushed in the same task. One task per turn, not one per
 * socket.
 */
export class TurnFlush {
  private dirty: Flushable[] = [];
  private task: Subscription | null = null;
  private turns = 0;

  constructor(private readonly scheduler: SchedulerLike) {}

  /** `f.flushTurn()` runs in this turn's flush (call once per turn: the caller keeps a flag) */
  mark(f: Flushable): void {
    this.dirty.push(f);
    if (this.task === null) this.task = this.scheduler.schedule(this.run);
  }

  /**
   * Counts the flushes: whatever was marked before a flush has a smaller number than what is
   * marked after it. Something marked in a turn may read the clock once for that turn.
   */
  get turn(): number {
    return this.turns;
  }

  private readonly run = (): void => {
    this.task = null;
    this.turns++;
    // (flushing one may mark others: a session's reply admits a request for a backend)
    for (let round = 0; this.dirty.length > 0 && round < 8; round++) {
      const list = this.dirty;
      this.dirty = [];
      for (let i = 0; i < list.length; i++) list[i].flushTurn();
    }
    if (this.dirty.length > 0 && this.task === null) this.task = this.scheduler.schedule(this.run);
  };
}

/** the process's one flush, on the macrotask scheduler */
export const turnFlush = new TurnFlush(immediateScheduler);

/**
 * A socket's writes gathered per turn: `push` during the turn, one `write` (the buffers joined,
 * or the one buffer as it is) in the turn's flush.
 */
export class BatchWriter implements Flushable {
  private parts: Buffer[] = [];
  private size = 0;
  private marked = false;
  /** when each write the socket has not handed to the kernel whole yet was made (with a clock), oldest first */
  private unfinished: number[] = [];
  /** when the socket last handed bytes to the kernel, as far as can be seen (a write finished, or its queue shrank) */
  private progressAt = 0;
  /** the socket's queue of bytes not yet taken by the kernel, at the last look */
  private lastQueued = -1;
  private readonly finished = (): void => {
    this.unfinished.shift();
    if (this.now !== undefined) this.progressAt = this.now();
  };

  constructor(
    private readonly socket: net.Socket,
    private readonly flush: TurnFlush = turnFlush,
    /** with a clock, `stuckSince` tells since when the writes have not moved */
    private readonly now?: () => number,
  ) {}

  /**
   * Since when the socket's writes have been stuck: the later of the oldest unfinished write and
   * the last progress seen; undefined when no write waits (or no clock). A large write that the
   * peer takes slowly but steadily is not stuck: the bytes libuv still holds for the socket
   * (its handle's `writeQueueSize`, where the handle has one) going down count as progress.
   */
  stuckSince(): number | undefined {
    if (this.unfinished.length === 0 || this.now === undefined) return undefined;
    const queued = (this.socket as unknown as { _handle?: { writeQueueSize?: unknown } | null })._handle?.writeQueueSize;
    if (typeof queued === 'number') {
      if (this.lastQueued >= 0 && queued < this.lastQueued) this.progressAt = this.now();
      this.lastQueued = queued;
    }
    return Math.max(this.unfinished[0], this.progressAt);
  }

  push(buf: Buffer): void {
    this.parts.push(buf);
    this.size += buf.length;
    if (!this.marked) {
      this.marked = true;
      this.flush.mark(this);
    }
  }

  /** bytes pushed and not yet written */
  get pending(): number {
    return this.size;
  }

  /** forgets what was not written (the connection is gone) */
  discard(): void {
    this.parts = [];
    this.size = 0;
    this.unfinished = [];
    this.lastQueued = -1;
  }

  flushTurn(): void {
    this.marked = false;
    if (this.parts.length === 0) return;
    const out = this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts, this.size);
    this.parts = [];
    this.size = 0;
    if (this.socket.destroyed) return;
    if (this.now === undefined) {
      this.socket.write(out);
      return;
    }
    // (a write's callback runs once the kernel took all of it, or the socket failed; in order)
    this.unfinished.push(this.now());
    this.socket.write(out, this.finished);
  }
}
