import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fnv1a64Twemproxy } from '../../src/routing/fnv1a.js';
import { hashTagRange, withHashTag } from '../../src/routing/hashtag.js';
import { Ketama, ketamaPointsPerServer, twemproxyServerName } from '../../src/routing/ketama.js';

const bytes = (s: string): Buffer => Buffer.from(s, 'utf8');

/** Reference: 64-bit FNV-1a over bytes read as signed char (sign-extended to 64 bits), low 32 bits. */
function referenceFnv(buf: Uint8Array): number {
  let h = 0xcbf29ce484222325n;
  for (const b of buf) {
    h ^= BigInt.asUintN(64, BigInt(b >= 0x80 ? b - 256 : b));
    h = BigInt.asUintN(64, h * 0x100000001b3n);
  }
  return Number(BigInt.asUintN(32, h));
}

describe('fnv1a64Twemproxy', () => {
  it('is the low 32 bits of FNV-1a/64 for ASCII (published test vectors)', () => {
    assert.equal(fnv1a64Twemproxy(bytes('')), 0x84222325);
    assert.equal(fnv1a64Twemproxy(bytes('a')), 0x8601ec8c); // fnv1a64("a") = 0xaf63dc4c8601ec8c
    assert.equal(fnv1a64Twemproxy(bytes('foobar')), 0xf73967e8); // 0x85944171f73967e8
  });

  it('XORs bytes >= 0x80 sign-extended (C char on x86-64)', () => {
    // 0x84222325 ^ 0xffffff80 = 0x7bdddca5; * 0x1b3 mod 2^32
    assert.equal(fnv1a64Twemproxy(Uint8Array.of(0x80)), Math.imul(0x7bdddca5, 0x1b3) >>> 0);
    assert.equal(fnv1a64Twemproxy(Uint8Array.of(0xff)), Math.imul(0x84222325 ^ 0xffffffff, 0x1b3) >>> 0);
    assert.notEqual(fnv1a64Twemproxy(Uint8Array.of(0x80)), Math.imul(0x84222325 ^ 0x80, 0x1b3) >>> 0);
    const utf8 = bytes('ключ');
    assert.equal(fnv1a64Twemproxy(utf8), referenceFnv(utf8));
  });

  it('matches the BigInt reference on arbitrary bytes, and is unsigned', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (buf) => {
        const h = fnv1a64Twemproxy(buf);
        assert.equal(h, referenceFnv(buf));
        assert.ok(Number.isInteger(h) && h >= 0 && h <= 0xffffffff);
      }),
      { numRuns: 500 },
    );
  });

  it('hashes only [start, end)', () => {
    const key = bytes('xx{user1}yy');
    assert.equal(fnv1a64Twemproxy(key, 3, 8), fnv1a64Twemproxy(bytes('user1')));
    assert.equal(fnv1a64Twemproxy(key, 4, 4), 0x84222325);
    assert.throws(() => fnv1a64Twemproxy(key, 0, 99), RangeError);
    assert.throws(() => fnv1a64Twemproxy(key, 5, 4), RangeError);
  });
});

describe('hashTagRange', () => {
  const cases: [string, string | undefined, [number, number]][] = [
    ['{user1}:name', '{}', [1, 6]],
    ['a{b}', '{}', [2, 3]],
    ['{a}{b}', '{}', [1, 2]],
    ['}{a}', '{}', [2, 3]],
    ['{{a}}', '{}', [1, 3]], // from the first '{' to the next '}'
    ['a{}b', '{}', [0, 4]], // empty tag: whole key
    ['{}}x}', '{}', [0, 5]], // the first '}' after '{' decides, even when empty
    ['x{y', '{}', [0, 3]], // no closing byte
    ['x}y{', '{}', [0, 4]],
    ['', '{}', [0, 0]],
    ['{user1}:name', undefined, [0, 12]],
    ['{user1}:name', '', [0, 12]],
    ['ab<tag>cd', '<>', [3, 6]],
    ['a$b$c', '$$', [2, 3]], // the same byte opens and closes
  ];
  for (const [key, tag, range] of cases) {
    it(`${JSON.stringify(key)} with ${JSON.stringify(tag)} -> [${range}]`, () => {
      assert.deepEqual(hashTagRange(bytes(key), tag), range);
    });
  }

  it('works on bytes: UTF-8 inside the tag', () => {
    const key = bytes('{ключ}:1');
    assert.deepEqual(hashTagRange(key, '{}'), [1, 1 + bytes('ключ').length]);
  });

  it('rejects tags twemproxy would reject', () => {
    assert.throws(() => hashTagRange(bytes('a'), '{'), RangeError);
    assert.throws(() => hashTagRange(bytes('a'), '{}}'), RangeError);
    assert.throws(() => hashTagRange(bytes('a'), 'é}'), RangeError);
  });

  it('withHashTag passes the same range without allocating a tuple', () => {
    const key = bytes('pre{x}post');
    assert.equal(withHashTag(key, '{}', (_k, s, e) => s * 100 + e), 405);
  });
});

