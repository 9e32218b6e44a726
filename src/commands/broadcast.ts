/**
 * Keyless commands about the whole dataset, answered over every node that holds data (the
 * backends in standalone mode, the masters in cluster mode):
 *
 * - FLUSHALL, FLUSHDB, SCRIPT FLUSH, FUNCTION DELETE/FLUSH, CONFIG SET/RESETSTAT: sent to every
 *   node; `+OK` only when every node said OK, else the first error (never a false OK).
 * - SCRIPT KILL, FUNCTION KILL: sent to every node; `+OK` when one of them killed something,
 *   else the first error (`-NOTBUSY` when no node runs a script).
 * - SCRIPT LOAD, FUNCTION LOAD: sent to every node, so that EVALSHA and FCALL work wherever
 *   the keys live; the answer (the SHA1, the library name) when every node gave the same.
 * - SCRIPT EXISTS: 1 for a script only when every node has it.
 * - CONFIG GET, FUNCTION LIST: one node answers (they were set on all of them).
 * - DBSIZE: the sum. KEYS: every node's keys. RANDOMKEY: a key of a random node that has one.
 * - SCAN: one node at a time; the cursor the client sees carries the node's index in its low
 *   bits and the node's own cursor above them, so a scan walks every node in turn.
 *
 * The `admin` ones change or reveal every server's state and need `admin_commands = true`.
 */
import type { ReplyTarget } from '../sources/backend.js';
import { encodeCommand } from '../protocol/request-decoder.js';
import { arrayElements, bulkValue, integerValue, isErrorReply } from '../protocol/reply-decoder.js';
import { errorFrame } from '../protocol/encode.js';

export type BroadcastKind = 'all-ok' | 'one-ok' | 'all-same' | 'all-and' | 'one' | 'sum' | 'min' | 'max' | 'concat' | 'union' | 'pairsum' | 'scan' | 'random';

export interface BroadcastSpec {
  kind: BroadcastKind;
  /** needs `admin_commands = true` */
  admin: boolean;
  /**
   * sent over a connection of its own to each node, not the shared one: a busy Redis does not
   * read the connection whose script it runs, which is a shared one when a client of this
   * proxy started the script
   */
  ownConnection: boolean;
}

const spec = (kind: BroadcastKind, admin: boolean, ownConnection = false): BroadcastSpec => ({ kind, admin, ownConnection });

/** by command-table name (`name` or `name|subcommand`) */
export const broadcastCommands: ReadonlyMap<string, BroadcastSpec> = new Map<string, BroadcastSpec>([
  ['flushall', spec('all-ok', true)],
  ['flushdb', spec('all-ok', true)],
  ['script|flush', spec('all-ok', true)],
  ['function|delete', spec('all-ok', true)],
  ['function|flush', spec('all-ok', true)],
  ['function|load', spec('all-same', true)],
  ['config|set', spec('all-ok', true)],
  ['config|resetstat', spec('all-ok', true)],
  ['config|get', spec('one', true)],
  // a runaway script or function blocks its node (-BUSY to everyone): the kill goes to every
  // node, and succeeds when one of them had something to kill
  ['script|kill', spec('one-ok', false, true)],
  ['function|kill', spec('one-ok', false, true)],
  ['script|load', spec('all-same', false)],
  ['script|exists', spec('all-and', false)],
  ['function|list', spec('one', false)],
  ['dbsize', spec('sum', false)],
  ['keys', spec('concat', false)],
  ['scan', spec('scan', false)],
  ['randomkey', spec('random', false)],
]);

/** bits of a client's SCAN cursor that name the node (up to 1024 nodes) */
const NODE_BITS = 10n;
const MAX_NODES = 1 << Number(NODE_BITS);

export interface BroadcastPlan {
  /** requests to send: `deliver(i, ...)` on `target` with the reply of `sends[i]` */
  sends: Array<{ node: number; raw: Buffer }>;
  target: ReplyTarget;
}

/**
 * Plans a broadcast command over `nodes` nodes; `done` gets the merged reply. An error frame
 * instead of a plan when the command cannot run (a bad SCAN cursor, no node).
 */
