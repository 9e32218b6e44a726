/**
 * Incremental RESP2/RESP3 reply framer.
 *
 * It finds where each complete reply ends, without building values: the proxy forwards
 * reply bytes as they came. Nesting is tracked with an explicit stack of remaining element
 * counts (no recursion, so a deeply nested reply cannot overflow the JS stack) and capped at
 * `maxDepth`. Like the request decoder, state survives between chunks and a reply within one
 * chunk is a zero-copy view of it.
 */

export interface ReplyLimits {
  maxBulkBytes: number;
  maxDepth: number;
}

export const defaultReplyLimits: ReplyLimits = { maxBulkBytes: 512 * 1024 * 1024, maxDepth: 512 };

export class ReplyProtocolError extends Error {
  constructor(detail: string) {
    super('backend protocol error: ' + detail);
    this.name = 'ReplyProtocolError';
  }
}

const enum S {
  Type, // expecting a type byte
  Line, // in a simple line (+ - : _ , # ( ), up to LF
  Num, // in the digits of $N / *N / %N ...
  Lf, // after the CR of a length line
  BulkData, // in a bulk payload and its CRLF
}

const CR = 13;
const LF = 10;
const MAX_DIGITS = 15;

// what a length line introduces
const enum K {
  Bulk,
  Array, // * ~ >
  Map, // %  (2n elements)
  Attr, // |  (2n elements, then the value it annotates)
}

export class ReplyDecoder {
  private state = S.Type;
  private kind = K.Bulk;
  private num = 0;
  private digits = 0;
  private neg = false;
  private lineLen = 0;
  private bulkLeft = 0;
  /** remaining elements of each open aggregate; negative marks an attribute */
  private stack: number[] = [];
  private isPush = false;
  private parts: Buffer[] = [];
  private partsLen = 0;

  constructor(private readonly limits: ReplyLimits = defaultReplyLimits) {}

  get idle(): boolean {
    return this.state === S.Type && this.stack.length === 0 && this.parts.length === 0;
  }

  /** Feeds a chunk; `emit(frame, isPush)` for every complete top-level reply. Throws ReplyProtocolError. */
  push(chunk: Buffer, emit: (frame: Buffer, isPush: boolean) => void): void {
    const n = chunk.length;
    let pos = 0;
    let start = 0;
    let fresh = this.idle; // a new reply starts at `pos`
    while (pos < n) {
      if (fresh) {
        start = pos;
        fresh = false;
      }
      switch (this.state) {
        case S.Type: {
          const c = chunk[pos++];
          switch (c) {
            case 0x2b: // +
            case 0x2d: // -
            case 0x3a: // :
            case 0x5f: // _
            case 0x2c: // ,
            case 0x23: // #
            case 0x28: // (
              this.state = S.Line;
              this.lineLen = 0;
              break;
            case 0x24: // $
            case 0x21: // !
            case 0x3d: // =
              this.lengthLine(K.Bulk);
              break;
            case 0x3e: // >
              if (this.stack.length === 0) this.isPush = true;
              this.lengthLine(K.Array);
              break;
            case 0x2a: // *
            case 0x7e: // ~
              this.lengthLine(K.Array);
              break;
            case 0x25: // %
              this.lengthLine(K.Map);
              break;
            case 0x7c: // |
              this.lengthLine(K.Attr);
              break;
            default:
              throw new ReplyProtocolError(`unexpected reply type byte 0x${c.toString(16).padStart(2, '0')}`);
          }
          break;
        }
        case S.Line: {
          const lf = chunk.indexOf(LF, pos);
          const end = lf === -1 ? n : lf + 1;
          this.lineLen += end - pos;
          if (this.lineLen > this.limits.maxBulkBytes) throw new ReplyProtocolError('line too long');
          pos = end;
          if (lf !== -1 && this.valueDone()) {
            emit(this.take(chunk, start, pos), this.finish());
            fresh = true;
          }
          break;
        }
        case S.Num: {
          const c = chunk[pos++];
          if (c >= 0x30 && c <= 0x39) {
            if (++this.digits > MAX_DIGITS) throw new ReplyProtocolError('length too large');
            this.num = this.num * 10 + (c - 0x30);
          } else if (c === 0x2d && this.digits === 0 && !this.neg) {
            this.neg = true;
          } else if (c === CR && this.digits > 0) {
            this.state = S.Lf;
          } else {
            throw new ReplyProtocolError('bad length line');
          }
          break;
        }
        case S.Lf: {
          if (chunk[pos++] !== LF) throw new ReplyProtocolError('bad length line');
          let done: boolean;
          if (this.neg) {
            if (this.num !== 1) throw new ReplyProtocolError('negative length');
            done = this.valueDone(); // $-1 / *-1: null
          } else if (this.kind === K.Bulk) {
            if (this.num > this.limits.maxBulkBytes) throw new ReplyProtocolError('bulk too large');
            this.bulkLeft = this.num + 2;
            this.state = S.BulkData;
            break;
          } else {
            const count = this.kind === K.Array ? this.num : this.num * 2;
            if (count === 0 && this.kind !== K.Attr) {
              done = this.valueDone();
            } else {
              if (this.stack.length >= this.limits.maxDepth) {
                throw new ReplyProtocolError(`reply nested deeper than ${this.limits.maxDepth}`);
              }
              this.stack.push(this.kind === K.Attr ? -count - 1 : count);
              this.state = S.Type;
              if (this.kind === K.Attr && count === 0) done = this.attrEmpty();
              else break;
            }
          }
          if (done) {
            emit(this.take(chunk, start, pos), this.finish());
            fresh = true;
          }
          break;
        }
        case S.BulkData: {
          const take = Math.min(this.bulkLeft, n - pos);
          pos += take;
          this.bulkLeft -= take;
          if (this.bulkLeft === 0 && this.valueDone()) {
            emit(this.take(chunk, start, pos), this.finish());
            fresh = true;
          }
          break;
        }
      }
    }
    if (!fresh) {
      const tail = chunk.subarray(start, n);
      if (tail.length > 0) {
        this.parts.push(tail);
        this.partsLen += tail.length;
      }
    }
  }

