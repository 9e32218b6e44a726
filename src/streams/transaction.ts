import type { Logger } from 'pino';
import { keyIndexes, type CommandSpec } from '../commands/index.js';
import { errorFrame, type Proto } from '../protocol/encode.js';
import { encodeCommand } from '../protocol/request-decoder.js';
import { parseRedirect } from '../routing/redirect.js';
import type { BackendConnection, ReplyTarget } from '../sources/backend.js';

/** What a transaction needs from its cluster. */
export interface TxUpstream {
  /** where a key goes (a backend index, or a slot in cluster mode): a transaction stays on one */
  backendFor(key: Buffer): number;
  /** a connection of the client's own to the node serving `backend`, or the error why there is none */
  dedicated(backend: number, proto: Proto): BackendConnection | Buffer;
  /** a reply said the slot moved: the cluster's map is behind */
  onRedirect?(): void;
  logger: Logger;
}

const OK = Buffer.from('+OK\r\n', 'latin1');
const QUEUED = Buffer.from('+QUEUED\r\n', 'latin1');
const EMPTY_EXEC = Buffer.from('*0\r\n', 'latin1');
const MULTI = encodeCommand(['MULTI']);
const DISCARD = encodeCommand(['DISCARD']);
const EXEC = encodeCommand(['EXEC']);
const EXECABORT = errorFrame('EXECABORT Transaction discarded because of previous errors.');
const NOT_IN_MULTI = errorFrame('ERR Command not allowed inside a transaction');
const IGNORE: ReplyTarget = { deliver: () => undefined };
/** any key: where a transaction of keyless commands only runs */
const NO_KEY = Buffer.alloc(0);

/** commands the proxy answers about the client connection itself: not inside a transaction */
const CONNECTION_STATE = new Set(['auth', 'hello', 'select', 'client', 'reset', 'cluster', 'readonly', 'readwrite', 'asking', 'info', 'slowlog', 'command']);

/**
 * MULTI/EXEC/DISCARD/WATCH/UNWATCH for one client, on a backend connection of its own.
 *
 * A transaction runs on one node: the one of its first key (WATCH's or a queued command's).
 * The dedicated connection opens there; MULTI, the queued commands and EXEC go over it, and
 * their answers (+QUEUED, errors, EXEC's array) come from Redis itself. Keyless commands
 * queued before the first key are held, answered +QUEUED, and sent once the node is known.
 * A command whose keys are elsewhere gets an error and makes EXEC answer -EXECABORT, as Redis
 * does for a command it refuses to queue. EXEC, DISCARD and UNWATCH give the connection
 * back: it closes once their answers are in. A client that leaves closes it at once, which
 * discards the transaction and its watches in Redis.
 */
export class Transaction {
  private conn: BackendConnection | null = null;
  /** the backend (or slot) the connection serves */
  private backend = -1;
  private inMulti = false;
  /** MULTI went over the connection */
  private multiSent = false;
  private aborted = false;
  private held: Buffer[] = [];

  constructor(
    private readonly up: TxUpstream,
    private readonly proto: () => Proto,
    /** answers the client's request `seq` */
    private readonly target: ReplyTarget,
  ) {}

  /** the request must go through `handle`: a transaction command, or anything while in MULTI */
  wants(spec: CommandSpec): boolean {
    return this.inMulti || spec.transaction;
  }

  /** Handles one request; returns its answer, or null when the answer comes from the backend. */
  handle(spec: CommandSpec, name: string, args: readonly Buffer[], raw: Buffer, seq: number): Buffer | null {
    switch (name) {
      case 'multi':
        if (this.inMulti) return errorFrame('ERR MULTI calls can not be nested');
        this.inMulti = true;
        this.aborted = false;
        if (this.conn === null) return OK;
        this.multiSent = true;
        this.send(raw, seq);
        return null;
      case 'exec':
        if (!this.inMulti) return errorFrame('ERR EXEC without MULTI');
        return this.exec(seq);
      case 'discard':
        if (!this.inMulti) return errorFrame('ERR DISCARD without MULTI');
        return this.finish(raw, seq, OK);
      case 'watch':
        if (this.inMulti) return errorFrame('ERR WATCH inside MULTI is not allowed');
        return this.watch(spec, args, raw, seq);
      case 'unwatch':
        if (!this.inMulti) return this.finish(raw, seq, OK);
        break;
      default:
        break;
    }
    return this.queue(spec, name, args, raw, seq);
  }

  /** the proxy refused a request (unknown command, wrong arity, denied): inside MULTI, EXEC then aborts, as Redis does */
  refused(): void {
    if (this.inMulti) this.aborted = true;
  }

  /** the client left: the connection closes, and Redis drops the transaction and the watches */
  close(): void {
    this.conn?.close();
    this.conn = null;
  }