describe('ketama point counts', () => {
  it('160 points per server at equal weights', () => {
    for (const n of [1, 2, 3, 4, 7, 10]) {
      const ring = new Ketama(Array.from({ length: n }, (_, i) => ({ name: `s${i}`, weight: 1 })));
      assert.deepEqual(ring.pointsPerServer, new Array(n).fill(160));
      assert.equal(ring.pointCount, 160 * n);
    }
  });

  it('proportional to weight, rounded down to a multiple of 4', () => {
    const ring = new Ketama([
      { name: 'a', weight: 1 },
      { name: 'b', weight: 2 },
      { name: 'c', weight: 3 },
      { name: 'd', weight: 1 },
    ]);
    assert.deepEqual(ring.pointsPerServer, [88, 180, 272, 88]);
    assert.equal(ring.pointCount, 628);
  });

  it('uses single-precision arithmetic as twemproxy does (verified against nutcracker)', () => {
    // exact arithmetic would give 32, 64, 96, 128, 480
    assert.deepEqual(
      [1, 2, 3, 4, 15].map((w) => ketamaPointsPerServer(w, 25, 5)),
      [28, 60, 92, 124, 480],
    );
    assert.equal(ketamaPointsPerServer(29, 60, 3), 228); // exact: 232
    assert.equal(ketamaPointsPerServer(1, 3, 3), 160); // 1/3 rounds up in float: still 160
  });

  it('a tiny weight can get no points at all', () => {
    const ring = new Ketama([
      { name: 'a', weight: 1 },
      { name: 'b', weight: 1000 },
    ]);
    assert.deepEqual(ring.pointsPerServer, [0, 316]);
    for (let h = 0; h < 2 ** 32; h += 2 ** 24) assert.equal(ring.lookup(h), 1);
  });

  it('rejects empty server lists, bad weights and names too long for twemproxy', () => {
    assert.throws(() => new Ketama([]), RangeError);
    assert.throws(() => new Ketama([{ name: 'a', weight: 0 }]), RangeError);
    assert.throws(() => new Ketama([{ name: 'a', weight: 1.5 }]), RangeError);
    assert.throws(() => new Ketama([{ name: 'x'.repeat(300), weight: 1 }]), RangeError);
  });
});

describe('twemproxyServerName', () => {
  it('alias, else host:port, but no port when it is 11211 (verified against nutcracker)', () => {
    assert.equal(twemproxyServerName('10.0.0.1', 6379, 'shard1'), 'shard1');
    assert.equal(twemproxyServerName('10.0.0.1', 6379), '10.0.0.1:6379');
    assert.equal(twemproxyServerName('10.0.0.1', 11211), '10.0.0.1');
    assert.equal(twemproxyServerName('10.0.0.1', 11211, 'm'), 'm');
  });
});

