import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ProtocolError, RequestDecoder, encodeCommand, type Request } from '../../src/protocol/request-decoder.js';
import { ReplyDecoder, ReplyProtocolError } from '../../src/protocol/reply-decoder.js';

/** cuts `buf` at the given (sorted, deduplicated) offsets */
function cut(buf: Buffer, offsets: number[]): Buffer[] {
  const points = [...new Set(offsets.map((o) => o % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    out.push(buf.subarray(prev, p));
    prev = p;
  }
  out.push(buf.subarray(prev));
  return out;
}

const argv = fc.array(fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)), { minLength: 1, maxLength: 8 });

/** any RESP value, as bytes, built without recursion limits beyond `depth` */
const respValue: fc.Memo<string> = fc.memo((depth) =>
  depth <= 1
    ? fc.oneof(
        fc.string({ unit: 'grapheme-ascii' }).map((s) => `+${s.replace(/[\r\n]/g, '')}\r\n`),
        fc.string({ unit: 'grapheme-ascii' }).map((s) => `-ERR ${s.replace(/[\r\n]/g, '')}\r\n`),
        fc.integer().map((n) => `:${n}\r\n`),
        fc.uint8Array({ maxLength: 30 }).map((a) => `$${a.length}\r\n${Buffer.from(a).toString('latin1')}\r\n`),
        fc.constant('$-1\r\n'),
        fc.constant('_\r\n'),
        fc.constant('#t\r\n'),
        fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => `,${d}\r\n`),
      )
    : fc.oneof(
        respValue(1),
        fc.array(respValue(depth - 1), { maxLength: 4 }).map((xs) => `*${xs.length}\r\n${xs.join('')}`),
        fc.array(fc.tuple(respValue(1), respValue(depth - 1)), { maxLength: 3 }).map((kv) => `%${kv.length}\r\n${kv.map(([k, v]) => k + v).join('')}`),
        fc.array(respValue(depth - 1), { maxLength: 3 }).map((xs) => `>${xs.length}\r\n${xs.join('')}`),
        fc.tuple(respValue(1), respValue(1), respValue(depth - 1)).map(([k, v, x]) => `|1\r\n${k}${v}${x}`),
      ),
);

describe('RequestDecoder properties', () => {
  it('decodes any pipeline of requests, cut anywhere, into the same argv and raw bytes', () => {
    fc.assert(
      fc.property(fc.array(argv, { minLength: 1, maxLength: 10 }), fc.array(fc.nat(), { maxLength: 12 }), (reqs, offsets) => {
        const raws = reqs.map((a) => encodeCommand(a));
        const input = Buffer.concat(raws);
        const got: Request[] = [];
        const d = new RequestDecoder();
        for (const piece of cut(input, offsets)) d.push(piece, (r) => got.push(r));
        assert.equal(got.length, reqs.length);
        got.forEach((r, i) => {
          assert.ok(r.raw.equals(raws[i]));
          assert.deepEqual(r.args.map((x) => x.toString('hex')), reqs[i].map((x) => x.toString('hex')));
        });
        assert.ok(d.idle);
      }),
      { numRuns: 300 },
    );
  });

  it('on arbitrary bytes either decodes or throws a ProtocolError, never anything else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.array(fc.nat(), { maxLength: 8 }), (bytes, offsets) => {
        const d = new RequestDecoder({ maxBulkBytes: 1 << 16, maxHeaderBytes: 256, maxArgs: 64 });
        try {
          for (const piece of cut(Buffer.from(bytes), offsets)) d.push(piece, () => undefined);
        } catch (err) {
          assert.ok(err instanceof ProtocolError, `unexpected ${String(err)}`);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe('ReplyDecoder properties', () => {
  it('frames any sequence of RESP2/RESP3 replies, cut anywhere, exactly at their boundaries', () => {
    fc.assert(
      fc.property(fc.array(respValue(4), { minLength: 1, maxLength: 6 }), fc.array(fc.nat(), { maxLength: 12 }), (frames, offsets) => {
        const bufs = frames.map((f) => Buffer.from(f, 'latin1'));
        const got: Buffer[] = [];
        const d = new ReplyDecoder();
        for (const piece of cut(Buffer.concat(bufs), offsets)) d.push(piece, (f) => got.push(f));
        assert.deepEqual(got.map((b) => b.toString('latin1')), frames);
        assert.ok(d.idle);
      }),
      { numRuns: 300 },
    );
  });

  it('on arbitrary bytes either frames or throws a ReplyProtocolError, never anything else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.array(fc.nat(), { maxLength: 8 }), (bytes, offsets) => {
        const d = new ReplyDecoder({ maxBulkBytes: 1 << 16, maxDepth: 16 });
        try {
          for (const piece of cut(Buffer.from(bytes), offsets)) d.push(piece, () => undefined);
        } catch (err) {
          assert.ok(err instanceof ReplyProtocolError, `unexpected ${String(err)}`);
        }
      }),
      { numRuns: 1000 },
    );
  });
});
