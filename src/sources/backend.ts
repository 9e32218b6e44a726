import type net from 'node:net';
import { NEVER, Subscription, tap, type Observable, type SchedulerLike } from 'rxjs';
import type { Logger } from 'pino';
import { BatchWriter, type TurnFlush } from '../sinks/turn-flush.js';
import { decodeReplies, isPush } from '../operators/decode-replies.js';
import { overdue } from '../operators/overdue.js';
import { encodeCommand } from '../protocol/request-decoder.js';
import { errorFrame } from '../protocol/encode.js';
import { ReplyProtocolError, type ReplyLimits } from '../protocol/reply-decoder.js';
import { PendingQueue } from '../util/pending.js';
import type { BackendErrorCause, BackendStats } from '../util/request-stats.js';
import { connectTcp, fromSocket, onReady } from './socket.js';
import type { TlsClientConfig } from '../config/types.js';

/** Where a reply goes: a client session's reorder buffer, or a multi-key aggregate. */
export interface ReplyTarget {
  deliver(seq: number, frame: Buffer): void;
}

/** the seq of the connection's own setup commands (AUTH, HELLO), answered to nobody */
const SETUP = -1;

export type BackendState = 'connecting' | 'up' | 'down' | 'closed';

/** Error replies that say the server, not the request, is in trouble: health checks count them. */
export type BackendErrorKind = 'LOADING' | 'BUSY' | 'OOM';

const HEALTH_ERRORS: ReadonlyArray<[Buffer, BackendErrorKind]> = [
  [Buffer.from('-LOADING '), 'LOADING'],
  [Buffer.from('-BUSY '), 'BUSY'], // not -BUSYKEY or -BUSYGROUP: those are about the request
  [Buffer.from('-OOM '), 'OOM'],
];

const CONNECTION_ERROR = Buffer.from('-ERR backend ');

/**
 * True for the errors a BackendConnection answers itself when its connection is down or lost
 * (`-ERR backend <label>...`): the request may not have reached the server.
 */
export function isConnectionError(frame: Buffer): boolean {
  return frame.length > CONNECTION_ERROR.length && frame.compare(CONNECTION_ERROR, 0, CONNECTION_ERROR.length, 0, CONNECTION_ERROR.length) === 0;
}

/** The kind of a `-LOADING`, `-BUSY` or `-OOM` error reply; undefined for any other reply. */
export function healthErrorKind(frame: Buffer): BackendErrorKind | undefined {
  if (frame[0] !== 0x2d /* - */) return undefined;
  for (const [prefix, kind] of HEALTH_ERRORS) if (frame.length >= prefix.length && frame.compare(prefix, 0, prefix.length, 0, prefix.length) === 0) return kind;
  return undefined;
}

export interface BackendOptions {
  host: string;
  port: number;
  /** how the backend is named in errors and logs: the alias, else host:port */
  label: string;
  /** ms from send to reply before the connection is given up; 0: none */
  readTimeoutMs: number;
  connectTimeoutMs: number;
  /** ms a write may wait for the backend to take it (a backend that stops reading) before the connection is given up; 0: none */
  writeTimeoutMs?: number;
  keepAliveSec: number;
  /** RESP protocol of this connection; 3 sends HELLO 3 first */
  proto: 2 | 3;
  /** sent with AUTH on every new connection */
  password?: string;
  /** the ACL user of that AUTH (AUTH username password) */
  username?: string;
  /** TLS to the backend */
  tls?: TlsClientConfig;
  /** send READONLY on every new connection: a cluster replica then serves reads of its master's slots */
  readOnly?: boolean;
  limits: ReplyLimits;
  /** ticks that drive the timeout check (one shared interval per cluster) */
  ticks$: Observable<unknown>;
  scheduler: SchedulerLike;
  /** where writes are gathered and flushed, once per event-loop turn */
  flush: TurnFlush;
  logger: Logger;
  /** first reconnect delay and cap, ms */
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /**
   * a connection that belongs to one client (a transaction, WATCH): never reconnected, since a
   * new connection would not carry its state; once lost, every request fails at once
   */
  oneShot?: boolean;
  /** called for each `-LOADING`, `-BUSY` or `-OOM` reply (which still goes to its client as it is) */
  onBackendError?(kind: BackendErrorKind): void;
}

