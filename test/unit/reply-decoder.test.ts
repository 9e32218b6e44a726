import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ReplyDecoder, ReplyProtocolError, arrayElements, integerValue, isErrorReply, type ReplyLimits } from '../../src/protocol/reply-decoder.js';

type Outcome = { frames: string[]; pushes: boolean[]; error?: string };

function feed(pieces: Buffer[], limits?: ReplyLimits): Outcome {
  const d = new ReplyDecoder(limits);
  const out: Outcome = { frames: [], pushes: [] };
  try {
    for (const p of pieces)
      d.push(p, (f, push) => {
        out.frames.push(f.toString('latin1'));
        out.pushes.push(push);
      });
  } catch (err) {
    assert.ok(err instanceof ReplyProtocolError, String(err));
    out.error = err.message;
  }
  return out;
}

function everyWay(input: string, limits?: ReplyLimits): Outcome {
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

describe('ReplyDecoder', () => {
  it('frames every RESP2 type', () => {
    const frames = ['+OK\r\n', '-ERR bad\r\n', ':42\r\n', '$3\r\nabc\r\n', '$-1\r\n', '*-1\r\n', '*0\r\n', '*2\r\n$1\r\na\r\n:1\r\n', '$4\r\na\r\nb\r\n'];
    assert.deepEqual(everyWay(frames.join('')).frames, frames);
  });

  it('frames every RESP3 type, maps, sets, pushes and attributes', () => {
    const frames = [
      '_\r\n',
      ',3.14\r\n',
      '#t\r\n',
      '(12345678901234567890\r\n',
      '!5\r\nERR x\r\n',
      '=7\r\ntxt:abc\r\n',
      '%2\r\n+a\r\n:1\r\n+b\r\n*1\r\n:2\r\n',
      '~2\r\n:1\r\n:2\r\n',
      '|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n',
      '*2\r\n|1\r\n+k\r\n+v\r\n:1\r\n:2\r\n',
      '|0\r\n:7\r\n',
      '%0\r\n',
    ];
    const push = '>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n';
    const out = everyWay(frames.join('') + push);
    assert.deepEqual(out.frames, [...frames, push]);
    assert.deepEqual(out.pushes, [...frames.map(() => false), true]);
  });

  it('walks deep nesting without recursion, up to the limit', () => {
    const depth = 5000;
    const deep = '*1\r\n'.repeat(depth) + ':1\r\n';
    assert.equal(feed([Buffer.from(deep)], { maxBulkBytes: 1 << 20, maxDepth: depth }).frames.length, 1);
    assert.match(feed([Buffer.from(deep)], { maxBulkBytes: 1 << 20, maxDepth: 100 }).error ?? '', /nested deeper than 100/);
  });

  it('rejects garbage and oversized bulks', () => {
    assert.match(everyWay('+OK\r\n?what\r\n').error ?? '', /unexpected reply type byte 0x3f/);
    assert.match(everyWay('$x\r\n').error ?? '', /bad length line/);
    assert.match(feed([Buffer.from('$100\r\n')], { maxBulkBytes: 10, maxDepth: 4 }).error ?? '', /bulk too large/);
  });

  it('helpers read arrays, integers and errors', () => {
    assert.deepEqual(arrayElements(Buffer.from('*3\r\n$1\r\na\r\n$-1\r\n-ERR x\r\n'))?.map(String), ['$1\r\na\r\n', '$-1\r\n', '-ERR x\r\n']);
    assert.equal(arrayElements(Buffer.from(':1\r\n')), null);
    assert.equal(integerValue(Buffer.from(':-12\r\n')), -12);
    assert.equal(integerValue(Buffer.from('+OK\r\n')), null);
    assert.ok(isErrorReply(Buffer.from('-ERR\r\n')));
    assert.ok(!isErrorReply(Buffer.from('+OK\r\n')));
  });
});
