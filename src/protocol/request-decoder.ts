/**
 * Incremental RESP request decoder.
 *
 * Bytes arrive in socket chunks that may cut a request anywhere. The decoder is a state
 * machine: header lines (`*N`, `$N`) are read byte by byte into an integer, bulk payloads are
 * skipped by length, and the state survives between chunks, so nothing is scanned twice.
 * A request that fits in one chunk becomes a zero-copy view of it; one that spans chunks is
 * joined once, when its last byte arrives. Arguments are views into the request's bytes.
 *
 * Limits are checked on the announced lengths before any byte of the payload is kept.
 * Inline commands (`GET k\r\n`, as typed in telnet) are split like Redis does and re-encoded
 * as RESP, so backends always see RESP.
 */

/**
 * One request: its bytes as the backend should receive them, and where each argument lies in
 * them. The arguments as Buffers (views into `raw`) are made when first asked for: the common
 * path reads the command name and the key in place and never makes them.
 */
export class Request {
  /** set by the session's plan stage (the command table's entry), so routing looks it up once; the decoder leaves it undefined */
  spec: unknown = undefined;
  /** when the chunk that completed it arrived (ms, the session's clock); the decoder leaves it 0 */
  at = 0;
  private views: Buffer[] | null = null;

  constructor(
    /** the request as the backend should receive it (the client's own bytes for RESP input) */
    readonly raw: Buffer,
    /** the number of arguments */
    readonly argc: number,
    /** `[start, end]` in `raw` of each argument, in order */
    private readonly bounds: number[],
  ) {}

  /** argv, views into `raw` (made on first use) */
  get args(): Buffer[] {
    if (this.views !== null) return this.views;
    const views = new Array<Buffer>(this.argc);
    for (let i = 0; i < this.argc; i++) views[i] = this.raw.subarray(this.bounds[2 * i], this.bounds[2 * i + 1]);
    return (this.views = views);
  }

  /** where argument `i` starts in `raw` */
  argStart(i: number): number {
    return this.bounds[2 * i];
  }

  /** where argument `i` ends in `raw` (exclusive) */
  argEnd(i: number): number {
    return this.bounds[2 * i + 1];
  }
}

export interface RequestLimits {
  maxBulkBytes: number;
  maxHeaderBytes: number;
  maxArgs: number;
  /** most bytes of one unfinished request held across chunks (Redis's client-query-buffer-limit: 1 GiB); unset: no limit */
  maxQueryBytes?: number;
  /** the client has not authenticated yet: errors say so, as Redis's do */
  preAuth?: boolean;
}

/** What a client may send before it authenticates (Redis, since CVE-2021-32675). */
export const PRE_AUTH_MAX_ARGS = 10;
export const PRE_AUTH_MAX_BULK = 16 * 1024;

export const defaultRequestLimits: RequestLimits = {
  maxBulkBytes: 512 * 1024 * 1024,
  maxHeaderBytes: 64 * 1024,
  maxArgs: 1024 * 1024,
};

/** A client broke the protocol: answer `-ERR Protocol error: <message>` and close. */
export class ProtocolError extends Error {
  constructor(detail: string) {
    super('Protocol error: ' + detail);
    this.name = 'ProtocolError';
  }
}

const enum S {
  Start, // before the first byte of a request
  MultiNum, // in the digits of `*N`
  MultiLf, // after `\r` of `*N\r`
  Dollar, // expecting `$`
  BulkNum, // in the digits of `$N`
  BulkLf, // after `\r` of `$N\r`
  BulkData, // in a bulk payload (and its trailing CRLF)
  Inline, // in an inline command line
}

const CR = 13;
const LF = 10;
const MAX_DIGITS = 15; // beyond 2^49: no limit of ours is that large

export class RequestDecoder {
  private state = S.Start;
  private num = 0;
  private digits = 0;
  private neg = false;
  private argc = 0;
  private argi = 0;
  private bulkLeft = 0;
  /** offsets (from the request's first byte) and lengths of the arguments read so far
   *  (indexed by argument number, reused from request to request) */
  private argOff: number[] = [];
  private argLen: number[] = [];
  /** earlier chunks' parts of the request in progress, and their total length */
  private parts: Buffer[] = [];
  private partsLen = 0;

  constructor(private readonly limits: RequestLimits = defaultRequestLimits) {}

  /** true when no request is half-read */
  get idle(): boolean {
    return this.state === S.Start && this.parts.length === 0;
  }

