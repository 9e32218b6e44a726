/**
 * Per-request counters of one cluster, kept as plain numbers and typed arrays so that the
 * request path pays a few increments and no label lookup. The metrics sink and INFO read them
 * (at scrape or INFO time) and turn them into labelled series.
 */
import { allCommands, type CommandSpec } from '../commands/index.js';
import { isErrorReply } from '../protocol/reply-decoder.js';
import type { Request } from '../protocol/request-decoder.js';
import { Histogram } from './histogram.js';

// ---------------------------------------------------------------------------------------------
// Commands: one index per top-level command of the table, then `other`

const topLevel = allCommands();

/** label values of the command index: the table's top-level names, then `other` */
export const COMMAND_NAMES: readonly string[] = [...topLevel.map((s) => s.name), 'other'];
/** the index of requests whose command is not in the table */
export const OTHER_COMMAND = topLevel.length;
/** the index of a slot that is no command (the error answering a protocol error) */
export const NO_COMMAND = -1;

/** The index of a command (a subcommand counts as its container). */
export function commandIndex(spec: CommandSpec | undefined): number {
  return spec === undefined ? OTHER_COMMAND : spec.index;
}

/** aster's `kind` of a command index: read, write, other, or invalid (not in the table) */
export function commandKind(index: number): 'read' | 'write' | 'other' | 'invalid' {
  if (index < 0 || index >= topLevel.length) return 'invalid';
  const spec = topLevel[index];
  return spec.readOnly ? 'read' : spec.write ? 'write' : 'other';
}

// ---------------------------------------------------------------------------------------------
// Errors the proxy answers or meets on the client side, by kind

export const FRONT_ERROR_KINDS = [
  'protocol', // a client protocol error (that connection closes)
  'internal', // a fault while handling a request
  'connection', // a client socket error (reset...)
  'unknown_command', // not in the command table (or an unknown subcommand)
  'wrong_arity', // wrong number of arguments
  'noauth', // a command before AUTH
  'auth_failed', // a wrong password (AUTH, HELLO AUTH)
  'unsupported', // commands the proxy cannot route (keyless ones)
  'crossslot', // keys on several servers
  'ejected', // the key's server is out of service (health checks)
  'denied', // a command of the deny_commands policy
  'maxclients', // a connection over maxclients
  'output_limit', // a subscriber disconnected at the pub/sub output-buffer limit
] as const;
export type FrontErrorKind = (typeof FRONT_ERROR_KINDS)[number];
export const FrontError: Readonly<Record<FrontErrorKind, number>> = Object.fromEntries(FRONT_ERROR_KINDS.map((k, i) => [k, i])) as Record<FrontErrorKind, number>;

// ---------------------------------------------------------------------------------------------
// Backends

/** what became of a request sent to a backend */
export const BACKEND_RESULTS = ['ok', 'resp_error', 'timeout', 'closed', 'unavailable'] as const;
export type BackendResult = (typeof BACKEND_RESULTS)[number];
export const BackendResultIndex: Readonly<Record<BackendResult, number>> = Object.fromEntries(BACKEND_RESULTS.map((k, i) => [k, i])) as Record<BackendResult, number>;

/** why a backend connection was closed */
export const BACKEND_ERROR_KINDS = ['connect', 'timeout', 'closed', 'protocol', 'auth'] as const;
export type BackendErrorCause = (typeof BACKEND_ERROR_KINDS)[number];

/** The counters of one backend (by label) of one cluster; shared by its RESP2 and RESP3 connections. */
export class BackendStats {
  readonly results = new Float64Array(BACKEND_RESULTS.length);
  readonly errors = new Float64Array(BACKEND_ERROR_KINDS.length);

  constructor(
    readonly label: string,
    /** the cluster's backend-time histogram */
    readonly remote: Histogram,
  ) {}

  /** a reply arrived `ms` after the request was sent */
  reply(ms: number, frame: Buffer): void {
    this.remote.observe(ms * 1000);
    this.results[isErrorReply(frame) ? 1 : 0]++;
  }

  /** `n` requests ended without a reply */
  failed(result: BackendResult, n = 1): void {
    this.results[BackendResultIndex[result]] += n;
  }

  /** the connection was closed for `cause` */
  error(cause: BackendErrorCause): void {
    this.errors[BACKEND_ERROR_KINDS.indexOf(cause)]++;
  }
}

// ---------------------------------------------------------------------------------------------
// One cluster

