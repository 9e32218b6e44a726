import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { lookupCommand, lookupRequest } from '../../src/commands/index.js';
import { RequestDecoder, encodeCommand, requestFromArgs, type Request } from '../../src/protocol/request-decoder.js';
import { crc16, keySlot } from '../../src/routing/crc16.js';
import { hashTagRange } from '../../src/routing/hashtag.js';
import { Ketama } from '../../src/routing/ketama.js';
import { ShardMap } from '../../src/routing/shard-map.js';

// The plain request path reads the command name and the key where they lie in the request's
// bytes, without making a Buffer for them. Each in-place form must give what the Buffer form
// gives, for any key (hash tags, high bytes, empty) anywhere in a larger buffer.

/** keys rich in the bytes that matter: tag braces, high bytes, empties */
const keyBytes = fc.array(fc.oneof(fc.constantFrom(0x7b, 0x7d, 0x80, 0xff, 0x00, 0x61), fc.integer({ min: 0, max: 255 })), { maxLength: 24 }).map((a) => Buffer.from(a));
const padding = fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 6 }).map((a) => Buffer.from(a));

const servers = (n: number) => Array.from({ length: n }, (_, i) => ({ addr: `127.0.0.1:${7000 + i}`, host: '127.0.0.1', port: 7000 + i, weight: 1 + (i % 3), name: `s${i}` }));

describe('routing a key in place', () => {
  it('ShardMap.backendFor(buf, start, end) is the server ketama gives the key alone, with and without a hash tag', () => {
    for (const tag of [undefined, '{}', '[]']) {
      const map = new ShardMap(servers(5), tag);
      const ring = new Ketama(servers(5).map((s) => ({ name: s.name, weight: s.weight })));
      fc.assert(
        fc.property(padding, keyBytes, padding, (before, key, after) => {
          const buf = Buffer.concat([before, key, after]);
          const inPlace = map.backendFor(buf, before.length, before.length + key.length);
          assert.equal(inPlace, map.backendFor(key));
          assert.equal(inPlace, ring.serverFor(key, tag));
        }),
        { numRuns: 2000 },
      );
    }
  });

  it('the hash tag range the loop finds is hashTagRange of the key', () => {
    // `{}` tags: keySlot's rule and twemproxy's are the same rule
    fc.assert(
      fc.property(padding, keyBytes, padding, (before, key, after) => {
        const buf = Buffer.concat([before, key, after]);
        const [s, e] = hashTagRange(key, '{}');
        assert.equal(keySlot(buf, before.length, before.length + key.length), crc16(key, s, e) & 16383);
        assert.equal(keySlot(buf, before.length, before.length + key.length), keySlot(key));
      }),
      { numRuns: 2000 },
    );
  });

  it('a bad hash tag is refused when the map is made, not on a request', () => {
    assert.throws(() => new ShardMap(servers(2), '{'), /hash tag must be two ASCII characters/);
  });
});

describe('a request read in place', () => {
  const decodeOne = (raw: Buffer): Request => {
    const got: Request[] = [];
    new RequestDecoder().push(raw, (r) => got.push(r));
    assert.equal(got.length, 1);
    return got[0];
  };

  it('its arguments are made on first use, as views of its bytes, and the bounds say where they lie', () => {
    const argv = fc.array(fc.uint8Array({ maxLength: 12 }).map((a) => Buffer.from(a)), { minLength: 1, maxLength: 6 });
    fc.assert(
      fc.property(argv, (args) => {
        for (const req of [decodeOne(encodeCommand(args)), requestFromArgs(args)]) {
          assert.equal(req.argc, args.length);
          for (let i = 0; i < args.length; i++) assert.deepEqual(req.raw.subarray(req.argStart(i), req.argEnd(i)), args[i]);
          assert.deepEqual(req.args, args);
          assert.equal(req.args, req.args, 'made once');
          assert.equal(req.args[0].buffer, req.raw.buffer, 'views, not copies');
        }
      }),
      { numRuns: 500 },
    );
  });

  it('lookupRequest finds what lookupCommand finds from the argument Buffers, in any case, subcommands too', () => {
    const names = ['get', 'GET', 'Get', 'set', 'object', 'OBJECT', 'client', 'config', 'nosuchcommand', '', 'x'.repeat(40)];
    const subs = ['encoding', 'ENCODING', 'setname', 'get', 'nosuch', ''];
    for (const n of names) {
      for (const rest of [[], ['k'], ...subs.map((s) => [s, 'k'])]) {
        const args = [n, ...rest].map((a) => Buffer.from(a));
        const req = decodeOne(encodeCommand(args));
        assert.equal(lookupRequest(req), lookupCommand(args), `${n} ${rest.join(' ')}`);
      }
    }
  });
});