  /**
   * Feeds one chunk; calls `emit` for every request it completes, in order.
   * Throws ProtocolError at the first violation (requests before it were emitted).
   */
  push(chunk: Buffer, emit: (req: Request) => void): void {
    const n = chunk.length;
    let pos = 0;
    // where the current request starts in this chunk (0 if it began in an earlier chunk)
    let start = 0;
    while (pos < n) {
      switch (this.state) {
        case S.Start: {
          start = pos;
          if (chunk[pos] === 0x2a /* * */) {
            this.state = S.MultiNum;
            this.num = 0;
            this.digits = 0;
            this.neg = false;
            pos++;
          } else {
            this.state = S.Inline;
          }
          break;
        }
        case S.MultiNum:
        case S.BulkNum: {
          const c = chunk[pos++];
          if (c >= 0x30 && c <= 0x39) {
            if (++this.digits > MAX_DIGITS) this.badLength();
            this.num = this.num * 10 + (c - 0x30);
          } else if (c === 0x2d /* - */ && this.digits === 0 && !this.neg) {
            this.neg = true;
          } else if (c === CR && this.digits > 0) {
            this.state = this.state === S.MultiNum ? S.MultiLf : S.BulkLf;
          } else {
            this.badLength();
          }
          break;
        }
        case S.MultiLf: {
          if (chunk[pos++] !== LF) this.badLength();
          if (this.neg || this.num === 0) {
            // `*0` and `*-1` are empty requests: Redis skips them silently
            this.reset();
            break;
          }
          if (this.num > this.limits.maxArgs) {
            throw new ProtocolError(
              this.limits.preAuth ? 'unauthenticated multibulk length' : `invalid multibulk length (more than ${this.limits.maxArgs} arguments)`,
            );
          }
          this.argc = this.num;
          this.argi = 0;
          this.state = S.Dollar;
          break;
        }
        case S.Dollar: {
          const c = chunk[pos++];
          if (c !== 0x24 /* $ */) {
            throw new ProtocolError(`expected '$', got '${printable(c)}'`);
          }
          this.state = S.BulkNum;
          this.num = 0;
          this.digits = 0;
          this.neg = false;
          break;
        }
        case S.BulkLf: {
          if (chunk[pos++] !== LF) this.badLength();
          if (this.neg) throw new ProtocolError('invalid bulk length');
          if (this.num > this.limits.maxBulkBytes) {
            throw new ProtocolError(
              this.limits.preAuth ? 'unauthenticated bulk length' : `invalid bulk length (more than ${this.limits.maxBulkBytes} bytes)`,
            );
          }
          this.argOff[this.argi] = this.partsLen + pos - start;
          this.argLen[this.argi] = this.num;
          this.bulkLeft = this.num + 2;
          this.state = S.BulkData;
          break;
        }
        case S.BulkData: {
          const take = Math.min(this.bulkLeft, n - pos);
          pos += take;
          this.bulkLeft -= take;
          if (this.bulkLeft === 0) {
            if (++this.argi === this.argc) {
              emit(this.finishMulti(chunk, start, pos));
            } else {
              this.state = S.Dollar;
            }
          }
          break;
        }
        case S.Inline: {
          const lf = chunk.indexOf(LF, pos);
          const end = lf === -1 ? n : lf + 1;
          if (this.partsLen + end - start > this.limits.maxHeaderBytes) {
            throw new ProtocolError('too big inline request');
          }
          pos = end;
          if (lf !== -1) {
            const line = this.take(chunk, start, pos);
            const req = inlineRequest(line);
            this.reset();
            if (req) emit(req);
          }
          break;
        }
      }
    }
    if (this.state !== S.Start) {
      // keep the unfinished request's bytes of this chunk for when it completes
      const tail = chunk.subarray(start, n);
      if (tail.length > 0) {
        this.parts.push(tail);
        this.partsLen += tail.length;
        if (this.limits.maxQueryBytes !== undefined && this.partsLen > this.limits.maxQueryBytes) {
          throw new ProtocolError(`query buffer of ${this.partsLen} bytes over the limit of ${this.limits.maxQueryBytes} (max_query_bytes)`);
        }
      }
    }
  }

  private finishMulti(chunk: Buffer, start: number, end: number): Request {
    const raw = this.take(chunk, start, end);
    const argc = this.argc;
    const bounds = new Array<number>(2 * argc);
    for (let i = 0; i < argc; i++) {
      const off = this.argOff[i];
      bounds[2 * i] = off;
      bounds[2 * i + 1] = off + this.argLen[i];
    }
    this.reset();
    return new Request(raw, argc, bounds);
  }