export function planBroadcast(kind: BroadcastKind, args: readonly Buffer[], nodes: number, done: (frame: Buffer) => void): BroadcastPlan | Buffer {
  if (nodes === 0) return errorFrame('CLUSTERDOWN no node to send this command to yet');
  if (nodes > MAX_NODES) return errorFrame(`ERR aster-proxy broadcasts to at most ${MAX_NODES} nodes`);
  const raw = encodeCommand(args);
  switch (kind) {
    case 'one':
      return { sends: [{ node: 0, raw }], target: { deliver: (_i, frame) => done(frame) } };
    case 'scan':
      return planScan(args, nodes, done);
    default: {
      const sends = Array.from({ length: nodes }, (_, node) => ({ node, raw }));
      return { sends, target: new Gather(nodes, (frames) => done(MERGE[kind](frames))) };
    }
  }
}

/** A target that takes one reply from each of `n` nodes (`deliver(i, ...)`) and gives `done` their merge by `kind`. */
export function gatherReplies(kind: Exclude<BroadcastKind, 'one' | 'scan'>, n: number, done: (frame: Buffer) => void): ReplyTarget {
  return new Gather(n, (frames) => done(MERGE[kind](frames)));
}

/** Collects one reply per node, then merges them. */
class Gather implements ReplyTarget {
  private readonly frames: Buffer[];
  private left: number;

  constructor(
    n: number,
    private readonly merge: (frames: Buffer[]) => void,
  ) {
    this.frames = new Array<Buffer>(n);
    this.left = n;
  }

  deliver(i: number, frame: Buffer): void {
    this.frames[i] = frame;
    if (--this.left === 0) this.merge(this.frames);
  }
}

const OK = Buffer.from('+OK\r\n', 'latin1');
const EMPTY_ARRAY = Buffer.from('*0\r\n', 'latin1');
const NIL = Buffer.from('$-1\r\n', 'latin1');
const firstError = (frames: Buffer[]): Buffer | undefined => frames.find(isErrorReply);
const arrayOf = (elems: Buffer[]): Buffer => Buffer.concat([Buffer.from(`*${elems.length}\r\n`, 'latin1'), ...elems]);
const isNull = (f: Buffer): boolean => f.equals(NIL) || (f.length === 3 && f[0] === 0x5f /* _ */);