/**
 * One multiplexed, pipelined connection to a backend, shared by every client of a worker.
 *
 * Requests are written in the order `send` is called, coalesced into one write per event
 * loop turn, and replies are matched to them first-in first-out. Whenever that alignment is
 * in doubt (a timeout, a malformed reply, a reply with no request, a lost connection) the
 * connection is closed and every request still waiting gets an error: a late reply can then
 * never reach the wrong client. While the backend is down, requests fail at once
 * ("blackhole") and the connection is retried with exponential backoff.
 */
export class BackendConnection {
  private pending = new PendingQueue<ReplyTarget>(64);
  private socket: net.Socket | null = null;
  private out$: BatchWriter | null = null;
  private conn = new Subscription();
  private retry: Subscription | null = null;
  private connectTimer: Subscription | null = null;
  private attempts = 0;
  private lastError = 'not connected yet';
  /** the reason last logged (an AUTH refusal is logged once, not at each retry) */
  private lastLogged = '';
  private _state: BackendState = 'connecting';
  /** replaced (reload): finish what is in flight, then close, without reconnecting */
  private draining = false;
  private readonly ticker: Subscription;
  /** when the socket chunk being decoded arrived (one clock read per chunk, not per reply) */
  private chunkAt = 0;
  /** the send clock's turn and reading */
  private clockTurn = -1;
  private clockAt = 0;
  /** the counters of this backend (the cluster sets them); null: not counted */
  stats: BackendStats | null = null;

  constructor(private readonly opts: BackendOptions) {
    // readTimeoutMs 0: no read timeout (a blocking command's own timeout governs)
    this.ticker = (opts.readTimeoutMs > 0 ? opts.ticks$ : NEVER)
      .pipe(
        overdue({
          timeoutMs: opts.readTimeoutMs,
          oldestSentAt: () => this.pending.oldestSentAt(),
          scheduler: opts.scheduler,
        }),
      )
      .subscribe(() => this.fail(`read timeout (${opts.readTimeoutMs} ms)`, true, 'timeout'));
    // write_timeout: the same ticks, on writes the backend has taken nothing of for that long
    const writeTimeoutMs = opts.writeTimeoutMs ?? 0;
    this.ticker.add(
      (writeTimeoutMs > 0 ? opts.ticks$ : NEVER)
        .pipe(overdue({ timeoutMs: writeTimeoutMs, oldestSentAt: () => this.out$?.stuckSince(), scheduler: opts.scheduler }))
        .subscribe(() => this.fail(`write timeout (${writeTimeoutMs} ms): the backend does not take what is written to it`, true, 'timeout')),
    );
    this.open();
  }

  get state(): BackendState {
    return this._state;
  }

  /** requests written and not yet answered */
  get inFlight(): number {
    return this.pending.length;
  }

  /** Sends one request (raw RESP); its reply, or an error frame, goes to `target.deliver(seq, ...)`. */
  send(data: Buffer, target: ReplyTarget, seq: number): void {
    if (this._state === 'down' || this._state === 'closed' || this.out$ === null) {
      this.stats?.failed('unavailable');
      target.deliver(seq, this.unavailable());
      return;
    }
    this.out$.push(data);
    this.pending.push(target, seq, this.sendClock());
  }

  /**
   * When the requests of this turn were sent: one clock reading per turn (a request written in
   * this turn's flush waits for it, not for the moment `send` was called), since every send
   * marks a flush, which starts the next turn's count.
   */
  private sendClock(): number {
    const turn = this.opts.flush.turn;
    if (turn !== this.clockTurn) {
      this.clockTurn = turn;
      this.clockAt = this.opts.scheduler.now();
    }
    return this.clockAt;
  }

