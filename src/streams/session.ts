import type net from 'node:net';
import { Subject, Subscription, takeUntil, tap } from 'rxjs';
import type { Logger } from 'pino';
import { decodeRequests, type RequestBatch } from '../operators/decode-requests.js';
import { admitRequests, Lane, REPLAN, type Progress } from '../operators/admit-requests.js';
import { ReorderBuffer } from '../util/reorder.js';
import { turnFlush, type Flushable } from '../sinks/turn-flush.js';
import { encodeCommand, PRE_AUTH_MAX_ARGS, PRE_AUTH_MAX_BULK, ProtocolError, type Request, type RequestLimits } from '../protocol/request-decoder.js';
import { errorFrame, type Proto } from '../protocol/encode.js';
import { fromSocket } from '../sources/socket.js';
import { immediateScheduler } from '../sources/scheduler.js';
import type { ReplyTarget } from '../sources/backend.js';
import { arityOk, commandError, isBlocking, isPubSub, isReadOnly, keyIndexes, lookupCommand, type CommandSpec } from '../commands/index.js';
import { allowedBeforeAuth, answerInfo, answerLocal, infoWantsKeyspace, isLocal, KeyspaceSum, type ClientState, type ProxyFacts, type ProxyUser } from '../commands/local.js';
import { planSplit, splitCommands } from '../commands/multikey.js';
import { broadcastCommands, gatherReplies, planBroadcast } from '../commands/broadcast.js';
import type { BlockingOwner } from '../sources/blocking-pool.js';
import { commandIndex, FrontError, InFlight, NO_COMMAND, skipsSlowlog, type RequestStats } from '../util/request-stats.js';
import type { Slowlog } from './slowlog.js';
import type { AuthFailures } from './auth-failures.js';
import type { LimitsConfig } from '../config/types.js';
import { Transaction, type TxUpstream } from './transaction.js';
import { isSubscribeCommand, PubSub, type PubSubUpstream } from './pubsub.js';

/** What a client session needs from the cluster it connected to. */
export interface Upstream extends TxUpstream, PubSubUpstream {
  facts: ProxyFacts;
  limits: LimitsConfig;
  logger: Logger;
  /**
   * Where a key goes: the backend's index (standalone) or the key's slot (cluster). Keys with
   * the same answer may share a request; `send` takes it.
   */
  backendFor(key: Buffer): number;
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
  /** a blocking command (WAIT) to node `i` (0 .. nodeCount()-1) over a connection of its own */
  sendBlockingToNode(i: number, proto: Proto, raw: Buffer, target: ReplyTarget, seq: number, owner: BlockingOwner): void;
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
}