const MERGE: Record<Exclude<BroadcastKind, 'one' | 'scan'>, (frames: Buffer[]) => Buffer> = {
  'all-ok': (frames) => firstError(frames) ?? (frames.every((f) => f.equals(OK)) ? OK : errorFrame('ERR unexpected reply from a backend')),
  // Redis's one_succeeded: OK when a node said OK, else the first answer (NOTBUSY: nothing to kill anywhere)
  'one-ok': (frames) => (frames.some((f) => f.equals(OK)) ? OK : (firstError(frames) ?? frames[0])),
  'all-same': (frames) => firstError(frames) ?? (frames.every((f) => f.equals(frames[0])) ? frames[0] : errorFrame('ERR the nodes gave different answers')),
  'all-and': (frames) => {
    const err = firstError(frames);
    if (err !== undefined) return err;
    const lists = frames.map(arrayElements);
    if (lists.some((l) => l === null || l.length !== lists[0]?.length)) return errorFrame('ERR unexpected reply from a backend');
    const first = lists[0] as Buffer[];
    return arrayOf(first.map((_, j) => Buffer.from(lists.every((l) => integerValue((l as Buffer[])[j]) === 1) ? ':1\r\n' : ':0\r\n', 'latin1')));
  },
  max: (frames) => {
    const err = firstError(frames);
    if (err !== undefined) return err;
    const values = frames.map(integerValue);
    if (values.some((v) => v === null)) return errorFrame('ERR unexpected reply from a backend');
    return Buffer.from(`:${Math.max(...(values as number[]))}\r\n`, 'latin1');
  },
  /** every node's elements, each once */
  union: (frames) => {
    const err = firstError(frames);
    if (err !== undefined) return err;
    const seen = new Map<string, Buffer>();
    for (const f of frames) {
      const elems = arrayElements(f);
      if (elems === null) return errorFrame('ERR unexpected reply from a backend');
      for (const e of elems) seen.set(e.toString('latin1'), e);
    }
    return seen.size === 0 ? EMPTY_ARRAY : arrayOf([...seen.values()]);
  },
  /** [name, count, name, count...] from each node: the counts summed per name, in the first node's order */
  pairsum: (frames) => {
    const err = firstError(frames);
    if (err !== undefined) return err;
    const lists = frames.map(arrayElements);
    const first = lists[0];
    if (first === null || first === undefined || lists.some((l) => l === null || l.length !== first.length)) return errorFrame('ERR unexpected reply from a backend');
    const out: Buffer[] = [];
    for (let j = 0; j < first.length; j += 2) {
      let sum = 0;
      for (const l of lists) sum += integerValue((l as Buffer[])[j + 1]) ?? 0;
      out.push(first[j], Buffer.from(`:${sum}\r\n`, 'latin1'));
    }
    return arrayOf(out);
  },
  min: (frames) => {
    const err = firstError(frames);
    if (err !== undefined) return err;
    const values = frames.map(integerValue);
    if (values.some((v) => v === null)) return errorFrame('ERR unexpected reply from a backend');
    return Buffer.from(`:${Math.min(...(values as number[]))}\r\n`, 'latin1');
  },
  sum: (frames) => {
    const err = firstError(frames);
    if (err !== undefined) return err;
    let sum = 0;
    for (const f of frames) {
      const v = integerValue(f);
      if (v === null) return errorFrame('ERR unexpected reply from a backend');
      sum += v;
    }
    return Buffer.from(`:${sum}\r\n`, 'latin1');
  },
  concat: (frames) => {
    const err = firstError(frames);
    if (err !== undefined) return err;
    const all: Buffer[] = [];
    for (const f of frames) {
      const elems = arrayElements(f);
      if (elems === null) return errorFrame('ERR unexpected reply from a backend');
      all.push(...elems);
    }
    return all.length === 0 ? EMPTY_ARRAY : arrayOf(all);
  },
  random: (frames) => {
    const keys = frames.filter((f) => !isErrorReply(f) && !isNull(f));
    if (keys.length > 0) return keys[Math.floor(Math.random() * keys.length)];
    return firstError(frames) ?? frames[0];
  },
};

/** SCAN cursor [MATCH p] [COUNT n] [TYPE t]: the client's cursor names the node and that node's cursor */
function planScan(args: readonly Buffer[], nodes: number, done: (frame: Buffer) => void): BroadcastPlan | Buffer {
  const text = args[1].toString('latin1');
  if (!/^\d{1,30}$/.test(text)) return errorFrame('ERR invalid cursor');
  const cursor = BigInt(text);
  const node = Number(cursor & ((1n << NODE_BITS) - 1n));
  const nodeCursor = cursor >> NODE_BITS;
  if (node >= nodes || nodeCursor >= 1n << 64n) return errorFrame('ERR invalid cursor');
  const sub = [...args];
  sub[1] = Buffer.from(nodeCursor.toString(), 'latin1');
  const target: ReplyTarget = {
    deliver: (_i, frame) => {
      const parts = isErrorReply(frame) ? null : arrayElements(frame);
      const next = parts?.length === 2 ? bulkValue(parts[0]) : null;
      if (parts === null || next === null || !/^\d{1,20}$/.test(next.toString('latin1'))) {
        done(isErrorReply(frame) ? frame : errorFrame('ERR unexpected reply to SCAN from a backend'));
        return;
      }
      const c = BigInt(next.toString('latin1'));
      // this node is done: the next one from its start, or the end of the whole scan
      const out = c !== 0n ? (c << NODE_BITS) | BigInt(node) : node + 1 < nodes ? BigInt(node + 1) : 0n;
      const s = out.toString();
      done(Buffer.concat([Buffer.from(`*2\r\n$${s.length}\r\n${s}\r\n`, 'latin1'), parts[1]]));
    },
  };
  return { sends: [{ node, raw: encodeCommand(sub) }], target };
}