  /** Stops taking part: requests already sent are answered, then the connection closes. */
  drain(): void {
    this.draining = true;
    if (this.pending.length === 0) this.close();
  }

  /** Reconnects now instead of at the end of the backoff (health checks saw the server answer). */
  retryNow(): void {
    if (this._state !== 'down' || this.retry === null) return;
    this.retry.unsubscribe();
    this.retry = null;
    this.open();
  }

  close(): void {
    if (this._state === 'closed') return;
    this.fail('proxy is shutting down', false);
    this._state = 'closed';
    this.ticker.unsubscribe();
    this.retry?.unsubscribe();
  }

  /** the connection answered: it works, and the next loss reconnects at once */
  private proven(): void {
    if (this.attempts > 0 && this.lastLogged === '') this.opts.logger.info({ backend: this.opts.label }, 'backend reconnected');
    this.attempts = 0;
  }

  private setupCheck(what: string): ReplyTarget {
    return {
      deliver: (_seq, frame) => {
        if (frame[0] !== 0x2d /* - */) {
          if (what === 'AUTH') {
            if (this.lastLogged !== '') this.opts.logger.info({ backend: this.opts.label }, 'backend accepts the proxy\'s AUTH again');
            this.lastLogged = '';
            this.proven();
          }
          return;
        }
        const reply = frame.toString('utf8', 1, Math.min(frame.length - 2, 200));
        if (what === 'AUTH') {
          // a wrong backend_password: every request would get the backend's NOAUTH. Say why
          // instead, and try again only after a backoff (the password may be fixed by a reload)
          this.fail(`the backend rejected the proxy's AUTH (check backend_password / backend_auth): ${reply}`, true, 'auth');
          return;
        }
        this.opts.logger.error({ backend: this.opts.label, reply }, `backend rejected ${what}`);
      },
    };
  }

  private unavailable(): Buffer {
    return errorFrame(`ERR backend ${this.opts.label} is unavailable: ${this.lastError}`);
  }

  private open(): void {
    const { opts } = this;
    const socket = connectTcp({ host: opts.host, port: opts.port, keepAliveSec: opts.keepAliveSec, ...(opts.tls !== undefined ? { tls: opts.tls } : {}) });
    const out$ = new BatchWriter(socket, opts.flush, (opts.writeTimeoutMs ?? 0) > 0 ? () => opts.scheduler.now() : undefined);
    const conn = new Subscription();
    this.socket = socket;
    this.conn = conn;
    // the first connection queues requests while it connects; a reconnection fails them fast
    if (this._state === 'connecting') this.out$ = out$;

    conn.add(() => out$.discard());
    conn.add(
      fromSocket(socket)
        .pipe(
          tap(() => {
            this.chunkAt = opts.scheduler.now();
          }),
          decodeReplies(opts.limits),
        )
        .subscribe({
          next: (frame) => {
            if (isPush(frame)) return; // out-of-band (RESP3 push): answers no request
            const pending = this.pending;
            if (!pending.shift()) {
              this.fail('reply with no request', true, 'protocol');
              return;
            }
            const target = pending.target as ReplyTarget;
            const seq = pending.seq;
            const sentAt = pending.sentAt;
            if (frame[0] === 0x2d /* - */ && this.opts.onBackendError !== undefined) {
              const kind = healthErrorKind(frame);
              if (kind !== undefined) this.opts.onBackendError(kind);
            }
            if (seq !== SETUP) {
              if (this.attempts !== 0) this.proven();
              if (this.stats !== null) this.stats.reply(this.chunkAt - sentAt, frame);
            }
            target.deliver(seq, frame);
            if (this.draining && this.pending.length === 0) this.close();
          },
          error: (err: unknown) => this.fail(err instanceof Error ? err.message : String(err), true, err instanceof ReplyProtocolError ? 'protocol' : 'closed'),
          complete: () => this.fail('connection closed by the backend', true, 'closed'),
        }),
    );
    this.connectTimer = opts.scheduler.schedule(() => {
      if (this._state !== 'up') this.fail(`connect timeout (${opts.connectTimeoutMs} ms)`, true, 'connect');
    }, opts.connectTimeoutMs);
    conn.add(this.connectTimer);
    onReady(socket, () => {
      this.connectTimer?.unsubscribe();
      this._state = 'up';
      this.out$ = out$;
    });
    // connection setup goes first on the wire; a failure is logged and the client requests
    // then get the backend's own error (NOAUTH...), never a reply meant for another request
    const setup = (args: string[], what: string): void => {
      out$.push(encodeCommand(args));
      this.pending.push(this.setupCheck(what), SETUP, opts.scheduler.now());
    };
    if (opts.password !== undefined) setup(opts.username !== undefined ? ['AUTH', opts.username, opts.password] : ['AUTH', opts.password], 'AUTH');
    if (opts.proto === 3) setup(['HELLO', '3'], 'HELLO 3');
    if (opts.readOnly === true) setup(['READONLY'], 'READONLY');
  }