describe('Ketama lookup', () => {
  const servers = [
    { name: 'alpha', weight: 1 },
    { name: 'beta', weight: 2 },
    { name: 'gamma', weight: 3 },
    { name: 'delta', weight: 1 },
  ];
  const ring = new Ketama(servers);

  it('places keys where nutcracker 0.5.0 does (recorded from nutcracker)', () => {
    // alpha:1 beta:2 gamma:3 delta:1, all aliased, so the ports do not matter; the integration
    // test re-checks this vector against a live nutcracker.
    const keys = ['foo', 'bar', 'key:1', 'key:2', 'key:3', 'ключ:1', 'キー1', '😀1', ''];
    assert.deepEqual(
      keys.map((k) => ring.serverFor(bytes(k))),
      [2, 3, 2, 2, 2, 1, 1, 2, 3],
    );
  });

  it('points are sorted and each hash goes to the first point >= it', () => {
    const points = ring.points();
    for (let i = 1; i < points.length; i++) assert.ok(points[i - 1]!.value <= points[i]!.value);
    for (const [i, p] of points.entries()) {
      if (i > 0 && points[i - 1]!.value === p.value) continue;
      assert.equal(ring.lookup(p.value), p.server);
      if (i > 0 && points[i - 1]!.value < p.value - 1) assert.equal(ring.lookup(p.value - 1), p.server);
      if (i + 1 < points.length && points[i + 1]!.value > p.value + 1) {
        assert.equal(ring.lookup(p.value + 1), points[i + 1]!.server);
      }
    }
  });

  it('wraps around past the last point', () => {
    const points = ring.points();
    const first = points[0]!;
    const last = points[points.length - 1]!;
    assert.ok(last.value < 0xffffffff);
    assert.equal(ring.lookup(last.value + 1), first.server);
    assert.equal(ring.lookup(0xffffffff), first.server);
    assert.equal(ring.lookup(-1), first.server); // taken as uint32
    assert.equal(ring.lookup(0), first.server);
  });

  it('an empty key hashes to 0, as in twemproxy (verified against nutcracker)', () => {
    assert.equal(ring.serverFor(new Uint8Array(0)), ring.lookup(0));
    assert.notEqual(ring.lookup(0), ring.lookup(fnv1a64Twemproxy(new Uint8Array(0))));
  });

  it('applies the hash tag', () => {
    assert.equal(ring.serverFor(bytes('{user1}:a'), '{}'), ring.serverFor(bytes('user1')));
    assert.equal(ring.serverFor(bytes('a{}b'), '{}'), ring.serverFor(bytes('a{}b')));
    for (let i = 0; i < 200; i++) {
      assert.equal(ring.serverFor(bytes(`{tag${i % 10}}:${i}`), '{}'), ring.serverFor(bytes(`tag${i % 10}`)));
    }
  });

  it('is deterministic and independent of server order (names, not positions, decide)', () => {
    const again = new Ketama(servers);
    const reversed = [...servers].reverse();
    const ringReversed = new Ketama(reversed);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (key) => {
        const s = ring.serverFor(key);
        assert.equal(again.serverFor(key), s);
        assert.equal(reversed[ringReversed.serverFor(key)]!.name, servers[s]!.name);
      }),
      { numRuns: 2000 },
    );
  });

  it('spreads keys roughly by weight', () => {
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 70_000; i++) counts[ring.serverFor(bytes(`k${i}`))]!++;
    const expected = [1, 2, 3, 1].map((w) => (w / 7) * 70_000);
    counts.forEach((c, i) => assert.ok(Math.abs(c - expected[i]!) < expected[i]! * 0.35, `server ${i}: ${c} vs ${expected[i]}`));
  });

  it('on equal point values the server listed first wins (stable sort, lower bound)', () => {
    // the same name twice makes every point a tie (twemproxy itself refuses duplicate names)
    const twins = new Ketama([
      { name: 'same', weight: 1 },
      { name: 'same', weight: 1 },
    ]);
    for (let h = 0; h < 2 ** 32; h += 2 ** 20) assert.equal(twins.lookup(h), 0);
  });

  it('a single server takes every key without hashing', () => {
    const one = new Ketama([{ name: 'only', weight: 3 }]);
    assert.equal(one.serverFor(bytes('anything')), 0);
    assert.equal(one.serverFor(new Uint8Array(0)), 0);
    assert.equal(one.lookup(123), 0);
  });
});
