import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { SLOTS, crc16, keySlot } from '../../src/routing/crc16.js';
import { Raw } from '../helpers/raw-client.js';
import { startRedis, stopAll } from '../helpers/servers.js';

const bytes = (s: string): Buffer => Buffer.from(s, 'utf8');

/** Reference: the bitwise CRC16/XMODEM, one bit at a time, no table. */
function referenceCrc16(buf: Uint8Array): number {
  let crc = 0;
  for (const b of buf) {
    crc ^= b << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

describe('crc16', () => {
  it('has the CRC-16/XMODEM check value: "123456789" -> 0x31C3', () => {
    assert.equal(crc16(bytes('123456789')), 0x31c3);
    assert.equal(crc16(bytes('')), 0);
  });

  it('matches the bitwise reference on arbitrary bytes, and is 16-bit unsigned', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (buf) => {
        const c = crc16(buf);
        assert.equal(c, referenceCrc16(buf));
        assert.ok(Number.isInteger(c) && c >= 0 && c <= 0xffff);
      }),
      { numRuns: 500 },
    );
  });

  it('hashes only [start, end)', () => {
    const key = bytes('xx123456789yy');
    assert.equal(crc16(key, 2, 11), 0x31c3);
    assert.equal(crc16(key, 4, 4), 0);
    assert.throws(() => crc16(key, 0, 99), RangeError);
    assert.throws(() => crc16(key, 5, 4), RangeError);
    assert.throws(() => crc16(key, -1), RangeError);
  });
});

describe('keySlot', () => {
  const slotOf = (s: string): number => keySlot(bytes(s));

  it('SLOTS is 16384', () => assert.equal(SLOTS, 16384));

  it('gives the slots Redis gives for known keys', () => {
    assert.equal(slotOf('foo'), 12182);
    assert.equal(slotOf('bar'), 5061);
    assert.equal(slotOf(''), 0);
    assert.equal(slotOf('123456789'), 0x31c3 & 16383);
  });

  it('hashes only the {tag} when it is non-empty', () => {
    assert.equal(slotOf('{user1000}.following'), slotOf('{user1000}.followers'));
    assert.equal(slotOf('{user1000}.following'), slotOf('user1000'));
    assert.equal(slotOf('foo{bar}{zap}'), slotOf('bar')); // the first tag only
    assert.equal(slotOf('}{bar}'), slotOf('bar')); // a '}' before the first '{' does not count
  });

  it('takes the first "}" after the first "{", and hashes the whole key when the tag is empty or unclosed', () => {
    assert.equal(slotOf('foo{{bar}}zap'), slotOf('{bar'));
    assert.notEqual(slotOf('foo{}{bar}'), slotOf('bar'));
    assert.equal(slotOf('foo{}{bar}'), crc16(bytes('foo{}{bar}')) & 16383);
    assert.equal(slotOf('foo{bar'), crc16(bytes('foo{bar')) & 16383);
    assert.equal(slotOf('{}'), crc16(bytes('{}')) & 16383);
  });

  it('works on bytes: a UTF-8 tag and bytes that are not UTF-8', () => {
    assert.equal(keySlot(bytes('{ключ}:1')), keySlot(bytes('ключ')));
    const raw = Uint8Array.of(0xff, 0x7b, 0x80, 0x00, 0x7d, 0xfe);
    assert.equal(keySlot(raw), crc16(Uint8Array.of(0x80, 0x00)) & 16383);
  });

  it('is always a valid slot', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 48 }), (key) => {
        const slot = keySlot(key);
        assert.ok(Number.isInteger(slot) && slot >= 0 && slot < SLOTS);
      }),
      { numRuns: 300 },
    );
  });
});

describe('keySlot against CLUSTER KEYSLOT of a real redis-server', () => {
  let raw: Raw;

  before(async () => {
    const redis = await startRedis({ args: ['--cluster-enabled', 'yes'] });
    raw = await Raw.connect(redis.port);
  });

  after(async () => {
    raw?.close();
    await stopAll();
  });

  /** keys made of pieces that exercise the tag rule, non-ASCII text and arbitrary bytes */
  const piece = fc.oneof(
    fc.constantFrom('{', '}', '{}', '}{', 'a', 'user', ':', ' ', '\r\n', 'ключ', '键', '😀').map(bytes),
    fc.uint8Array({ minLength: 1, maxLength: 6 }).map((b) => Buffer.from(b)),
    fc.string({ unit: 'binary', maxLength: 4 }).map(bytes),
  );
  const key = fc.oneof(
    fc.array(piece, { maxLength: 8 }).map((parts) => Buffer.concat(parts)),
    fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)),
  );

  it('agrees on a few hundred generated keys (pipelined)', async () => {
    let checked = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(key, { minLength: 60, maxLength: 100 }), async (keys) => {
        const replies = await raw.pipeline(keys.map((k) => ['CLUSTER', 'KEYSLOT', k]));
        keys.forEach((k, i) => assert.equal(keySlot(k), replies[i], `key ${k.toString('hex')}`));
        checked += keys.length;
      }),
      { numRuns: 4 },
    );
    assert.ok(checked >= 240, `only ${checked} keys checked`);
  });

  it('agrees on the hand-picked keys', async () => {
    const keys = ['foo', 'bar', '', '{user1000}.following', 'foo{}{bar}', 'foo{{bar}}zap', 'foo{bar}{zap}', '{', '}', '{}', '}{a}'].map(bytes);
    const replies = await raw.pipeline(keys.map((k) => ['CLUSTER', 'KEYSLOT', k]));
    assert.deepEqual(
      keys.map((k) => keySlot(k)),
      replies,
    );
  });
});