  /**
   * Closes the connection, answers every waiting request with an error, and schedules a retry.
   * `cause` is counted in the backend's stats (a connection lost before it was up failed to
   * connect); none for a shutdown.
   */
  private fail(reason: string, reconnect: boolean, cause?: BackendErrorCause): void {
    if (this._state === 'closed') return;
    // a connection the backend refused to authenticate was never usable: back off as for a refused one
    const wasUp = this._state === 'up' && cause !== 'auth';
    const stats = this.stats;
    if (stats !== null && cause !== undefined) stats.error(cause === 'closed' && !wasUp ? 'connect' : cause);
    this.conn.unsubscribe();
    this.socket?.destroy();
    this.socket = null;
    this.out$ = null;
    this.lastError = reason;
    // one line when a backend goes away, not one per reconnect attempt while it stays away
    if (cause === 'auth') {
      if (reason !== this.lastLogged) this.opts.logger.error({ backend: this.opts.label, reason, failed: this.pending.length }, 'backend refused the proxy: its requests fail fast until it accepts the password');
      this.lastLogged = reason;
    } else if (reconnect && this.attempts === 0) {
      this.lastLogged = '';
      this.opts.logger.warn({ backend: this.opts.label, reason, failed: this.pending.length }, 'backend connection lost; its requests fail fast until it is back');
    }
    const frame = errorFrame(`ERR backend ${this.opts.label}: ${reason}`);
    let failed = 0;
    const pending = this.pending;
    while (pending.shift()) {
      if (pending.seq === SETUP) continue;
      failed++;
      (pending.target as ReplyTarget).deliver(pending.seq, frame);
    }
    if (stats !== null && failed > 0) stats.failed(cause === 'timeout' ? 'timeout' : 'closed', failed);
    this._state = 'down';
    if (this.opts.oneShot === true && reconnect) {
      this.close();
      return;
    }
    if (!reconnect || this.draining) {
      if (this.draining && reconnect) this.close(); // (close() itself calls fail(.., false): no loop)
      return;
    }
    // a timeout or a protocol error on a live connection reconnects at once; a refused one backs off
    const min = this.opts.backoffMinMs ?? 50;
    const max = this.opts.backoffMaxMs ?? 2000;
    // (a connection lost again before it answered anything backs off too: a server that accepts
    // and drops, or is full, must not get a reconnect storm)
    const delay = wasUp && this.attempts === 0 ? 0 : Math.min(max, min * 2 ** Math.min(this.attempts, 16));
    this.attempts++;
    this.retry?.unsubscribe();
    this.retry = this.opts.scheduler.schedule(() => {
      this.retry = null;
      if (this._state === 'down') this.open();
    }, delay);
  }
}
