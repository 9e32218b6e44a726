import type { Subscription, SchedulerLike } from 'rxjs';
import { Lane, REPLAN } from '../operators/admit-requests.js';
import { encodeCommand, ProtocolError, type Request } from '../protocol/request-decoder.js';
import { errorFrame } from '../protocol/encode.js';
import type { ReplyTarget } from '../sources/backend.js';
import { WAIT_MARK, type BlockingOwner } from '../sources/blocking-pool.js';
import { allCommands, arityOk, commandError, isBlocking, isPubSub, isReadOnly, keyIndexes, lookupRequest, type CommandSpec } from '../commands/index.js';
import { allowedBeforeAuth, answerInfo, answerLocal, infoWantsKeyspace, isLocal, KeyspaceSum, type ClientState, type ProxyUser } from '../commands/local.js';
import { planSplit, splitCommands } from '../commands/multikey.js';
import { broadcastCommands, gatherReplies, planBroadcast } from '../commands/broadcast.js';
import { commandIndex, FrontError, type InFlight } from '../util/request-stats.js';
import type { Transaction } from './transaction.js';
import { isSubscribeCommand, type PubSub } from './pubsub.js';
import type { Upstream } from './session.js';

/** What the plan and dispatch stages of one client need. */
export interface DispatchContext {
  up: Upstream;
  client: ClientState;
  /** the client's address, without the port (failed AUTHs are counted by it); read when needed */
  ip(): string;
  /** where this client's replies go (its reorder buffer) */
  target: ReplyTarget;
  /** the client's transaction and pub/sub machinery, once built (most clients never need them) */
  parts: SessionParts;
  /** builds them on first use */
  tx(): Transaction;
  pubsub(): PubSub;
  /** the client's blocking commands in flight */
  blockedOn: BlockingOwner;
  inFlight: InFlight;
  /** timers that end with the session (a wrong password's delayed answer) */
  timers: Subscription;
  scheduler: SchedulerLike;
}

/** What a session builds only when a request needs it. */
export interface SessionParts {
  tx: Transaction | null;
  pubsub: PubSub | null;
}

export interface Dispatch {
  /** the plan stage: the lane of a request (see `admitRequests`); looks its command up once, for `route` too */
  laneOf(item: Request | ProtocolError): number;
  /** the dispatch stage: sends request `s` where its plan says; returns the proxy's own answer, or null when a backend answers */
  route(req: Request, s: number): Buffer | null;
}

/**
 * The plan table and dispatch of one client's requests: by command and arguments, each request
 * is answered by the proxy (local, denied, refused, errors), sent to the shared connection of
 * its key's server (single-key), split per server (MGET, MSET, DEL...), sent to every node
 * (broadcast), or handed to the client's blocking, pub/sub or transaction machinery. The lanes
 * `laneOf` gives keep the order of execution across those connections.
 */
