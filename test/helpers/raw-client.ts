/** A raw-socket RESP client for the integration tests: exact bytes in, parsed replies out. */

import assert from 'node:assert/strict';
import net from 'node:net';


export class RespErr {
  constructor(readonly message: string) {}
}
export interface RespMap {
  map: Array<[Resp, Resp]>;
}
export type Resp = string | number | bigint | boolean | null | RespErr | RespMap | Resp[];

/** One complete value at `p`, and where it ends; null when incomplete. Throws on bad input. */
export function parseResp(b: Buffer, p: number): [Resp, number] | null {
  if (p >= b.length) return null;
  const nl = b.indexOf('\r\n', p, 'latin1');
  if (nl < 0) return null;
  const t = String.fromCharCode(b[p]);
  const line = b.toString('latin1', p + 1, nl);
  let q = nl + 2;
  switch (t) {
    case '+':
      return [line, q];
    case '-':
      return [new RespErr(line), q];
    case ':':
      return [Number(line), q];
    case '_':
      return [null, q];
    case '#':
      return [line === 't', q];
    case ',':
      return [Number(line), q];
    case '(':
      return [BigInt(line), q];
    case '$':
    case '=':
    case '!': {
      const n = Number(line);
      if (n < 0) return [null, q];
      if (b.length < q + n + 2) return null;
      let s = b.toString('latin1', q, q + n);
      if (t === '=') s = s.slice(4);
      return [t === '!' ? new RespErr(s) : s, q + n + 2];
    }
    case '*':
    case '~':
    case '>': {
      const n = Number(line);
      if (n < 0) return [null, q];
      const out: Resp[] = [];
      for (let i = 0; i < n; i++) {
        const r = parseResp(b, q);
        if (r === null) return null;
        out.push(r[0]);
        q = r[1];
      }
      return [out, q];
    }
    case '%': {
      const n = Number(line);
      const map: Array<[Resp, Resp]> = [];
      for (let i = 0; i < n; i++) {
        const k = parseResp(b, q);
        if (k === null) return null;
        const v = parseResp(b, k[1]);
        if (v === null) return null;
        map.push([k[0], v[0]]);
        q = v[1];
      }
      return [{ map }, q];
    }
    default:
      throw new Error(`bad RESP type byte ${JSON.stringify(t)} at ${p}: ${JSON.stringify(b.toString('latin1', p, p + 40))}`);
  }
}

export function encodeCmd(args: ReadonlyArray<string | Buffer | number>): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = Buffer.isBuffer(a) ? a : Buffer.from(String(a), 'latin1');
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A raw RESP connection: every reply is parsed and kept, with its raw bytes. */
export class Raw {
  readonly replies: Resp[] = [];
  readonly frames: Buffer[] = [];
  private buf: Buffer = Buffer.alloc(0);
  private sent = 0;
  private listeners = new Set<() => void>();
  closed = false;
  readonly closedP: Promise<void>;
  parseError: Error | null = null;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
      let p = 0;
      try {
        for (;;) {
          const r = parseResp(this.buf, p);
          if (r === null) break;
          this.replies.push(r[0]);
          this.frames.push(Buffer.from(this.buf.subarray(p, r[1])));
          p = r[1];
        }
      } catch (err) {
        this.parseError = err as Error;
      }
      this.buf = this.buf.subarray(p);
      this.poke();
    });
    socket.on('error', () => undefined);
    this.closedP = new Promise((resolve) =>
      socket.once('close', () => {
        this.closed = true;
        this.poke();
        resolve();
      }),
    );
  }

  static connect(port: number, host = '127.0.0.1'): Promise<Raw> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host, port });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error(`connect to ${port} timed out`));
      }, 3000);
      s.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      s.once('connect', () => {
        clearTimeout(timer);
        s.setNoDelay(true);
        resolve(new Raw(s));
      });
    });
  }

  private poke(): void {
    for (const l of [...this.listeners]) l();
  }

  /** resolves once `n` replies in total have arrived (rejects on close or timeout) */
  waitReplies(n: number, ms = 5000): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (this.replies.length >= n) done(null);
        else if (this.parseError) done(this.parseError);
        else if (this.closed) done(new Error(`connection closed after ${this.replies.length} of ${n} replies`));
      };
      const done = (err: Error | null): void => {
        clearTimeout(timer);
        this.listeners.delete(check);
        if (err) reject(err);
        else resolve();
      };
      const timer = setTimeout(() => done(new Error(`timed out after ${ms} ms: ${this.replies.length} of ${n} replies`)), ms);
      this.listeners.add(check);
      check();
    });
  }

  write(data: Buffer | string): void {
    this.socket.write(data);
  }

  /** sends without waiting; returns the index its reply will have */
  sendNoWait(...args: Array<string | Buffer | number>): number {
    this.socket.write(encodeCmd(args));
    return this.sent++;
  }

  /** requests sent so far (each gets exactly one reply) */
  get sentCount(): number {
    return this.sent;
  }

  /** counts `n` requests written with write() */
  expectMore(n: number): number {
    const first = this.sent;
    this.sent += n;
    return first;
  }

  async call(...args: Array<string | Buffer | number>): Promise<Resp> {
    const i = this.sendNoWait(...args);
    await this.waitReplies(i + 1);
    return this.replies[i];
  }

  async pipeline(cmds: Array<Array<string | Buffer | number>>, ms = 5000): Promise<Resp[]> {
    const first = this.sent;
    this.socket.write(Buffer.concat(cmds.map(encodeCmd)));
    this.sent += cmds.length;
    await this.waitReplies(first + cmds.length, ms);
    return this.replies.slice(first, first + cmds.length);
  }

  waitClosed(ms = 5000): Promise<void> {
    return Promise.race([
      this.closedP,
      sleep(ms).then(() => {
        if (!this.closed) throw new Error(`connection not closed after ${ms} ms`);
      }),
    ]);
  }

  close(): void {
    this.socket.destroy();
  }
}

export function assertErr(v: Resp, prefix: string, what = ''): void {
  assert.ok(v instanceof RespErr, `${what}: expected an error starting with ${JSON.stringify(prefix)}, got ${JSON.stringify(v)}`);
  assert.ok(v.message.startsWith(prefix), `${what}: expected an error starting with ${JSON.stringify(prefix)}, got ${JSON.stringify(v.message)}`);
}