  /** RESET: the transaction and the watches are dropped (the connection closes) */
  reset(): void {
    this.close();
    this.backend = -1;
    this.inMulti = false;
    this.multiSent = false;
    this.aborted = false;
    this.held = [];
  }

  private watch(spec: CommandSpec, args: readonly Buffer[], raw: Buffer, seq: number): Buffer | null {
    const b = this.backendOf(spec, args);
    if (typeof b !== 'number') return b;
    if (this.conn !== null && b !== this.backend) return this.elsewhere();
    const err = this.open(b);
    if (err !== null) return err;
    this.send(raw, seq);
    return null;
  }

  private queue(spec: CommandSpec, name: string, args: readonly Buffer[], raw: Buffer, seq: number): Buffer | null {
    if (CONNECTION_STATE.has(name) || spec.flags.has('no_multi') || spec.pubsub) return this.abort(NOT_IN_MULTI);
    const keyed = keyIndexes(spec, args).length > 0;
    if (!keyed) {
      if (this.conn === null) {
        this.held.push(raw);
        return QUEUED;
      }
      this.send(raw, seq);
      return null;
    }
    const b = this.backendOf(spec, args);
    if (typeof b !== 'number') return this.abort(b);
    if (this.conn !== null && b !== this.backend) return this.abort(this.elsewhere());
    if (this.conn === null) {
      const err = this.open(b);
      if (err !== null) return this.abort(err);
    }
    this.send(raw, seq);
    return null;
  }

  private exec(seq: number): Buffer | null {
    if (this.aborted) return this.finish(DISCARD, -1, EXECABORT);
    if (this.conn === null) {
      if (this.held.length === 0) return this.finish(DISCARD, -1, EMPTY_EXEC);
      const err = this.open(this.up.backendFor(NO_KEY));
      if (err !== null) return this.finish(DISCARD, -1, err);
    }
    return this.finish(EXEC, seq, EMPTY_EXEC);
  }

  /**
   * Ends the transaction (and its watches): `raw` goes over the connection, if there is one,
   * and answers `seq` (-1: its answer is dropped and `answer` is the reply); then the connection
   * closes once its answers are in.
   */
  private finish(raw: Buffer, seq: number, answer: Buffer): Buffer | null {
    const conn = this.conn;
    const sentMulti = this.multiSent;
    this.conn = null;
    this.backend = -1;
    this.inMulti = false;
    this.multiSent = false;
    this.aborted = false;
    this.held = [];
    if (conn === null) return answer;
    // DISCARD outside MULTI is an error in Redis: an UNWATCH, or nothing, does instead
    const wire = raw === DISCARD && !sentMulti ? null : raw;
    if (wire !== null) conn.send(wire, seq < 0 ? IGNORE : this.replies, seq);
    conn.drain();
    return seq < 0 || wire === null ? answer : null;
  }

  /** opens the connection to `backend` and catches it up: MULTI and the held commands, if in MULTI */
  private open(backend: number): Buffer | null {
    if (this.conn !== null) return null;
    const conn = this.up.dedicated(backend, this.proto());
    if (Buffer.isBuffer(conn)) return conn;
    this.conn = conn;
    this.backend = backend;
    if (this.inMulti) {
      this.multiSent = true;
      conn.send(MULTI, IGNORE, -1);
      for (const h of this.held) conn.send(h, this.heldReplies, -1);
      this.held = [];
    }
    return null;
  }

  private send(raw: Buffer, seq: number): void {
    this.conn?.send(raw, this.replies, seq);
  }

  /** replies over the connection go to the client, except a redirect: the slot moved under the transaction */
  private readonly replies: ReplyTarget = {
    deliver: (seq, frame) => {
      const r = frame[0] === 0x2d ? parseRedirect(frame) : null;
      if (r !== null && (r.kind === 'moved' || r.kind === 'ask')) {
        this.up.onRedirect?.();
        const text = frame.toString('utf8', 1, frame.length - 2);
        this.target.deliver(seq, errorFrame(`TRYAGAIN the slot of this key moved during the transaction (${text}); run the transaction again`));
        return;
      }
      this.target.deliver(seq, frame);
    },
  };

  /** held commands were answered +QUEUED already; an error means Redis will refuse EXEC (EXECABORT) */
  private readonly heldReplies: ReplyTarget = { deliver: () => undefined };

  private backendOf(spec: CommandSpec, args: readonly Buffer[]): number | Buffer {
    const keys = keyIndexes(spec, args);
    const b = this.up.backendFor(args[keys[0]]);
    for (let i = 1; i < keys.length; i++) if (this.up.backendFor(args[keys[i]]) !== b) return this.elsewhere();
    return b;
  }

  private elsewhere(): Buffer {
    return errorFrame("CROSSSLOT Keys in a transaction must all be on one server (one slot in cluster mode): use a hash tag to keep them together");
  }

  private abort(err: Buffer): Buffer {
    if (this.inMulti) this.aborted = true;
    return err;
  }
}
