/**
 * Multi-key commands whose keys live on several backends: split into one sub-request per
 * backend, then merge the answers into the one reply the client expects.
 *
 * - MGET: the values in the client's key order; a key whose backend failed gets that error
 *   in its own position, the other keys are still answered.
 * - MSET: `+OK` only when every part succeeded; otherwise the first error (never a false OK).
 * - DEL, UNLINK, EXISTS, TOUCH: the sum; if any part failed, the error (a failed part is not 0).
 */
import type { ReplyTarget } from '../sources/backend.js';
import { encodeCommand } from '../protocol/request-decoder.js';
import { arrayElements, integerValue, isErrorReply } from '../protocol/reply-decoder.js';
import { errorFrame } from '../protocol/encode.js';

export type SplitKind = 'mget' | 'mset' | 'sum';

/** commands split across backends, by lower-case name */
export const splitCommands: ReadonlyMap<string, SplitKind> = new Map<string, SplitKind>([
  ['mget', 'mget'],
  ['mset', 'mset'],
  ['del', 'sum'],
  ['unlink', 'sum'],
  ['exists', 'sum'],
  ['touch', 'sum'],
]);

export interface SubRequest {
  backend: number;
  raw: Buffer;
}

export interface SplitPlan {
  subs: SubRequest[];
  /** merges the sub-replies; call `deliver(i, frame)` with the reply of `subs[i]` */
  target: ReplyTarget;
}

/**
 * Plans the split of `args` (the command name in args[0]) with `keyIdx` the positions of
 * the keys and `backendOf` the backend of each key. `done` receives the merged reply.
 * Returns null when every key is on one backend (the request can go through unchanged).
 */
export function planSplit(
  kind: SplitKind,
  args: readonly Buffer[],
  keyIdx: readonly number[],
  backendOf: (key: Buffer) => number,
  done: (frame: Buffer) => void,
): SplitPlan | null {
  // MSET k v k v...: an odd count is left to the backend's own arity error (on one backend)
  if (kind === 'mset' && (args.length - 1) % 2 !== 0) return null;
  const groups = new Map<number, number[]>(); // backend -> positions (in keyIdx) of its keys
  for (let k = 0; k < keyIdx.length; k++) {
    const b = backendOf(args[keyIdx[k]]);
    const g = groups.get(b);
    if (g === undefined) groups.set(b, [k]);
    else g.push(k);
  }
  if (groups.size <= 1) return null;
  const subs: SubRequest[] = [];
  const positions: number[][] = [];
  for (const [backend, ks] of groups) {
    const sub: Buffer[] = [args[0]];
    for (const k of ks) {
      sub.push(args[keyIdx[k]]);
      if (kind === 'mset') sub.push(args[keyIdx[k] + 1]);
    }
    subs.push({ backend, raw: encodeCommand(sub) });
    positions.push(ks);
  }
  const merge = kind === 'mget' ? new MgetMerge(keyIdx.length, positions, done) : new FoldMerge(kind, subs.length, done);
  return { subs, target: merge };
}

class MgetMerge implements ReplyTarget {
  private values: Buffer[];
  private left: number;

  constructor(
    keys: number,
    private readonly positions: number[][],
    private readonly done: (frame: Buffer) => void,
  ) {
    this.values = new Array<Buffer>(keys);
    this.left = positions.length;
  }

  deliver(i: number, frame: Buffer): void {
    const ks = this.positions[i];
    const elems = isErrorReply(frame) ? null : arrayElements(frame);
    const bad = elems === null || elems.length !== ks.length ? (isErrorReply(frame) ? frame : errorFrame('ERR unexpected reply to MGET from a backend')) : null;
    for (let j = 0; j < ks.length; j++) this.values[ks[j]] = bad ?? (elems as Buffer[])[j];
    if (--this.left === 0) {
      const head = Buffer.from('*' + this.values.length + '\r\n', 'latin1');
      this.done(Buffer.concat([head, ...this.values]));
    }
  }
}

class FoldMerge implements ReplyTarget {
  private sum = 0;
  private firstError: Buffer | null = null;

  constructor(
    private readonly kind: 'mset' | 'sum',
    private left: number,
    private readonly done: (frame: Buffer) => void,
  ) {}

  deliver(_i: number, frame: Buffer): void {
    if (this.firstError === null) {
      if (isErrorReply(frame)) {
        this.firstError = frame;
      } else if (this.kind === 'sum') {
        const v = integerValue(frame);
        if (v === null) this.firstError = errorFrame('ERR unexpected reply from a backend');
        else this.sum += v;
      } else if (!(frame.length === 5 && frame.toString('latin1') === '+OK\r\n')) {
        this.firstError = errorFrame('ERR unexpected reply to MSET from a backend');
      }
    }
    if (--this.left === 0) {
      this.done(this.firstError ?? Buffer.from(this.kind === 'sum' ? ':' + this.sum + '\r\n' : '+OK\r\n', 'latin1'));
    }
  }
}
