import type net from 'node:net';
import { Subject, Subscription, takeUntil } from 'rxjs';
import type { Logger } from 'pino';
import { decodeRequests } from '../operators/decode-requests.js';
import { admitRequests, type Progress } from '../operators/admit-requests.js';
import { PRE_AUTH_MAX_ARGS, PRE_AUTH_MAX_BULK, ProtocolError, type Request, type RequestLimits } from '../protocol/request-decoder.js';
import { errorFrame, type Proto } from '../protocol/encode.js';
import { fromSocket } from '../sources/socket.js';
import { immediateScheduler } from '../sources/scheduler.js';
import type { ReplyTarget } from '../sources/backend.js';
import type { ClientState, ProxyFacts } from '../commands/local.js';
import type { BlockingOwner } from '../sources/blocking-pool.js';
import { FrontError, InFlight, type RequestStats } from '../util/request-stats.js';
import { ClientOutput } from '../sinks/client-output.js';
import type { Slowlog } from './slowlog.js';
import type { AuthFailures } from './auth-failures.js';
import type { LimitsConfig } from '../config/types.js';
import { Transaction, type TxUpstream } from './transaction.js';
import { PubSub, type PubSubUpstream } from './pubsub.js';
import { createDispatch, type SessionParts } from './dispatch.js';

/** What a client session needs from the cluster it connected to. */
export interface Upstream extends TxUpstream, PubSubUpstream {
  facts: ProxyFacts;
  limits: LimitsConfig;
  logger: Logger;
  /**
   * Where a key goes: the backend's index (standalone) or the key's slot (cluster). Keys with
   * the same answer may share a request; `send` takes it.
   */
  backendFor(key: Buffer, start?: number, end?: number): number;
  /**
   * Sends a request over the shared connection for `proto` of the backend `backendFor` named.
   * `readOnly`: the command only reads (cluster mode may serve it from a replica).
   */
  send(backend: number, proto: Proto, raw: Buffer, target: ReplyTarget, seq: number, readOnly: boolean): void;
  /**
   * Sends a blocking command (BLPOP, XREAD BLOCK...) to `backend` over a connection of its own;
   * `owner` cancels it (closing that connection) when the client leaves.
   */
  sendBlocking(backend: number, proto: Proto, raw: Buffer, target: ReplyTarget, seq: number, owner: BlockingOwner): void;
  /**
   * A request to node `i` (0 .. nodeCount()-1) over a connection of its own: WAIT (with
   * `before` = WAIT_MARK, sent first on that connection), SCRIPT KILL / FUNCTION KILL
   */
  sendBlockingToNode(i: number, proto: Proto, raw: Buffer, target: ReplyTarget, seq: number, owner: BlockingOwner, before?: Buffer): void;
  /** how many nodes hold the data (standalone: the backends; cluster: the masters) */
  nodeCount(): number;
  /** sends a request to node `i` (0 .. nodeCount()-1), e.g. to sum something over all of them */
  sendToNode(i: number, proto: Proto, raw: Buffer, target: ReplyTarget, seq: number): void;
  /** counters the session moves */
  stats: SessionStats;
  /** the cluster's slow log: requests slower than its threshold go there */
  slowlog: Slowlog;
  /** commands denied by policy: `name` or `name|subcommand`, lower case */
  denied: ReadonlySet<string>;
  /** FLUSHALL, CONFIG SET and the other admin broadcasts may run */
  adminCommands: boolean;
  /** failed AUTHs by client address (the cluster's) */
  authFailures: AuthFailures;
}

export interface SessionStats {
  connectedClients: number;
  totalConnections: number;
  totalCommands: number;
  protocolErrors: number;
  internalErrors: number;
  /** latency histograms, replies by command and result, errors by kind */
  requests: RequestStats;
}

/**
 * One client connection, composed as a stream:
 *
 *   fromSocket ─► decodeRequests ─► dispatch ─┬─► backend (shared, pipelined) ─┐
 *                                             └─► answered by the proxy ───────┴─► inOrder ─► coalesceWrites ─► toSocket
 *
 * Requests are numbered as they arrive; replies come back in any order and leave in request
 * order. A protocol error is answered after every earlier reply, then the connection closes.
 */
