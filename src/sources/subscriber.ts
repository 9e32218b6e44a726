import type net from 'node:net';
import { Subscription, type SchedulerLike } from 'rxjs';
import type { Logger } from 'pino';
import { BatchWriter } from '../sinks/turn-flush.js';
import { decodeReplies } from '../operators/decode-replies.js';
import { encodeCommand } from '../protocol/request-decoder.js';
import type { ReplyLimits } from '../protocol/reply-decoder.js';
import type { Proto } from '../protocol/encode.js';
import { connectTcp, fromSocket, onReady } from './socket.js';
import type { TlsClientConfig } from '../config/types.js';
import { immediateScheduler } from './scheduler.js';

export interface SubscriberOptions {
  host: string;
  port: number;
  label: string;
  proto: Proto;
  password?: string;
  username?: string;
  tls?: TlsClientConfig;
  connectTimeoutMs: number;
  keepAliveSec: number;
  limits: ReplyLimits;
  scheduler: SchedulerLike;
  logger: Logger;
  /** every frame the server sends once the connection is set up (confirmations, messages, errors) */
  onFrame(frame: Buffer): void;
  /** the connection is set up (AUTH, HELLO 3 answered): subscriptions may be sent */
  onUp(): void;
  /** the connection is lost or could not be made; it is closed for good (the owner decides what next) */
  onDown(reason: string): void;
}

/** A subscriber connection to `node` made with a cluster's connection settings. */
export function openSubscriber(
  node: { host: string; port: number; addr: string; alias?: string },
  proto: Proto,
  settings: { password?: string; username?: string; tls?: TlsClientConfig; connectTimeoutMs: number; keepAliveSec: number; limits: ReplyLimits },
  logger: Logger,
  events: Pick<SubscriberOptions, 'onFrame' | 'onUp' | 'onDown'>,
): SubscriberConnection {
  return new SubscriberConnection({
    host: node.host,
    port: node.port,
    label: node.alias ?? node.addr,
    proto,
    ...(settings.password !== undefined ? { password: settings.password } : {}),
    ...(settings.username !== undefined ? { username: settings.username } : {}),
    ...(settings.tls !== undefined ? { tls: settings.tls } : {}),
    connectTimeoutMs: settings.connectTimeoutMs,
    keepAliveSec: settings.keepAliveSec,
    limits: settings.limits,
    scheduler: immediateScheduler,
    logger,
    ...events,
  });
}

/**
 * A connection in subscribed mode for one client: every frame goes to `onFrame` (no request
 * FIFO: messages arrive unasked). It does not reconnect: when it is lost, the subscriptions it
 * carried are placed again by its owner, maybe on another node (a failover).
 */
export class SubscriberConnection {
  private socket: net.Socket | null;
  private readonly out$: BatchWriter;
  private readonly conn = new Subscription();
  private setupLeft = 0;
  private _state: 'connecting' | 'up' | 'closed' = 'connecting';

  constructor(private readonly opts: SubscriberOptions) {
    const socket = connectTcp({ host: opts.host, port: opts.port, keepAliveSec: opts.keepAliveSec, ...(opts.tls !== undefined ? { tls: opts.tls } : {}) });
    this.socket = socket;
    this.out$ = new BatchWriter(socket);
    this.conn.add(() => this.out$.discard());
    this.conn.add(
      fromSocket(socket)
        .pipe(decodeReplies(opts.limits))
        .subscribe({
          next: (frame) => this.frame(frame),
          error: (err: unknown) => this.lost(err instanceof Error ? err.message : String(err)),
          complete: () => this.lost('connection closed by the backend'),
        }),
    );
    this.conn.add(
      opts.scheduler.schedule(() => {
        if (this._state === 'connecting') this.lost(`connect timeout (${opts.connectTimeoutMs} ms)`);
      }, opts.connectTimeoutMs),
    );
    // setup first on the wire: its answers are counted off before anything reaches onFrame
    if (opts.password !== undefined) this.setup(opts.username !== undefined ? ['AUTH', opts.username, opts.password] : ['AUTH', opts.password]);
    if (opts.proto === 3) this.setup(['HELLO', '3']);
    onReady(socket, () => {
      if (this.setupLeft === 0) this.up();
    });
  }

  get state(): 'connecting' | 'up' | 'closed' {
    return this._state;
  }

  /** sends a command (queued while connecting) */
  send(raw: Buffer): void {
    if (this._state !== 'closed') this.out$.push(raw);
  }

  close(): void {
    if (this._state === 'closed') return;
    this._state = 'closed';
    this.conn.unsubscribe();
    this.socket?.destroy();
    this.socket = null;
  }

  private setup(args: string[]): void {
    this.setupLeft++;
    this.out$.push(encodeCommand(args));
  }

  private frame(frame: Buffer): void {
    if (this.setupLeft > 0) {
      this.setupLeft--;
      if (frame[0] === 0x2d /* - */ || frame[0] === 0x21 /* ! */) {
        this.lost(`the backend refused the subscriber connection's setup: ${frame.toString('utf8', 1, Math.min(frame.length - 2, 200))}`);
        return;
      }
      if (this.setupLeft === 0 && this.socket?.connecting === false) this.up();
      return;
    }
    this.opts.onFrame(frame);
  }

  private up(): void {
    if (this._state !== 'connecting') return;
    this._state = 'up';
    this.opts.onUp();
  }

  private lost(reason: string): void {
    if (this._state === 'closed') return;
    this.close();
    this.opts.onDown(reason);
  }
}