export function createDispatch(ctx: DispatchContext): Dispatch {
  const { up, client, target, parts, blockedOn, inFlight } = ctx;
  const rs = up.stats.requests;
  /** the request goes to the transaction (MULTI, WATCH... or anything while in MULTI) */
  const txWants = (spec: CommandSpec): boolean => spec.transaction || (parts.tx !== null && parts.tx.wants(spec));
  /** a refused request makes EXEC abort, as in Redis */
  const refused = (): void => parts.tx?.refused();
  const subscribed = (): boolean => parts.pubsub !== null && parts.pubsub.active;
  let authFailed = 0; // wrong passwords on this connection

  /**
   * The lane of a request (see `admitRequests`): the shared connections of the client's RESP
   * version, its transaction's connection, its subscriber connections, or one of its own
   * (blocking commands, WAIT); answered by the proxy: any. Looks the command up once, for
   * routing too.
   */
  const laneOf = (item: Request | ProtocolError): number => {
    if (item instanceof ProtocolError) return Lane.any;
    const spec = lookupRequest(item);
    item.spec = spec;
    if (spec === undefined) return Lane.any;
    if (spec.parent === undefined && PLAIN_KEY[spec.index] > 0 && !txWants(spec)) return client.proto === 3 ? Lane.shared3 : Lane.shared2;
    const name = spec.parent === undefined ? spec.name : spec.parent.name;
    if (name === 'quit') return Lane.any;
    if (txWants(spec)) return Lane.transaction | REPLAN;
    if (isLocal(name)) return name === 'hello' || name === 'reset' ? Lane.any | REPLAN : Lane.any;
    if (spec.pubsub && isSubscribeCommand(name)) return Lane.subscriber | REPLAN;
    if (isBlocking(spec, item.args)) return Lane.exclusive;
    return client.proto === 3 ? Lane.shared3 : Lane.shared2;
  };

  const noAuth = (): Buffer => {
    rs.errors[FrontError.noauth]++;
    return NOAUTH;
  };

  const route = (req: Request, s: number): Buffer | null => {
    const spec = req.spec as CommandSpec | undefined;
    inFlight.setCommand(s, commandIndex(spec));
    if (spec !== undefined && spec.parent === undefined) {
      // the common case in one test: a plain command of one key, from a client with nothing
      // special going on; the key is hashed in place
      const k = PLAIN_KEY[spec.index];
      const argc = req.argc;
      if (k > 0 && k < argc && arityOk(spec, argc) && client.authed && client.user === undefined && !up.denied.has(spec.name) && !txWants(spec) && !subscribed()) {
        up.send(up.backendFor(req.raw, req.argStart(k), req.argEnd(k)), client.proto, req.raw, target, s, spec.readOnly);
        return null;
      }
    }
    const args = req.args;
    if (spec === undefined || !arityOk(spec, args.length)) {
      // CLIENT subcommands newer than the command table (SETINFO came with Redis 7.2)
      if (spec === undefined && args.length >= 2 && CLIENT.equals(lowerAscii(args[0]))) {
        return client.authed ? answerLocal('client', args, client, up.facts) : noAuth();
      }
      rs.errors[spec === undefined ? FrontError.unknown_command : FrontError.wrong_arity]++;
      refused();
      return errorFrame(commandError(args) ?? 'ERR unknown command');
    }
    const name = topName(spec);
    if (!client.authed && !allowedBeforeAuth(name)) return noAuth();
    if (up.denied.size > 0 && (up.denied.has(name) || (spec.parent !== undefined && up.denied.has(spec.name)))) {
      rs.errors[FrontError.denied]++;
      refused();
      return errorFrame(`ERR command '${spec.name}' is denied by this proxy's policy (deny_commands)`);
    }
    const user = client.user;
    if (user !== undefined && !userMay(user, spec, name)) {
      rs.errors[FrontError.denied]++;
      refused();
      return errorFrame(`NOPERM User ${user.name} has no permissions to run the '${spec.name}' command`);
    }
    if (name === 'reset') return reset();
    if (client.proto === 2 && subscribed() && !SUBSCRIBED_MODE.has(name)) {
      return errorFrame(`ERR Can't execute '${spec.name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context`);
    }
    if (name === 'ping' && client.proto === 2 && subscribed()) return subscribedPong(args);
    if (name === 'hello' && subscribed() && args.length > 1 && args[1].toString('latin1') !== String(client.proto)) {
      return errorFrame('ERR aster-proxy cannot change the protocol of a client with subscriptions');
    }
    if (name !== 'quit' && txWants(spec)) return ctx.tx().handle(spec, name, args, req.raw, s);
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
      if (client.authed && !wasAuthed) up.authFailures.succeeded(ctx.ip());
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
      for (let i = 0; i < plan.sends.length; i++) {
        if (bc.ownConnection) up.sendBlockingToNode(plan.sends[i].node, client.proto, plan.sends[i].raw, plan.target, i, blockedOn);
        else up.sendToNode(plan.sends[i].node, client.proto, plan.sends[i].raw, plan.target, i);
      }
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
    const delay = up.authFailures.failed(ctx.ip(), ctx.scheduler.now());
    if (delay === 0) return answer;
    ctx.timers.add(ctx.scheduler.schedule(() => target.deliver(s, answer), delay));
    return null;
  };

  /** the subscribe family on the client's subscriber connections; PUBLISH by channel; PUBSUB over every node */
  const routePubSub = (spec: CommandSpec, name: string, args: readonly Buffer[], raw: Buffer, s: number): Buffer | null => {
    if (isSubscribeCommand(name)) {
      return ctx.pubsub().handle(name, args, s);
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
    parts.tx?.reset();
    parts.pubsub?.reset();
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
      for (let i = 0; i < nodes; i++) up.sendBlockingToNode(i, client.proto, raw, least, i, blockedOn, WAIT_MARK);
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

  return { laneOf, route };
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
/**
 * The plan of the top-level commands that route the plainest way (by their command index):
 * the index of their one key when they have one key at a fixed place and no other rule applies
 * (not local, pub/sub, blocking, a transaction's, broadcast, split or a script); else 0. What
 * `route` does for them after its checks is what its last lines do for any single-key command.
 */
const PLAIN_KEY = Int32Array.from(allCommands(), (spec) =>
  spec.singleKey > 0 && !isLocal(spec.name) && !spec.pubsub && !spec.transaction && !isBlocking(spec, []) && !broadcastCommands.has(spec.name) && !splitCommands.has(spec.name) && !SCRIPTS.has(spec.name)
    ? spec.singleKey
    : 0,
);
const NO_KEY = Buffer.alloc(0);
const CROSSSLOT_CLUSTER = errorFrame("CROSSSLOT Keys in request don't hash to the same slot");
const INFO_KEYSPACE = encodeCommand(['INFO', 'keyspace']);
const CLIENT = Buffer.from('client');
const lowerAscii = (b: Buffer): Buffer => (b.length === 6 ? Buffer.from(b.toString('latin1').toLowerCase(), 'latin1') : b);

function topName(spec: CommandSpec): string {
  const bar = spec.name.indexOf('|');
  return bar < 0 ? spec.name : spec.name.slice(0, bar);
}