  private lengthLine(kind: K): void {
    this.kind = kind;
    this.state = S.Num;
    this.num = 0;
    this.digits = 0;
    this.neg = false;
  }

  /** A value ended: pop finished aggregates. True when a whole top-level reply is complete. */
  private valueDone(): boolean {
    this.state = S.Type;
    const st = this.stack;
    while (st.length > 0) {
      const top = st.length - 1;
      if (st[top] < 0) {
        // inside an attribute: count its elements (stored as -remaining-1)
        st[top]++;
        if (st[top] === -1) {
          st.pop(); // attribute map done; the annotated value follows, not counted
          return false;
        }
        return false;
      }
      st[top]--;
      if (st[top] > 0) return false;
      st.pop();
    }
    return true;
  }

  /** `|0`: an empty attribute, the annotated value still follows */
  private attrEmpty(): boolean {
    this.stack.pop();
    return false;
  }

  private finish(): boolean {
    const push = this.isPush;
    this.isPush = false;
    return push;
  }

  private take(chunk: Buffer, start: number, end: number): Buffer {
    if (this.parts.length === 0) return chunk.subarray(start, end);
    this.parts.push(chunk.subarray(0, end));
    const out = Buffer.concat(this.parts, this.partsLen + end);
    this.parts = [];
    this.partsLen = 0;
    return out;
  }
}

/** Splits one complete reply into its top-level frames (e.g. the elements of an array). */
export function framesOf(buf: Buffer, limits: ReplyLimits = defaultReplyLimits): Buffer[] {
  const out: Buffer[] = [];
  new ReplyDecoder(limits).push(buf, (f) => out.push(f));
  return out;
}

/** The element frames of an array, set or push reply (`*N`, `~N`, `>N`), or null for any other. */
export function arrayElements(frame: Buffer): Buffer[] | null {
  if (frame[0] !== 0x2a /* * */ && frame[0] !== 0x7e /* ~ */ && frame[0] !== 0x3e /* > */) return null;
  const lf = frame.indexOf(LF);
  const count = parseInt(frame.toString('latin1', 1, lf - 1), 10);
  if (!(count >= 0)) return null;
  const elems = framesOf(frame.subarray(lf + 1));
  return elems.length === count ? elems : null;
}

/** The value of an integer reply (`:N`), or null. */
export function integerValue(frame: Buffer): number | null {
  if (frame[0] !== 0x3a /* : */) return null;
  const v = Number(frame.toString('latin1', 1, frame.length - 2));
  return Number.isInteger(v) ? v : null;
}

/** true for `-ERR ...` and RESP3 blob errors */
export function isErrorReply(frame: Buffer): boolean {
  return frame[0] === 0x2d || frame[0] === 0x21;
}

/** The payload of a bulk string reply (`$N`, or a RESP3 verbatim string without its `txt:` prefix), or null. */
export function bulkValue(frame: Buffer): Buffer | null {
  if (frame[0] !== 0x24 /* $ */ && frame[0] !== 0x3d /* = */) return null;
  const lf = frame.indexOf(LF);
  const len = parseInt(frame.toString('latin1', 1, lf - 1), 10);
  if (!(len >= 0) || lf + 1 + len + 2 !== frame.length) return null;
  const body = frame.subarray(lf + 1, lf + 1 + len);
  return frame[0] === 0x3d ? body.subarray(4) : body;
}
