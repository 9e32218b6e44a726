/**
 * RESP encoder for replies the proxy builds itself (PING, HELLO, COMMAND, INFO, merged
 * multi-key replies, errors). Pass-through replies are never re-encoded.
 *
 * A value is written in RESP2 or RESP3 as the client negotiated with HELLO: maps, sets,
 * booleans, doubles and nulls fall back to their RESP2 shapes.
 */

export type Resp =
  | null
  | number
  | bigint
  | boolean
  | string // bulk string
  | Buffer // bulk string
  | Resp[]
  | { simple: string }
  | { error: string }
  | { map: Array<[Resp, Resp]> }
  | { set: Resp[] }
  | { double: number }
  | { verbatim: string; format?: string }
  | { raw: Buffer }; // an already-encoded frame, copied as is

export type Proto = 2 | 3;

const CRLF = '\r\n';

export const simple = (s: string): Resp => ({ simple: s });
export const error = (s: string): Resp => ({ error: s });

/** `-ERR ...` etc. as a ready frame; the message must not contain CR or LF. */
export function errorFrame(message: string): Buffer {
  return Buffer.from('-' + message.replace(/[\r\n]+/g, ' ') + CRLF, 'utf8');
}

export function encode(value: Resp, proto: Proto): Buffer {
  const parts: Array<string | Buffer> = [];
  write(value, proto, parts);
  if (parts.length === 1 && typeof parts[0] === 'string') return Buffer.from(parts[0], 'utf8');
  return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : p)));
}

function write(v: Resp, proto: Proto, out: Array<string | Buffer>): void {
  if (v === null) {
    out.push(proto === 3 ? '_\r\n' : '$-1\r\n');
  } else if (typeof v === 'number') {
    if (Number.isInteger(v)) out.push(':' + v + CRLF);
    else writeDouble(v, proto, out);
  } else if (typeof v === 'bigint') {
    out.push(':' + v.toString() + CRLF);
  } else if (typeof v === 'boolean') {
    out.push(proto === 3 ? (v ? '#t\r\n' : '#f\r\n') : v ? ':1\r\n' : ':0\r\n');
  } else if (typeof v === 'string') {
    out.push('$' + Buffer.byteLength(v, 'utf8') + CRLF + v + CRLF);
  } else if (Buffer.isBuffer(v)) {
    out.push('$' + v.length + CRLF, v, CRLF);
  } else if (Array.isArray(v)) {
    out.push('*' + v.length + CRLF);
    for (const item of v) write(item, proto, out);
  } else if ('simple' in v) {
    out.push('+' + v.simple.replace(/[\r\n]+/g, ' ') + CRLF);
  } else if ('error' in v) {
    out.push('-' + v.error.replace(/[\r\n]+/g, ' ') + CRLF);
  } else if ('map' in v) {
    out.push((proto === 3 ? '%' + v.map.length : '*' + v.map.length * 2) + CRLF);
    for (const [k, val] of v.map) {
      write(k, proto, out);
      write(val, proto, out);
    }
  } else if ('set' in v) {
    out.push((proto === 3 ? '~' : '*') + v.set.length + CRLF);
    for (const item of v.set) write(item, proto, out);
  } else if ('double' in v) {
    writeDouble(v.double, proto, out);
  } else if ('verbatim' in v) {
    if (proto === 3) {
      const body = (v.format ?? 'txt') + ':' + v.verbatim;
      out.push('=' + Buffer.byteLength(body, 'utf8') + CRLF + body + CRLF);
    } else {
      write(v.verbatim, proto, out);
    }
  } else {
    out.push(v.raw);
  }
}

function writeDouble(d: number, proto: Proto, out: Array<string | Buffer>): void {
  const s = Number.isNaN(d) ? 'nan' : d === Infinity ? 'inf' : d === -Infinity ? '-inf' : String(d);
  if (proto === 3) out.push(',' + s + CRLF);
  else write(s, proto, out);
}