export interface Session {
  /** tears the session down at once (socket destroyed) */
  subscription: Subscription;
  /** graceful end: stop reading, answer every request already read, then close */
  end(): void;
  /** ms since the client last sent anything, when nothing it sent waits for a reply (else -1) */
  idleMs(now: number): number;
  /** reply bytes waiting in the proxy for this client to read (held for order, gathered, unsent) */
  outputBytes(): number;
  /** a blocking command of this client is waiting (BLPOP, XREAD BLOCK, WAIT...) */
  blocked(): boolean;
}

export function runSession(socket: net.Socket, up: Upstream, id: number): Session {
  // the peer's address costs a system call: read when first asked for (CLIENT, SLOWLOG, AUTH)
  let ip: string | undefined;
  let addr: string | undefined;
  const ipOf = (): string => (ip ??= socket.remoteAddress ?? '?');
  let closeHard = false; // close the socket after the last reply (protocol error, QUIT), not only our half
  const client: ClientState = {
    id,
    name: null,
    proto: 2,
    libName: null,
    libVer: null,
    quit: false,
    authed: up.facts.password === undefined && up.facts.users.size === 0,
    get addr(): string {
      return (addr ??= `${ipOf()}:${socket.remotePort ?? 0}`);
    },
  };
  const session = new Subscription();
  let seq = 0; // requests dispatched (numbered in the order the client sent them)
  let inputDone = false; // no request after `seq - 1` will be dispatched
  let finished = false; // the socket was ended after the last reply
  const rs = up.stats.requests;
  // per request from arrival to reply: arrival time (one clock read per socket chunk, not per
  // request), command, and the request itself for SLOWLOG
  const inFlight = new InFlight();
  let chunkAt = 0;

  // the reply side: reorder buffer -> this turn's output -> one write per turn
  const output: ClientOutput = new ClientOutput(socket, {
    limits: () => up.limits,
    logger: up.logger,
    stats: rs,
    inFlight,
    slowlog: up.slowlog,
    client,
    subscribed: (): boolean => parts.pubsub !== null && parts.pubsub.active,
    scheduler: immediateScheduler,
    afterFlush: () => {
      if (admitHolding) progress$.next({ answered: output.answered, bytes: output.releasedBytes, unread: output.unread });
      if (inputDone && output.answered === seq && !finished) finish();
    },
  });
  const target = output.target;
  // a transaction or subscriptions: built by the first request that needs them
  const parts: SessionParts = { tx: null, pubsub: null };
  const proto = (): Proto => client.proto;
  /** this client's blocking commands in flight: cancelled (their connections closed) when it leaves */
  const blockedOn: BlockingOwner = new Set();
  const { laneOf, route } = createDispatch({
    up,
    client,
    ip: ipOf,
    target,
    parts,
    tx: () => (parts.tx ??= new Transaction(up, proto, target)),
    pubsub: () => (parts.pubsub ??= new PubSub(up, proto, target, (frame, after) => output.push(frame, after))),
    blockedOn,
    inFlight,
    timers: session,
    scheduler: immediateScheduler,
  });

  up.stats.connectedClients++;
  up.stats.totalConnections++;
  // reported through fromSocket; counted here; never crash the process
  socket.on('error', () => {
    rs.errors[FrontError.connection]++;
  });
  socket.once('close', () => {
    output.gone = true;
    up.stats.connectedClients--;
    session.unsubscribe();
  });
  // a client that read what was waiting: held requests may go
  socket.on('drain', () => {
    if (admitHolding) output.mark();
  });

  /** every request read is answered: end the socket once the last reply is written */
  const finish = (): void => {
    finished = true;
    if (socket.destroyed) return;
    socket.end();
    // after a protocol error or QUIT the proxy closes, as Redis: a client that keeps its side
    // open would otherwise keep the session (and its place under maxclients)
    if (closeHard) socket.once('finish', () => socket.destroy());
  };

  /** stop reading; close once every request read so far is answered (`now`: drop the ones not dispatched yet) */
  const stop$ = new Subject<void>();
  let stopped = false;
  const end = (now = false): void => {
    if (now) {
      admission.unsubscribe();
      inputDone = true;
      output.mark();
    } else if (!stopped) {
      stopped = true;
      stop$.next();
    }
  };

  // before AUTH a client may send only small requests (Redis's pre-auth limits); the decoder
  // reads this object for every header, so AUTH lifts them from the next request on, and a
  // reload's new limits apply to every client from its next request
  const limits: RequestLimits = {
    get maxBulkBytes(): number {
      return client.authed ? up.limits.maxBulkBytes : Math.min(PRE_AUTH_MAX_BULK, up.limits.maxBulkBytes);
    },
    get maxArgs(): number {
      return client.authed ? up.limits.maxArgs : Math.min(PRE_AUTH_MAX_ARGS, up.limits.maxArgs);
    },
    get maxHeaderBytes(): number {
      return up.limits.maxHeaderBytes;
    },
    get maxQueryBytes(): number | undefined {
      return up.limits.maxQueryBytes;
    },
    get preAuth(): boolean {
      return !client.authed;
    },
  };

  /** the dispatch stage: one admitted request to where its plan says */
  const run = (req: Request): void => {
    inFlight.add(req.at, req);
    const s = seq++;
    up.stats.totalCommands++;
    let frame: Buffer | null;
    try {
      frame = route(req, s);
    } catch (err) {
      // a fault in handling one request answers that request with an error; the session
      // and every other client go on
      up.stats.internalErrors++;
      up.logger.error({ client: id, err }, 'internal error while handling a request');
      frame = errorFrame('ERR aster-proxy internal error while handling this command');
    }
    if (frame !== null) target.deliver(s, frame);
    if (client.quit) {
      closeHard = true;
      end(true);
    }
  };

  const protocolError = (err: ProtocolError): void => {
    up.stats.protocolErrors++;
    up.logger.debug({ client: id, err: err.message }, 'client protocol error');
    inFlight.add(chunkAt, undefined);
    const s = seq++;
    closeHard = true;
    target.deliver(s, errorFrame('ERR ' + err.message));
  };

  // the request side: socket chunks -> decode (a batch per chunk) -> plan (lanes, flow control) -> dispatch
  const progress$ = new Subject<Progress>();
  let admitHolding = false;
  // (a graceful end stops the reading here: what was read is still answered)
  const chunks$ = fromSocket(socket).pipe(takeUntil(stop$));
  const admission = chunks$
    .pipe(
      // (each request is stamped with its chunk's arrival, which is also the client's last activity)
      decodeRequests(limits, () => (chunkAt = immediateScheduler.now())),
      admitRequests(progress$, {
        laneOf,
        get maxPendingRequests(): number {
          return up.limits.maxPendingRequests;
        },
        get maxPendingBytes(): number {
          return up.limits.maxPendingBytes;
        },
      }),
    )
    .subscribe({
      next: ({ items, holding }) => {
        for (let i = 0; i < items.length && !inputDone; i++) {
          const item = items[i];
          if (item instanceof ProtocolError) protocolError(item);
          else run(item);
        }
        if (holding !== admitHolding) {
          // past a bound or waiting for a lane: not read until the requests held can go; the
          // next flush reports how far the client got (the counts it has may be a turn old)
          admitHolding = holding;
          if (holding) {
            socket.pause();
            output.mark();
          } else if (!inputDone) socket.resume();
        }
      },
      error: () => {
        if (!socket.destroyed) socket.destroy();
      },
      // the client half-closed (or broke the protocol, or the proxy is draining): answer what it
      // sent, then close; but as Redis frees a client at EOF, its blocked commands end now
      // (their connections close, so nothing is popped for it)
      complete: () => {
        if (!stopped) for (const cancel of [...blockedOn]) cancel();
        inputDone = true;
        output.mark();
      },
    });
  session.add(admission);
  session.add(() => {
    parts.tx?.close();
    parts.pubsub?.close();
    for (const cancel of [...blockedOn]) cancel();
    if (!socket.destroyed) socket.destroy();
  });
  const connectedAt = immediateScheduler.now();
  return {
    subscription: session,
    end: () => end(),
    idleMs: (now) => (output.answered < seq || admitHolding ? -1 : now - (chunkAt === 0 ? connectedAt : chunkAt)),
    outputBytes: () => output.bytes,
    blocked: () => blockedOn.size > 0,
  };
}