export class RequestStats {
  /** arrival of a request to its reply leaving the proxy, µs: a new histogram, the sum of `byCommand` (for scrapes; record with `timed`) */
  total(): Histogram {
    const h = new Histogram();
    for (const c of this.byCommand) if (c !== undefined) h.add(c);
    return h;
  }
  /** a request's time at the backend, from send to reply, µs */
  readonly remote = new Histogram();
  /** replies by command and result: `[index * 2]` ok, `[index * 2 + 1]` error */
  readonly commands = new Float64Array(COMMAND_NAMES.length * 2);
  /** arrival to reply by command index, µs; made for a command when it is first answered (one observation per reply) */
  readonly byCommand: Array<Histogram | undefined> = new Array<Histogram | undefined>(COMMAND_NAMES.length).fill(undefined);
  readonly errors = new Float64Array(FRONT_ERROR_KINDS.length);
  readonly backends = new Map<string, BackendStats>();

  /** the counters of a backend, created on first use (kept across reloads: counters only grow) */
  backend(label: string): BackendStats {
    let b = this.backends.get(label);
    if (b === undefined) {
      b = new BackendStats(label, this.remote);
      this.backends.set(label, b);
    }
    return b;
  }

  /** a request of command `index` (not NO_COMMAND) was answered `us` after it arrived */
  timed(index: number, us: number): void {
    (this.byCommand[index] ??= new Histogram()).observe(us);
  }

  /** a reply to a request of command `index` left the proxy */
  replied(index: number, frame: Buffer): void {
    if (index >= 0) this.commands[index * 2 + (isErrorReply(frame) ? 1 : 0)]++;
  }

  /** replies that were not errors, and replies that were */
  get succeeded(): number {
    let n = 0;
    for (let i = 0; i < this.commands.length; i += 2) n += this.commands[i];
    return n;
  }

  get failed(): number {
    let n = 0;
    for (let i = 1; i < this.commands.length; i += 2) n += this.commands[i];
    return n;
  }
}

// ---------------------------------------------------------------------------------------------
// The requests of one client between arrival and reply

/**
 * What a session remembers about each request from its arrival until its reply is written:
 * the arrival time, the command index and the request (for SLOWLOG). A ring indexed by the
 * request's sequence number, growing when a client pipelines deeper than it holds.
 */
export class InFlight {
  // plain arrays: a typed array's backing store costs more to make than a session's
  // first requests save with it
  private at: number[];
  private cmd: number[];
  private req: Array<Request | undefined>;
  private mask: number;
  /** the oldest sequence number still held */
  private head = 0;
  /** the next sequence number */
  private tail = 0;

  constructor(capacity = 16) {
    let cap = 16;
    while (cap < capacity) cap *= 2;
    this.at = new Array<number>(cap).fill(0);
    this.cmd = new Array<number>(cap).fill(NO_COMMAND);
    this.req = new Array<Request | undefined>(cap).fill(undefined);
    this.mask = cap - 1;
  }

  /** Remembers the next request (its sequence number is the count of requests added before). */
  add(arrivedAt: number, req: Request | undefined): void {
    if (this.tail - this.head > this.mask) this.grow();
    const i = this.tail & this.mask;
    this.at[i] = arrivedAt;
    this.cmd[i] = NO_COMMAND;
    this.req[i] = req;
    this.tail++;
  }

  setCommand(seq: number, index: number): void {
    this.cmd[seq & this.mask] = index;
  }

  command(seq: number): number {
    return this.cmd[seq & this.mask];
  }

  arrivedAt(seq: number): number {
    return this.at[seq & this.mask];
  }

  request(seq: number): Request | undefined {
    return this.req[seq & this.mask];
  }

  /** Forgets every request before `seq` (their replies are written). */
  release(seq: number): void {
    for (; this.head < seq; this.head++) this.req[this.head & this.mask] = undefined;
  }

  private grow(): void {
    const cap = (this.mask + 1) * 2;
    const at = new Array<number>(cap).fill(0);
    const cmd = new Array<number>(cap).fill(NO_COMMAND);
    const req = new Array<Request | undefined>(cap).fill(undefined);
    for (let s = this.head; s < this.tail; s++) {
      at[s & (cap - 1)] = this.at[s & this.mask];
      cmd[s & (cap - 1)] = this.cmd[s & this.mask];
      req[s & (cap - 1)] = this.req[s & this.mask];
    }
    this.at = at;
    this.cmd = cmd;
    this.req = req;
    this.mask = cap - 1;
  }
}

/** true for commands Redis never puts in its slow log (EXEC: its commands are logged one by one) */
export function skipsSlowlog(index: number): boolean {
  return index >= 0 && index < topLevel.length && topLevel[index].flags.has('skip_slowlog');
}
