import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ProtocolError, RequestDecoder, encodeCommand, splitInline, type Request, type RequestLimits } from '../../src/protocol/request-decoder.js';

type Outcome = { reqs: Array<{ raw: string; args: string[] }>; error?: string };

/** feeds `input` cut into `pieces` and collects what the decoder emits */
function feed(pieces: Buffer[], limits?: RequestLimits): Outcome {
  const d = new RequestDecoder(limits);
  const reqs: Outcome['reqs'] = [];
  const emit = (r: Request): void => {
    reqs.push({ raw: r.raw.toString('latin1'), args: r.args.map((a) => a.toString('latin1')) });
  };
  try {
    for (const p of pieces) d.push(p, emit);
  } catch (err) {
    assert.ok(err instanceof ProtocolError, String(err));
    return { reqs, error: err.message };
  }
  return { reqs };
}

/** the same input whole, split at every offset, and byte by byte must decode the same */
function everyWay(input: string, limits?: RequestLimits): Outcome {
  const buf = Buffer.from(input, 'latin1');
  const whole = feed([buf], limits);
  for (let cut = 1; cut < buf.length; cut++) {
    assert.deepEqual(feed([buf.subarray(0, cut), buf.subarray(cut)], limits), whole, `split at ${cut}`);
  }
  const bytes: Buffer[] = [];
  for (let i = 0; i < buf.length; i++) bytes.push(buf.subarray(i, i + 1));
  assert.deepEqual(feed(bytes, limits), whole, 'byte by byte');
  return whole;
}

describe('RequestDecoder', () => {
  it('decodes pipelined RESP requests and keeps their raw bytes', () => {
    const a = '*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n';
    const b = '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n';
    const out = everyWay(a + b);
    assert.deepEqual(out, {
      reqs: [
        { raw: a, args: ['GET', 'key'] },
        { raw: b, args: ['SET', 'k', ''] },
      ],
    });
  });

  it('carries binary payloads containing CR LF untouched', () => {
    const v = 'a\r\nb\x00\xff';
    const input = `*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$${v.length}\r\n${v}\r\n`;
    assert.deepEqual(everyWay(input).reqs[0].args, ['SET', 'k', v]);
  });

  it('skips *0 and *-1 as Redis does', () => {
    assert.deepEqual(everyWay('*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n').reqs.map((r) => r.args), [['PING']]);
  });

  it('decodes inline commands with quotes and re-encodes them as RESP', () => {
    const out = everyWay('PING\r\nSET k "a b\\x41\\n" \r\n\r\nGET \'it\\\'s\'\n');
    assert.deepEqual(
      out.reqs.map((r) => r.args),
      [['PING'], ['SET', 'k', 'a bA\n'], ['GET', "it's"]],
    );
    assert.equal(out.reqs[0].raw, '*1\r\n$4\r\nPING\r\n');
  });

  it('rejects unbalanced quotes in inline commands', () => {
    assert.match(everyWay('SET k "abc\r\n').error ?? '', /unbalanced quotes/);
  });

  it('rejects nested arrays in requests', () => {
    const out = everyWay('*1\r\n$4\r\nPING\r\n*2\r\n*1\r\n$1\r\na\r\n');
    assert.equal(out.reqs.length, 1);
    assert.equal(out.error, "Protocol error: expected '$', got '*'");
  });

  it('rejects bad lengths', () => {
    assert.equal(everyWay('*x\r\n').error, 'Protocol error: invalid multibulk length');
    assert.equal(everyWay('*1\r\n$-5\r\n').error, 'Protocol error: invalid bulk length');
    assert.equal(everyWay('*1\r\n$3x\r\n').error, 'Protocol error: invalid bulk length');
    assert.equal(everyWay('*99999999999999999\r\n').error, 'Protocol error: invalid multibulk length');
  });

  it('enforces the bulk limit from the header, before any payload arrives', () => {
    const limits = { maxBulkBytes: 10, maxHeaderBytes: 64, maxArgs: 4 };
    assert.match(feed([Buffer.from('*1\r\n$2147483647\r\n')], limits).error ?? '', /invalid bulk length/);
    assert.match(feed([Buffer.from('*5\r\n')], limits).error ?? '', /invalid multibulk length/);
    assert.equal(feed([Buffer.from('*1\r\n$10\r\n0123456789\r\n')], limits).reqs.length, 1);
  });

  it('enforces the inline line limit', () => {
    const limits = { maxBulkBytes: 10, maxHeaderBytes: 16, maxArgs: 4 };
    assert.match(everyWay('GET ' + 'x'.repeat(20) + '\r\n', limits).error ?? '', /too big inline request/);
    assert.equal(everyWay('GET ' + 'x'.repeat(8) + '\r\n', limits).reqs.length, 1);
  });

  it('does not rescan: a large bulk split in many chunks costs one join', () => {
    const big = 'v'.repeat(200_000);
    const input = Buffer.from(`*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$${big.length}\r\n${big}\r\n`);
    const d = new RequestDecoder();
    const got: Request[] = [];
    for (let i = 0; i < input.length; i += 1000) d.push(input.subarray(i, i + 1000), (r) => got.push(r));
    assert.equal(got.length, 1);
    assert.equal(got[0].args[2].length, big.length);
    assert.ok(d.idle);
  });

  it('a request inside one chunk is a view of it (no copy)', () => {
    const chunk = Buffer.from('*1\r\n$4\r\nPING\r\n');
    const d = new RequestDecoder();
    d.push(chunk, (r) => assert.equal(r.raw.buffer, chunk.buffer));
  });

  it('encodeCommand and splitInline agree with each other', () => {
    assert.equal(encodeCommand(['SET', 'k', Buffer.from('v')]).toString(), '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n');
    assert.deepEqual(splitInline(Buffer.from('  a  b\t"c d"  ')).map(String), ['a', 'b', 'c d']);
  });
});

describe('RequestDecoder: the query-buffer limit', () => {
  const limits: RequestLimits = { maxBulkBytes: 1 << 20, maxHeaderBytes: 1024, maxArgs: 100, maxQueryBytes: 1000 };

  it('refuses an unfinished request that holds more than maxQueryBytes across chunks, after emitting the complete ones', () => {
    const d = new RequestDecoder(limits);
    const got: string[] = [];
    const emit = (r: Request): void => {
      got.push(r.args[0].toString());
    };
    d.push(encodeCommand(['PING']), emit);
    d.push(Buffer.from('*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5000\r\n'), emit);
    d.push(Buffer.alloc(600, 0x61), emit);
    assert.throws(() => d.push(Buffer.alloc(600, 0x61), emit), (e: Error) => e instanceof ProtocolError && /query buffer of \d+ bytes over the limit of 1000 \(max_query_bytes\)/.test(e.message));
    assert.deepEqual(got, ['PING']);
  });

  it('does not count complete requests: a long pipeline of small ones passes', () => {
    const d = new RequestDecoder(limits);
    let n = 0;
    const pipeline = Buffer.concat(Array.from({ length: 500 }, (_, i) => encodeCommand(['SET', `k${i}`, 'v'])));
    for (let off = 0; off < pipeline.length; off += 700) d.push(pipeline.subarray(off, off + 700), () => n++);
    assert.equal(n, 500);
  });
});