  /** the whole request: a view when it lies in this chunk, else one join of its parts */
  private take(chunk: Buffer, start: number, end: number): Buffer {
    if (this.parts.length === 0) return chunk.subarray(start, end);
    this.parts.push(chunk.subarray(0, end));
    return Buffer.concat(this.parts, this.partsLen + end);
  }

  private reset(): void {
    this.state = S.Start;
    if (this.parts.length > 0) {
      this.parts = [];
      this.partsLen = 0;
    }
  }

  private badLength(): never {
    throw new ProtocolError(this.state === S.MultiNum || this.state === S.MultiLf ? 'invalid multibulk length' : 'invalid bulk length');
  }
}

function printable(c: number): string {
  return c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : '\\x' + c.toString(16).padStart(2, '0');
}

/** Splits an inline command line as Redis's sdssplitargs does; null for a blank line. */
export function inlineRequest(line: Buffer): Request | null {
  const args = splitInline(line);
  return args.length === 0 ? null : requestFromArgs(args);
}

/** Builds a request (raw RESP, and where its arguments lie in it) from argv. */
export function requestFromArgs(args: readonly Buffer[]): Request {
  const raw = encodeCommand(args);
  const bounds = new Array<number>(2 * args.length);
  let off = headerLen('*', args.length);
  for (let i = 0; i < args.length; i++) {
    off += headerLen('$', args[i].length);
    bounds[2 * i] = off;
    bounds[2 * i + 1] = off + args[i].length;
    off += args[i].length + 2;
  }
  return new Request(raw, args.length, bounds);
}

function headerLen(prefix: string, n: number): number {
  return prefix.length + String(n).length + 2;
}

/** `*N\r\n$len\r\narg\r\n...` */
export function encodeCommand(args: readonly (Buffer | string)[]): Buffer {
  let size = headerLen('*', args.length);
  const bufs = args.map((a) => (typeof a === 'string' ? Buffer.from(a, 'utf8') : a));
  for (const b of bufs) size += headerLen('$', b.length) + b.length + 2;
  const out = Buffer.allocUnsafe(size);
  let o = out.write('*' + args.length + '\r\n', 0, 'latin1');
  for (const b of bufs) {
    o += out.write('$' + b.length + '\r\n', o, 'latin1');
    o += b.copy(out, o);
    out[o++] = CR;
    out[o++] = LF;
  }
  return out;
}

const isSpace = (c: number): boolean => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d || c === 0x0b || c === 0x0c;
const hexVal = (c: number): number =>
  c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : c >= 0x41 && c <= 0x46 ? c - 0x37 : -1;

/** Redis's inline argument rules: blanks separate, "double" quotes with \-escapes, 'single' quotes. */
export function splitInline(line: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let i = 0;
  const n = line.length;
  for (;;) {
    while (i < n && isSpace(line[i])) i++;
    if (i >= n) return out;
    const cur: number[] = [];
    let inDq = false;
    let inSq = false;
    for (;;) {
      if (inDq) {
        if (i >= n) throw new ProtocolError('unbalanced quotes in request');
        const c = line[i];
        if (c === 0x5c /* \ */ && i + 3 < n && line[i + 1] === 0x78 /* x */ && hexVal(line[i + 2]) >= 0 && hexVal(line[i + 3]) >= 0) {
          cur.push(hexVal(line[i + 2]) * 16 + hexVal(line[i + 3]));
          i += 3;
        } else if (c === 0x5c && i + 1 < n) {
          i++;
          const e = line[i];
          cur.push(e === 0x6e ? 10 : e === 0x72 ? 13 : e === 0x74 ? 9 : e === 0x62 ? 8 : e === 0x61 ? 7 : e);
        } else if (c === 0x22 /* " */) {
          if (i + 1 < n && !isSpace(line[i + 1])) throw new ProtocolError('unbalanced quotes in request');
          i++;
          break;
        } else {
          cur.push(c);
        }
      } else if (inSq) {
        if (i >= n) throw new ProtocolError('unbalanced quotes in request');
        const c = line[i];
        if (c === 0x5c && i + 1 < n && line[i + 1] === 0x27) {
          i++;
          cur.push(0x27);
        } else if (c === 0x27 /* ' */) {
          if (i + 1 < n && !isSpace(line[i + 1])) throw new ProtocolError('unbalanced quotes in request');
          i++;
          break;
        } else {
          cur.push(c);
        }
      } else {
        if (i >= n) break;
        const c = line[i];
        if (isSpace(c)) break;
        if (c === 0x22) inDq = true;
        else if (c === 0x27) inSq = true;
        else cur.push(c);
      }
      i++;
    }
    out.push(Buffer.from(cur));
  }
}