export function runSession(socket: net.Socket, up: Upstream, id: number): Session {
  const ip = socket.remoteAddress ?? '?';
  const addr = `${ip}:${socket.remotePort ?? 0}`;
  let authFailed = 0; // wrong passwords on this connection
  let closeHard = false; // close the socket after the last reply (protocol error, QUIT), not only our half
  const client: ClientState = { id, name: null, proto: 2, libName: null, libVer: null, quit: false, authed: up.facts.password === undefined && up.facts.users.size === 0, addr };
  const session = new Subscription();
  let seq = 0; // requests dispatched (numbered in the order the client sent them)
  let gone = false; // the socket is closed: replies are dropped
  let inputDone = false; // no request after `seq - 1` will be dispatched
  let finished = false; // the socket was ended after the last reply
  // per request from arrival to reply: arrival time (one clock read per socket chunk, not per
  // request), command, and the request itself for SLOWLOG
  const rs = up.stats.requests;
  const inFlight = new InFlight();
  let chunkAt = 0;

  // --- the reply side: reorder buffer -> this turn's output -> one write per turn ----------
  let out: Buffer[] = [];
  let outBytes = 0;
  let releasedBytes = 0; // reply bytes released so far (the flow control's reply-size estimate)
  let written = 0; // replies written to the socket (their times are recorded)
  let marked = false;
  const order = new ReorderBuffer((frame) => {
    const s = order.next - 1;
    rs.replied(inFlight.command(s), frame);
    out.push(frame);
    outBytes += frame.length;
    releasedBytes += frame.length;
    // pub/sub messages held while the confirmation they may belong to had not left go right after it
    if (held.length > 0 && order.next > pushGate) releaseHeld();
  });
  const target: ReplyTarget = {
    deliver(s, frame) {
      if (gone) return;
      const before = order.next;
      order.put(s, frame);
      if (order.next !== before) mark();
    },
  };
  const mark = (): void => {
    if (!marked) {
      marked = true;
      turnFlush.mark(writer);
    }
  };
  const tx = new Transaction(up, () => client.proto, target);
  const pubsub = new PubSub(up, () => client.proto, target, (frame) => push(frame));
  /** this client's blocking commands in flight: cancelled (their connections closed) when it leaves */
  const blockedOn: BlockingOwner = new Set();

  up.stats.connectedClients++;
  up.stats.totalConnections++;
  // reported through fromSocket; counted here; never crash the process
  socket.on('error', () => {
    rs.errors[FrontError.connection]++;
  });
  socket.once('close', () => {
    gone = true;
    up.stats.connectedClients--;
    session.unsubscribe();
  });

  // pub/sub messages: out of band, after the replies in order. A message is held while the
  // confirmation of the subscription it may belong to has not left yet.
  let pushGate = -1; // the last subscribe-family request: messages wait until its reply is out
  let held: Buffer[] = [];
  let heldBytes = 0;
  let softSince = 0;
  const releaseHeld = (): void => {
    for (const f of held) {
      out.push(f);
      outBytes += f.length;
    }
    held = [];
    heldBytes = 0;
  };
  const push = (frame: Buffer): void => {
    if (gone) return;
    // the pub/sub output-buffer limit (Redis: 32 MB hard, 8 MB for 60 s soft): a subscriber that
    // does not read is disconnected, and what it was sent is released
    const lim = up.limits;
    const buffered = socket.writableLength + outBytes + heldBytes + frame.length;
    if (buffered > lim.pubsubOutputHardBytes || (buffered > lim.pubsubOutputSoftBytes && softSince > 0 && immediateScheduler.now() - softSince > lim.pubsubOutputSoftSeconds * 1000)) {
      rs.errors[FrontError.output_limit]++;
      up.logger.warn({ client: id, addr: client.addr, buffered }, 'subscriber over the pub/sub output-buffer limit: disconnected');
      held = [];
      heldBytes = 0;
      gone = true; // (its 'close' comes later: the messages until then are dropped, not counted again)
      socket.destroy();
      return;
    }
    if (buffered > lim.pubsubOutputSoftBytes) {
      if (softSince === 0) softSince = immediateScheduler.now();
    } else softSince = 0;
    if (order.next <= pushGate) {
      held.push(frame);
      heldBytes += frame.length;
    } else {
      out.push(frame);
      outBytes += frame.length;
      mark();
    }
  };

  /** this turn's output in one write; then flow control hears how far the client got */
  const writer: Flushable = {
    flushTurn() {
      marked = false;
      if (gone) return;
      if (out.length > 0) {
        const buf = out.length === 1 ? out[0] : Buffer.concat(out, outBytes);
        out = [];
        outBytes = 0;
        socket.write(buf);
        if (written < order.next) recordTimes();
        if (up.limits.outputHardBytes > 0 || up.limits.outputSoftBytes > 0) checkOutput(immediateScheduler.now());
        if (gone) return;
      }
      if (admitHolding) progress$.next({ answered: order.next, bytes: releasedBytes, unread: socket.writableLength + order.heldBytes });
      if (inputDone && order.next === seq && !finished) finish();
    },
  };
  // a client that read what was waiting: held requests may go
  socket.on('drain', () => {
    if (admitHolding) mark();
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
  const end = (now = false): void => {
    if (now) {
      admission.unsubscribe();
      inputDone = true;
      mark();
    } else stop$.next();
  };

  /** the replies up to `order.next` go out in this write: one clock read for all of them */
  function recordTimes(): void {
    const now = immediateScheduler.now();
    const slowUs = up.slowlog.thresholdUs;
    const upTo = order.next;
    for (let s = written; s < upTo; s++) {
      const cmd = inFlight.command(s);
      if (cmd === NO_COMMAND) continue;
      const us = (now - inFlight.arrivedAt(s)) * 1000;
      rs.total.observe(us);
      if (slowUs >= 0 && us >= slowUs) logSlow(s, cmd, us);
    }
    inFlight.release(upTo);
    written = upTo;
  }

  /**
   * The normal clients' output-buffer limit (off by default, as in Redis): a client whose unread
   * replies pass `output_hard_bytes`, or `output_soft_bytes` for `output_soft_seconds`, is
   * disconnected. (Subscribers have their own limit, in `push`.)
   */
  let outSoftSince = 0;
  const checkOutput = (now: number): void => {
    if (pubsub.active) return;
    const lim = up.limits;
    const buffered = socket.writableLength;
    const soft = lim.outputSoftBytes > 0 && buffered > lim.outputSoftBytes;
    if ((lim.outputHardBytes > 0 && buffered > lim.outputHardBytes) || (soft && outSoftSince > 0 && now - outSoftSince > lim.outputSoftSeconds * 1000)) {
      rs.errors[FrontError.output_limit]++;
      up.logger.warn({ client: id, addr: client.addr, buffered }, 'client over the output-buffer limit: disconnected');
      gone = true;
      socket.destroy();
      return;
    }
    outSoftSince = soft ? outSoftSince || now : 0;
  };

  const logSlow = (s: number, cmd: number, us: number): void => {
    const req = inFlight.request(s);
    if (req !== undefined && !skipsSlowlog(cmd)) up.slowlog.record(us, req.args, client.addr, client.name ?? '', Math.floor(Date.now() / 1000));
  };

  // before AUTH a client may send only small requests (Redis's pre-auth limits); the decoder
  // reads this object for every header, so AUTH lifts them from the next request on
  const limits: RequestLimits = client.authed
    ? up.limits
    : { ...up.limits, maxArgs: Math.min(PRE_AUTH_MAX_ARGS, up.limits.maxArgs), maxBulkBytes: Math.min(PRE_AUTH_MAX_BULK, up.limits.maxBulkBytes), preAuth: true };

  // --- the request side: decode -> plan (lanes, flow control) -> dispatch ------------------

  /**
   * The lane of a request (see `admitRequests`): the shared connections of the client's RESP
   * version, its transaction's connection, its subscriber connections, or one of its own
   * (blocking commands, WAIT); answered by the proxy: any. Looks the command up once, for
   * routing too.
   */
  const laneOf = (item: Request | ProtocolError): number => {
    if (item instanceof ProtocolError) return Lane.any;
    const spec = lookupCommand(item.args);
    item.spec = spec;
    if (spec === undefined) return Lane.any;
    const name = spec.parent === undefined ? spec.name : spec.parent.name;
    if (name === 'quit') return Lane.any;
    if (tx.wants(spec)) return Lane.transaction | REPLAN;
    if (isLocal(name)) return name === 'hello' || name === 'reset' ? Lane.any | REPLAN : Lane.any;
    if (spec.pubsub && isSubscribeCommand(name)) return Lane.subscriber | REPLAN;
    if (isBlocking(spec, item.args)) return Lane.exclusive;
    return client.proto === 3 ? Lane.shared3 : Lane.shared2;
  };

  /** runs one admitted request */
  const run = (req: Request, at: number): void => {
    const spec = req.spec as CommandSpec | undefined;
    inFlight.add(at, req);
    const s = seq++;
    up.stats.totalCommands++;
    let frame: Buffer | null;
    try {
      frame = route(req, s, spec);
    } catch (err) {
      // a fault in handling one request answers that request with an error; the session
      // and every other client go on
      up.stats.internalErrors++;
      up.logger.error({ client: id, err }, 'internal error while handling a request');
      frame = errorFrame('ERR aster-proxy internal error while handling this command');
    }
    if (limits.preAuth === true && client.authed) Object.assign(limits, up.limits, { preAuth: false });
    if (frame !== null) target.deliver(s, frame);
    if (client.quit) {
      closeHard = true;
      end(true);
    }
  };

  const protocolError = (err: ProtocolError, at: number): void => {
    up.stats.protocolErrors++;
    up.logger.debug({ client: id, err: err.message }, 'client protocol error');
    inFlight.add(at, undefined);
    const s = seq++;
    closeHard = true;
    target.deliver(s, errorFrame('ERR ' + err.message));
  };

  const noAuth = (): Buffer => {
    rs.errors[FrontError.noauth]++;
    return NOAUTH;
  };

  const route = (req: Request, s: number, spec: CommandSpec | undefined): Buffer | null => {
    const args = req.args;
    inFlight.setCommand(s, commandIndex(spec));
    if (spec === undefined || !arityOk(spec, args.length)) {
      // CLIENT subcommands newer than the command table (SETINFO came with Redis 7.2)
      if (spec === undefined && args.length >= 2 && CLIENT.equals(lowerAscii(args[0]))) {
        return client.authed ? answerLocal('client', args, client, up.facts) : noAuth();
      }
      rs.errors[spec === undefined ? FrontError.unknown_command : FrontError.wrong_arity]++;
      tx.refused();
      return errorFrame(commandError(args) ?? 'ERR unknown command');
    }
    const name = topName(spec);
    if (!client.authed && !allowedBeforeAuth(name)) return noAuth();
    if (up.denied.size > 0 && (up.denied.has(name) || (spec.parent !== undefined && up.denied.has(spec.name)))) {
      rs.errors[FrontError.denied]++;
      tx.refused();
      return errorFrame(`ERR command '${spec.name}' is denied by this proxy's policy (deny_commands)`);
    }
    const user = client.user;
    if (user !== undefined && !userMay(user, spec, name)) {
      rs.errors[FrontError.denied]++;
      tx.refused();
      return errorFrame(`NOPERM User ${user.name} has no permissions to run the '${spec.name}' command`);
    }
    if (name === 'reset') return reset();
    if (client.proto === 2 && pubsub.active && !SUBSCRIBED_MODE.has(name)) {
      return errorFrame(`ERR Can't execute '${spec.name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context`);
    }
    if (name === 'ping' && client.proto === 2 && pubsub.active) return subscribedPong(args);
    if (name === 'hello' && pubsub.active && args.length > 1 && args[1].toString('latin1') !== String(client.proto)) {
      return errorFrame('ERR aster-proxy cannot change the protocol of a client with subscriptions');
    }
    if (name !== 'quit' && tx.wants(spec)) return tx.handle(spec, name, args, req.raw, s);
    if (isLocal(name)) {
      const nodes = up.nodeCount();
      if (name === 'info' && infoWantsKeyspace(args) && nodes > 0) {
        // the Keyspace section sums the backends' keyspaces: the reply comes when they answered
        const proto = client.proto;
        const sum = new KeyspaceSum(nodes, (totals) => target.deliver(s, answerInfo(args, proto, up.facts, totals)));
        for (let b = 0; b < nodes; b++) up.sendToNode(b, 2, INFO_KEYSPACE, sum, b);
        return null;
      }
      const wasAuthed = client.authed;
      const answer = answerLocal(name, args, client, up.facts);
      if ((name === 'auth' || name === 'hello') && answer.subarray(0, 10).toString('latin1') === '-WRONGPASS') return wrongPassword(answer, s);
      if (client.authed && !wasAuthed) up.authFailures.succeeded(ip);
      return answer;
    }
    if (isPubSub(spec)) return routePubSub(spec, name, args, req.raw, s);
    if (isBlocking(spec, args)) return routeBlocking(spec, name, args, req.raw, s);
    const bc = broadcastCommands.get(spec.name);
    if (bc !== undefined) {
      if (bc.admin && !up.adminCommands) {
        rs.errors[FrontError.denied]++;
        return errorFrame(`ERR command '${spec.name}' runs on every server and needs admin_commands = true in this proxy's config`);
      }
      const plan = planBroadcast(bc.kind, args, up.nodeCount(), (frame) => target.deliver(s, frame));
      if (Buffer.isBuffer(plan)) return plan;
      for (let i = 0; i < plan.sends.length; i++) up.sendToNode(plan.sends[i].node, client.proto, plan.sends[i].raw, plan.target, i);
      return null;
    }
    const keys = keyIndexes(spec, args);
    if (keys.length === 0) {
      // a script or function that declares no key runs on one fixed node (the empty key's)
      if (SCRIPTS.has(name)) {
        up.send(up.backendFor(NO_KEY), client.proto, req.raw, target, s, isReadOnly(spec));
        return null;
      }
      rs.errors[FrontError.unsupported]++;
      return errorFrame(`ERR command '${spec.name}' has no key to route by and is not supported by aster-proxy in this mode`);
    }
    const kind = splitCommands.get(name);
    if (kind === 'mset' && args.length % 2 === 0) {
      rs.errors[FrontError.wrong_arity]++;
      return errorFrame("ERR wrong number of arguments for 'mset' command");
    }
    if (kind !== undefined && keys.length > 1) {
      const plan = planSplit(kind, args, keys, up.backendFor, (frame) => target.deliver(s, frame));
      if (plan !== null) {
        const readOnly = isReadOnly(spec);
        for (let i = 0; i < plan.subs.length; i++) up.send(plan.subs[i].backend, client.proto, plan.subs[i].raw, plan.target, i, readOnly);
        return null;
      }
    }
    const backend = up.backendFor(args[keys[0]]);
    for (let i = 1; i < keys.length; i++) {
      if (up.backendFor(args[keys[i]]) !== backend) {
        rs.errors[FrontError.crossslot]++;
        return crossSlot(spec);
      }
    }
    up.send(backend, client.proto, req.raw, target, s, isReadOnly(spec));
    return null;
  };

  /**
   * A wrong password: answered after a wait that grows with the failures from this address (a
   * guesser is slowed even over many connections); the 10th on one connection closes it.
   */
  const wrongPassword = (answer: Buffer, s: number): Buffer | null => {
    rs.errors[FrontError.auth_failed]++;
    if (++authFailed >= MAX_AUTH_FAILURES) client.quit = true;
    const delay = up.authFailures.failed(ip, immediateScheduler.now());
    if (delay === 0) return answer;
    session.add(immediateScheduler.schedule(() => target.deliver(s, answer), delay));
    return null;
  };

  /** the subscribe family on the client's subscriber connections; PUBLISH by channel; PUBSUB over every node */
  const routePubSub = (spec: CommandSpec, name: string, args: readonly Buffer[], raw: Buffer, s: number): Buffer | null => {
    if (isSubscribeCommand(name)) {
      pushGate = s;
      return pubsub.handle(name, args, s);
    }
    if (name === 'publish' || name === 'spublish') {
      up.send(up.backendFor(args[1]), client.proto, raw, target, s, false);
      return null;
    }
    // PUBSUB CHANNELS / NUMSUB / NUMPAT / SHARDCHANNELS / SHARDNUMSUB: every node's, merged
    const kind = PUBSUB_MERGE[spec.name];
    if (kind === undefined) return errorFrame(`ERR command '${spec.name}' is not supported by aster-proxy`);
    const nodes = up.nodeCount();
    if (nodes === 0) return errorFrame('CLUSTERDOWN no node to ask yet');
    const merged = gatherReplies(kind === 'numpat' ? (up.facts.mode === 'cluster' ? 'sum' : 'max') : kind, nodes, (frame) => target.deliver(s, frame));
    for (let i = 0; i < nodes; i++) up.sendToNode(i, client.proto, raw, merged, i);
    return null;
  };

  /**
   * RESET, as Redis: the transaction and watches, the subscriptions, the name, the protocol
   * (RESP2) and the authentication (back to the default user's) are dropped; `+RESET`.
   */
  const reset = (): Buffer => {
    tx.reset();
    pubsub.reset();
    for (const cancel of [...blockedOn]) cancel();
    client.name = null;
    client.proto = 2;
    client.user = undefined;
    client.authed = up.facts.password === undefined && up.facts.users.size === 0;
    return RESET;
  };

  /** keys of one request on several servers (slots in cluster mode) */
  const crossSlot = (spec: CommandSpec): Buffer =>
    up.facts.mode === 'cluster' ? CROSSSLOT_CLUSTER : errorFrame(`CROSSSLOT Keys in request for '${spec.name}' don't hash to the same server (use a hash tag to keep them together)`);

  /** BLPOP & co over a connection of their own (WAIT: every node's, the least count) */
  const routeBlocking = (spec: CommandSpec, name: string, args: readonly Buffer[], raw: Buffer, s: number): Buffer | null => {
    if (name === 'wait') {
      const nodes = up.nodeCount();
      if (nodes === 0) return errorFrame('CLUSTERDOWN no node to send WAIT to yet');
      const least = gatherReplies('min', nodes, (frame) => target.deliver(s, frame));
      for (let i = 0; i < nodes; i++) up.sendBlockingToNode(i, client.proto, raw, least, i, blockedOn);
      return null;
    }
    const keys = keyIndexes(spec, args);
    if (keys.length === 0) return errorFrame(`ERR command '${spec.name}' has no key to route by`);
    const backend = up.backendFor(args[keys[0]]);
    for (let i = 1; i < keys.length; i++) {
      if (up.backendFor(args[keys[i]]) !== backend) {
        rs.errors[FrontError.crossslot]++;
        return crossSlot(spec);
      }
    }
    up.sendBlocking(backend, client.proto, raw, target, s, blockedOn);
    return null;
  };

  const progress$ = new Subject<Progress>();
  let admitHolding = false;
  // (a graceful end stops the reading here: what was read is still answered)
  const chunks$ = fromSocket(socket).pipe(takeUntil(stop$));
  const admission = chunks$
    .pipe(
      tap(() => {
        chunkAt = immediateScheduler.now();
      }),
      decodeRequests(limits),
      tap(stamp),
      admitRequests(progress$, { laneOf, maxPendingRequests: up.limits.maxPendingRequests, maxPendingBytes: up.limits.maxPendingBytes }),
    )
    .subscribe({
      next: ({ items, holding }) => {
        for (let i = 0; i < items.length && !inputDone; i++) {
          const item = items[i];
          if (item instanceof ProtocolError) protocolError(item, chunkAt);
          else run(item, item.at);
        }
        if (holding !== admitHolding) {
          // past a bound or waiting for a lane: not read until the requests held can go; the
          // next flush reports how far the client got (the counts it has may be a turn old)
          admitHolding = holding;
          if (holding) {
            socket.pause();
            mark();
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
        mark();
      },
    });
  let stopped = false;
  session.add(
    stop$.subscribe(() => {
      stopped = true;
    }),
  );
  session.add(admission);
  session.add(() => {
    tx.close();
    pubsub.close();
    for (const cancel of [...blockedOn]) cancel();
    if (!socket.destroyed) socket.destroy();
  });
  const connectedAt = immediateScheduler.now();
  const idleMs = (now: number): number => (order.next < seq || admitHolding ? -1 : now - (chunkAt === 0 ? connectedAt : chunkAt));
  return { subscription: session, end: () => end(), idleMs };

  /** each request of a chunk arrived when the chunk did */
  function stamp(batch: RequestBatch): void {
    for (let i = 0; i < batch.length; i++) {
      const item = batch[i];
      if (!(item instanceof ProtocolError)) item.at = chunkAt;
    }
  }
}

const NOAUTH = errorFrame('NOAUTH Authentication required.');
const RESET = Buffer.from('+RESET\r\n', 'latin1');
/**
 * What a named user may run: not its denied commands; and a read-only user only commands that
 * read (the command table's readonly flag), the proxy's own connection commands, transactions
 * and pub/sub.
 */
function userMay(user: ProxyUser, spec: CommandSpec, name: string): boolean {
  if (user.denied.size > 0 && (user.denied.has(name) || (spec.parent !== undefined && user.denied.has(spec.name)))) return false;
  return !user.readOnly || spec.readOnly || spec.transaction || spec.pubsub || isLocal(name);
}

/** wrong passwords on one connection before it is closed */
const MAX_AUTH_FAILURES = 10;
/** what a RESP2 client with subscriptions may send (Redis's rule) */
const SUBSCRIBED_MODE = new Set(['subscribe', 'psubscribe', 'ssubscribe', 'unsubscribe', 'punsubscribe', 'sunsubscribe', 'ping', 'quit', 'reset']);
/** PING of a RESP2 client in subscribed mode: `*2 pong <arg or "">`, as Redis */
const subscribedPong = (args: readonly Buffer[]): Buffer => {
  const arg = args.length > 1 ? args[1] : Buffer.alloc(0);
  return Buffer.concat([Buffer.from(`*2\r\n$4\r\npong\r\n$${arg.length}\r\n`, 'latin1'), arg, Buffer.from('\r\n', 'latin1')]);
};
/** how PUBSUB's subcommands merge over the nodes (NUMPAT: summed in cluster mode, where a pattern lives on one node; the largest in standalone, where it is on every server) */
const PUBSUB_MERGE: Record<string, 'union' | 'pairsum' | 'numpat'> = {
  'pubsub|channels': 'union',
  'pubsub|shardchannels': 'union',
  'pubsub|numsub': 'pairsum',
  'pubsub|shardnumsub': 'pairsum',
  'pubsub|numpat': 'numpat',
};
const SCRIPTS = new Set(['eval', 'evalsha', 'eval_ro', 'evalsha_ro', 'fcall', 'fcall_ro']);
const NO_KEY = Buffer.alloc(0);
const CROSSSLOT_CLUSTER = errorFrame("CROSSSLOT Keys in request don't hash to the same slot");
const INFO_KEYSPACE = encodeCommand(['INFO', 'keyspace']);
const CLIENT = Buffer.from('client');
const lowerAscii = (b: Buffer): Buffer => (b.length === 6 ? Buffer.from(b.toString('latin1').toLowerCase(), 'latin1') : b);

function topName(spec: CommandSpec): string {
  const bar = spec.name.indexOf('|');
  return bar < 0 ? spec.name : spec.name.slice(0, bar);
}
