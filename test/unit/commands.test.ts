import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import {
  allCommands,
  arityOk,
  channelIndexes,
  commandCount,
  commandDocsReply,
  commandDocsValue,
  commandError,
  commandInfoReply,
  commandInfoValue,
  isBlocking,
  isPubSub,
  isReadOnly,
  isTransaction,
  keyIndexes,
  lookupCommand,
  lookupCommandByName,
  redisVersion,
  type CommandSpec,
} from '../../src/commands/index.js';
import { encode, type Resp } from '../../src/protocol/encode.js';

const argv = (line: string): Buffer[] => line.split(' ').map((s) => Buffer.from(s === '""' ? '' : s));

function spec(line: string): CommandSpec {
  const s = lookupCommand(argv(line));
  assert.ok(s, `no spec for ${line}`);
  return s;
}
function keys(line: string): number[] {
  const args = argv(line);
  const s = lookupCommand(args);
  assert.ok(s, `no spec for ${line}`);
  return keyIndexes(s, args);
}

describe('lookupCommand', () => {
  it('finds commands case-insensitively', () => {
    assert.equal(spec('GET k').name, 'get');
    assert.equal(spec('get k').name, 'get');
    assert.equal(spec('gEt k').name, 'get');
    assert.equal(spec('ZUNIONSTORE d 1 a').name, 'zunionstore');
  });
  it('resolves subcommands of container commands', () => {
    assert.equal(spec('OBJECT ENCODING k').name, 'object|encoding');
    assert.equal(spec('object Encoding k').name, 'object|encoding');
    assert.equal(spec('MEMORY USAGE k').name, 'memory|usage');
    assert.equal(spec('XINFO STREAM s').name, 'xinfo|stream');
    assert.equal(spec('CONFIG GET maxmemory').name, 'config|get');
    assert.equal(spec('CLIENT SETNAME x').name, 'client|setname');
    assert.equal(spec('CLUSTER SLOTS').name, 'cluster|slots');
    assert.equal(spec('COMMAND DOCS').name, 'command|docs');
    assert.equal(spec('OBJECT ENCODING k').parent?.name, 'object');
    assert.equal(spec('OBJECT').name, 'object', 'a container alone resolves to itself');
    assert.ok(spec('OBJECT').subcommands?.get('encoding'));
  });
  it('returns undefined for unknown commands and subcommands', () => {
    assert.equal(lookupCommand(argv('NOSUCH a b')), undefined);
    assert.equal(lookupCommand(argv('OBJECT NOSUCH k')), undefined);
    assert.equal(lookupCommand([]), undefined);
    assert.equal(lookupCommand([Buffer.alloc(0)]), undefined);
    assert.equal(lookupCommand([Buffer.alloc(1 << 20, 0x61)]), undefined);
    assert.equal(lookupCommand([Buffer.from([0xff, 0xfe, 0x00])]), undefined);
    assert.equal(lookupCommand([Buffer.from('GET\0')]), undefined);
    assert.equal(lookupCommand(argv('OBJECT ""')), undefined);
  });
  it('looks up full names as COMMAND INFO takes them', () => {
    assert.equal(lookupCommandByName('OBJECT|Encoding')?.name, 'object|encoding');
    assert.equal(lookupCommandByName('get')?.name, 'get');
    assert.equal(lookupCommandByName('nosuch'), undefined);
  });
});

describe('keyIndexes', () => {
  const cases: Array<[string, number[]]> = [
    ['GET k', [1]],
    ['SET k v EX 10', [1]],
    ['MGET a b c', [1, 2, 3]],
    ['MSET a 1 b 2 c 3', [1, 3, 5]],
    ['MSETNX a 1 b 2', [1, 3]],
    ['DEL a b c', [1, 2, 3]],
    ['EXISTS a', [1]],
    ['RENAME a b', [1, 2]],
    ['SMOVE src dst m', [1, 2]],
    ['LMOVE src dst LEFT RIGHT', [1, 2]],
    ['EVAL s 2 a b x', [3, 4]],
    ['EVAL s 0', []],
    ['EVAL s 0 x y', []],
    ['EVAL_RO s 1 a', [3]],
    ['EVALSHA abc 1 k a', [3]],
    ['FCALL f 2 a b x', [3, 4]],
    ['FCALL_RO f 1 a', [3]],
    ['XREAD COUNT 2 STREAMS a b 0 0', [4, 5]],
    ['XREAD STREAMS a 0', [2]],
    ['XREAD BLOCK 0 STREAMS a b c $ $ $', [4, 5, 6]],
    ['XREADGROUP GROUP g c STREAMS s1 s2 > >', [5, 6]],
    ['XREADGROUP GROUP g c COUNT 1 BLOCK 10 NOACK STREAMS s1 >', [10]],
    ['XREADGROUP GROUP g STREAMS STREAMS s1 >', [5]],
    ['BITOP AND dest a b', [2, 3, 4]],
    ['BITOP NOT dest a', [2, 3]],
    ['OBJECT ENCODING k', [2]],
    ['OBJECT FREQ k', [2]],
    ['OBJECT HELP', []],
    ['MEMORY USAGE k', [2]],
    ['MEMORY USAGE k SAMPLES 5', [2]],
    ['MEMORY STATS', []],
    ['XINFO STREAM s FULL', [2]],
    ['XINFO GROUPS s', [2]],
    ['XINFO CONSUMERS s g', [2]],
    ['XGROUP CREATE s g $ MKSTREAM', [2]],
    ['ZUNIONSTORE dest 2 a b', [1, 3, 4]],
    ['ZUNIONSTORE dest 2 a b WEIGHTS 1 2 AGGREGATE MAX', [1, 3, 4]],
    ['ZINTERSTORE dest 1 a', [1, 3]],
    ['ZDIFFSTORE dest 2 a b', [1, 3, 4]],
    ['ZDIFF 2 a b WITHSCORES', [2, 3]],
    ['ZUNION 3 a b c', [2, 3, 4]],
    ['ZINTERCARD 2 a b LIMIT 5', [2, 3]],
    ['SINTERCARD 2 a b LIMIT 1', [2, 3]],
    ['SINTERCARD 3 a b c', [2, 3, 4]],
    ['LMPOP 2 a b LEFT COUNT 3', [2, 3]],
    ['BLMPOP 0 2 a b LEFT', [3, 4]],
    ['ZMPOP 1 a MIN', [2]],
    ['BZMPOP 1.5 2 a b MAX COUNT 2', [3, 4]],
    ['BLPOP a b 0', [1, 2]],
    ['BRPOPLPUSH src dst 0', [1, 2]],
    ['GEORADIUS k 0 0 1 km', [1]],
    ['GEORADIUS k 0 0 1 km STORE d', [1, 7]],
    ['GEORADIUS k 0 0 1 km STOREDIST d', [1, 7]],
    ['GEORADIUS k 0 0 1 km WITHDIST COUNT 5 STORE d', [1, 10]],
    ['GEORADIUS k 0 0 1 km STORE d STOREDIST e', [1, 7, 9]],
    ['GEORADIUS k 0 0 1 km STORE', [1]],
    ['GEORADIUSBYMEMBER k m 1 km STOREDIST d', [1, 6]],
    ['GEORADIUS_RO k 0 0 1 km', [1]],
    ['GEOSEARCHSTORE dst src FROMMEMBER m BYRADIUS 1 km', [1, 2]],
    ['SORT k', [1]],
    ['SORT k STORE dst', [1, 3]],
    ['SORT k BY w_* LIMIT 0 10 GET # GET o_* DESC ALPHA STORE dst', [1, 14]],
    ['SORT k STORE a STORE b', [1, 5]],
    ['SORT k LIMIT STORE 1 STORE d', [1, 6]],
    ['SORT_RO k BY w_* GET o_*', [1]],
    ['MIGRATE h 6379 k 0 5000', [3]],
    ['MIGRATE h 6379 k 0 5000 COPY REPLACE', [3]],
    ['MIGRATE h 6379 "" 0 5000 KEYS a b', [7, 8]],
    ['MIGRATE h 6379 "" 0 5000 COPY AUTH KEYS KEYS a b', [10, 11]],
    ['MIGRATE h 6379 "" 0 5000 AUTH2 u p KEYS a', [10]],
    ['MIGRATE h 6379 k 0 5000 KEYS a b', []],
    ['OBJECT ENCODING k', [2]],
    ['WATCH a b', [1, 2]],
    ['PFCOUNT a b', [1, 2]],
    ['PFMERGE d a b', [1, 2, 3]],
    ['TOUCH a', [1]],
    ['COPY a b DB 1', [1, 2]],
    ['LCS a b LEN', [1, 2]],
    ['PUBLISH ch msg', []],
    ['SPUBLISH ch msg', []],
    ['PING', []],
    ['INFO', []],
    ['CONFIG GET maxmemory', []],
  ];
  for (const [line, expected] of cases) {
    it(`${line} -> [${expected.join(',')}]`, () => {
      assert.deepEqual(keys(line), expected);
    });
  }

  it('is robust to short and garbage input', () => {
    const bad: Array<[string, string, number[]]> = [
      ['GET', 'GET', []],
      ['MGET', 'MGET', []],
      ['MSET', 'MSET a', [1]],
      ['EVAL', 'EVAL s', []],
      ['EVAL', 'EVAL s abc a', []],
      ['EVAL', 'EVAL s -1 a', []],
      ['EVAL', 'EVAL s 01 a', []],
      ['EVAL', 'EVAL s +1 a', []],
      ['EVAL', 'EVAL s 5 a b', []],
      ['EVAL', 'EVAL s 99999999999999999999999 a', []],
      ['ZUNIONSTORE', 'ZUNIONSTORE dest', []],
      ['ZUNIONSTORE', 'ZUNIONSTORE dest 3 a b', []],
      ['XREAD', 'XREAD', []],
      ['XREAD', 'XREAD STREAMS', []],
      ['XREAD', 'XREAD COUNT 1', []],
      ['XREADGROUP', 'XREADGROUP GROUP g c STREAMS', []],
      ['SORT', 'SORT', []],
      ['SORT', 'SORT k STORE', [1]],
      ['MIGRATE', 'MIGRATE h', []],
      // KEYS as the last argument is never searched, so the (empty) key argument counts, as in Redis
      ['MIGRATE', 'MIGRATE h p "" 0 5 KEYS', [3]],
      ['GEORADIUS', 'GEORADIUS', []],
      ['BITOP', 'BITOP AND', []],
      ['OBJECT', 'OBJECT ENCODING', []],
    ];
    for (const [name, line, expected] of bad) {
      const s = lookupCommandByName(name);
      assert.ok(s);
      assert.deepEqual(keyIndexes(s, argv(line)), expected, line);
      assert.deepEqual(keyIndexes(s, []), [], `${name} with no args`);
    }
  });

  it('never throws and never points outside args (random input for every command)', () => {
    // Deterministic xorshift PRNG, so a failure reproduces.
    let seed = 0x9e3779b9;
    const rnd = (n: number): number => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const words = ['STORE', 'STOREDIST', 'STREAMS', 'KEYS', 'BLOCK', 'COUNT', 'GROUP', 'LIMIT', 'GET', 'BY',
      'AUTH', 'AUTH2', '0', '1', '2', '3', '-1', '-2', '999', '', 'x', '\u00ff', 'a b'];
    const specs: CommandSpec[] = [];
    for (const c of allCommands()) {
      specs.push(c);
      for (const s of c.subcommands?.values() ?? []) specs.push(s);
    }
    for (const s of specs) {
      for (let round = 0; round < 40; round++) {
        const n = rnd(12);
        const args: Buffer[] = [];
        for (let i = 0; i < n; i++) args.push(Buffer.from(words[rnd(words.length)]!));
        const ks = keyIndexes(s, args);
        for (const k of ks) assert.ok(Number.isInteger(k) && k >= 1 && k < args.length, `${s.name} ${args.join(' ')}: ${ks}`);
        for (const k of channelIndexes(s, args)) assert.ok(k >= 1 && k < args.length);
        isBlocking(s, args);
      }
    }
  });

  it('finds shard channels separately from keys', () => {
    assert.deepEqual(channelIndexes(spec('SPUBLISH ch m'), argv('SPUBLISH ch m')), [1]);
    assert.deepEqual(channelIndexes(spec('SSUBSCRIBE a b'), argv('SSUBSCRIBE a b')), [1, 2]);
    assert.deepEqual(channelIndexes(spec('SUNSUBSCRIBE'), argv('SUNSUBSCRIBE')), []);
    assert.deepEqual(channelIndexes(spec('GET k'), argv('GET k')), []);
    assert.equal(spec('SPUBLISH c m').hasKeys, false);
    assert.equal(spec('SPUBLISH c m').hasChannels, true);
  });
});

describe('classification', () => {
  it('read-only', () => {
    for (const c of ['GET k', 'MGET a', 'EXISTS a', 'ZRANGE k 0 1', 'EVAL_RO s 0', 'SORT_RO k', 'OBJECT ENCODING k',
      'XREAD STREAMS s 0', 'GEORADIUS_RO k 0 0 1 km', 'PFCOUNT a']) {
      assert.equal(isReadOnly(spec(c)), true, c);
    }
    for (const c of ['GETDEL k', 'GETEX k', 'GETSET k v', 'SET k v', 'DEL k', 'EVAL s 0', 'SORT k', 'GEORADIUS k 0 0 1 km',
      'XREADGROUP GROUP g c STREAMS s >', 'PING', 'OBJECT', 'MULTI']) {
      assert.equal(isReadOnly(spec(c)), false, c);
    }
  });
  it('blocking', () => {
    for (const c of ['BLPOP a 0', 'BRPOP a 0', 'BLMOVE a b LEFT LEFT 0', 'BRPOPLPUSH a b 0', 'BLMPOP 0 1 a LEFT',
      'BZPOPMIN a 0', 'BZPOPMAX a 0', 'BZMPOP 0 1 a MIN', 'WAIT 1 0',
      'XREAD BLOCK 0 STREAMS s $', 'xread count 1 block 100 streams s $',
      'XREADGROUP GROUP g c BLOCK 0 STREAMS s >', 'XREADGROUP GROUP g c COUNT 1 NOACK BLOCK 5 STREAMS s >']) {
      assert.equal(isBlocking(spec(c), argv(c)), true, c);
    }
    for (const c of ['GET k', 'LPOP a', 'XREAD STREAMS s 0', 'XREAD COUNT 5 STREAMS s 0', 'XREAD STREAMS BLOCK 0',
      'XREADGROUP GROUP g c STREAMS s >', 'XREADGROUP GROUP BLOCK c STREAMS s >', 'XREAD BLOCK', 'SUBSCRIBE c']) {
      assert.equal(isBlocking(spec(c), argv(c)), false, c);
    }
  });
  it('pub/sub', () => {
    for (const c of ['SUBSCRIBE a', 'PSUBSCRIBE a*', 'UNSUBSCRIBE', 'PUNSUBSCRIBE', 'PUBLISH c m', 'SPUBLISH c m',
      'SSUBSCRIBE c', 'SUNSUBSCRIBE', 'PUBSUB CHANNELS', 'PUBSUB NUMSUB a', 'PUBSUB SHARDCHANNELS', 'PUBSUB']) {
      assert.equal(isPubSub(spec(c)), true, c);
    }
    for (const c of ['GET k', 'PING', 'CLIENT LIST']) assert.equal(isPubSub(spec(c)), false, c);
  });
  it('transactions', () => {
    for (const c of ['MULTI', 'EXEC', 'DISCARD', 'WATCH a', 'UNWATCH']) assert.equal(isTransaction(spec(c)), true, c);
    for (const c of ['GET k', 'EVAL s 0', 'PING']) assert.equal(isTransaction(spec(c)), false, c);
  });
  it('arity', () => {
    assert.equal(arityOk(spec('GET k'), 2), true);
    assert.equal(arityOk(spec('GET k'), 1), false);
    assert.equal(arityOk(spec('GET k'), 3), false);
    assert.equal(arityOk(spec('MGET k'), 1), false);
    assert.equal(arityOk(spec('MGET k'), 2), true);
    assert.equal(arityOk(spec('MGET k'), 100), true);
    assert.equal(arityOk(spec('SET k v'), 2), false);
    assert.equal(arityOk(spec('SET k v'), 3), true);
    assert.equal(arityOk(spec('PING'), 1), true);
    assert.equal(arityOk(spec('PING'), 2), true);
    assert.equal(arityOk(spec('PING'), 3), true, 'PING has arity -1; the command itself rejects extra args');
    assert.equal(arityOk(spec('OBJECT ENCODING k'), 3), true);
    assert.equal(arityOk(spec('OBJECT ENCODING k'), 4), false);
    assert.equal(arityOk(spec('OBJECT'), 1), false, 'a container needs a subcommand');
    assert.equal(arityOk(spec('EVAL s 0'), 3), true);
    assert.equal(arityOk(spec('EVAL s 0'), 2), false);
  });
  it('Redis-style errors', () => {
    assert.equal(commandError(argv('GET k')), undefined);
    assert.equal(commandError(argv('GET')), "ERR wrong number of arguments for 'get' command");
    assert.equal(commandError(argv('OBJECT')), "ERR wrong number of arguments for 'object' command");
    assert.equal(commandError(argv('OBJECT ENCODING')), "ERR wrong number of arguments for 'object|encoding' command");
    assert.equal(commandError(argv('object foo')), "ERR unknown subcommand 'foo'. Try OBJECT HELP.");
    assert.equal(commandError(argv('FOO a b')), "ERR unknown command 'FOO', with args beginning with: 'a' 'b' ");
    assert.equal(commandError(argv('FOO')), "ERR unknown command 'FOO', with args beginning with: ");
  });
  it('counts and lists commands', () => {
    assert.equal(redisVersion, '7.0.15');
    assert.equal(commandCount(), allCommands().length);
    assert.ok(commandCount() > 200);
    const names = allCommands().map((c) => c.name);
    assert.deepEqual(names, [...names].sort());
    assert.ok(names.includes('get') && !names.some((n) => n.includes('|')));
  });
});

// ---------------------------------------------------------------------------------------------
// Against a real redis-server

type Parsed =
  | null
  | number
  | boolean
  | string
  | Parsed[]
  | { simple: string }
  | { error: string }
  | { set: Parsed[] }
  | { map: Array<[Parsed, Parsed]> };

class Incomplete extends Error {}

function parse(buf: Buffer, pos: number): { value: Parsed; next: number } {
  const eol = buf.indexOf('\r\n', pos);
  if (eol < 0) throw new Incomplete();
  const type = String.fromCharCode(buf[pos]!);
  const line = buf.toString('utf8', pos + 1, eol);
  let next = eol + 2;
  const items = (n: number): Parsed[] => {
    const out: Parsed[] = [];
    for (let i = 0; i < n; i++) {
      const r = parse(buf, next);
      out.push(r.value);
      next = r.next;
    }
    return out;
  };
  switch (type) {
    case '+':
      return { value: { simple: line }, next };
    case '-':
      return { value: { error: line }, next };
    case ':':
      return { value: Number(line), next };
    case '_':
      return { value: null, next };
    case '#':
      return { value: line === 't', next };
    case '$': {
      const n = Number(line);
      if (n < 0) return { value: null, next };
      if (buf.length < next + n + 2) throw new Incomplete();
      return { value: buf.toString('utf8', next, next + n), next: next + n + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, next };
      const value = items(n);
      return { value, next };
    }
    case '~': {
      const value = items(Number(line));
      return { value: { set: value }, next };
    }
    case '%': {
      const flat = items(Number(line) * 2);
      const map: Array<[Parsed, Parsed]> = [];
      for (let i = 0; i < flat.length; i += 2) map.push([flat[i]!, flat[i + 1]!]);
      return { value: { map }, next };
    }
    default:
      throw new Error(`unexpected RESP type ${type}`);
  }
}

/** A raw connection: each call gives the reply's exact bytes and its parsed value. */
class RawClient {
  private buf: Buffer = Buffer.alloc(0);
  private waiting: Array<(r: { raw: Buffer; value: Parsed }) => void> = [];
  private constructor(private readonly sock: net.Socket) {
    sock.on('data', (chunk: Buffer) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
      while (this.waiting.length > 0 && this.buf.length > 0) {
        let r;
        try {
          r = parse(this.buf, 0);
        } catch (e) {
          if (e instanceof Incomplete) return;
          throw e;
        }
        const raw = Buffer.from(this.buf.subarray(0, r.next));
        this.buf = this.buf.subarray(r.next);
        this.waiting.shift()!({ raw, value: r.value });
      }
    });
  }
  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const sock = net.connect(port, '127.0.0.1');
      sock.once('error', reject);
      sock.once('connect', () => {
        sock.off('error', reject);
        resolve(new RawClient(sock));
      });
    });
  }
  call(...args: Array<string | Buffer>): Promise<{ raw: Buffer; value: Parsed }> {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
      for (const a of args) {
        const b = typeof a === 'string' ? Buffer.from(a) : a;
        parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
      }
      this.sock.write(Buffer.concat(parts));
    });
  }
  close(): void {
    this.sock.destroy();
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address() as net.AddressInfo;
      srv.close(() => resolve(addr.port));
    });
  });
}

/** Sorts what Redis lists in hash-table order (the subcommands), so containers compare too. */
function canonical(v: Parsed): Parsed {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) {
    const out = v.map(canonical);
    // RESP2 docs: a flattened map where 'subcommands' is followed by a flattened map
    for (let i = 0; i + 1 < out.length; i += 2) {
      const sub = out[i + 1];
      if (out[i] === 'subcommands' && Array.isArray(sub)) {
        const pairs: Parsed[][] = [];
        for (let j = 0; j + 1 < sub.length; j += 2) pairs.push([sub[j]!, sub[j + 1]!]);
        pairs.sort((a, b) => String(a[0]).localeCompare(String(b[0])));
        out[i + 1] = pairs.flat();
      }
    }
    // a COMMAND INFO entry: 10 items, name first, subcommands last
    if (out.length === 10 && typeof out[0] === 'string' && typeof out[1] === 'number') {
      const subs = out[9];
      const list = subs !== null && typeof subs === 'object' && 'set' in subs ? subs.set : Array.isArray(subs) ? subs : undefined;
      if (list) list.sort((a, b) => String((a as Parsed[])[0]).localeCompare(String((b as Parsed[])[0])));
    }
    return out;
  }
  if ('set' in v) return { set: v.set.map(canonical) };
  if ('map' in v) {
    return {
      map: v.map.map(([k, x]): [Parsed, Parsed] => {
        const cx = canonical(x);
        if (k === 'subcommands' && cx !== null && typeof cx === 'object' && !Array.isArray(cx) && 'map' in cx) {
          cx.map.sort((a, b) => String(a[0]).localeCompare(String(b[0])));
        }
        return [k, cx];
      }),
    };
  }
  return v;
}

function reparse(value: Resp, proto: 2 | 3): Parsed {
  return parse(encode(value, proto), 0).value;
}

describe('against redis-server', { timeout: 30_000 }, () => {
  let server: ChildProcess | undefined;
  let c2: RawClient; // RESP2
  let c3: RawClient; // RESP3

  before(async () => {
    const port = await freePort();
    server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'], {
      stdio: 'ignore',
    });
    for (let i = 0; ; i++) {
      try {
        c2 = await RawClient.connect(port);
        break;
      } catch (e) {
        if (i > 100 || server.exitCode !== null) throw e;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    c3 = await RawClient.connect(port);
    await c3.call('HELLO', '3');
  });

  after(() => {
    c2?.close();
    c3?.close();
    if (server?.pid !== undefined && server.exitCode === null) process.kill(server.pid, 'SIGKILL');
  });

  it('the table comes from this Redis version', async () => {
    const { value } = await c3.call('HELLO', '3');
    const version = (value as { map: Array<[Parsed, Parsed]> }).map.find(([k]) => k === 'version')?.[1];
    assert.equal(version, redisVersion);
  });

  it('COMMAND INFO get mget eval: byte for byte, RESP2 and RESP3', async () => {
    const names = ['get', 'mget', 'eval'];
    const specs = names.map((n) => lookupCommandByName(n)!);
    const mine = specs.map(commandInfoValue);
    assert.deepEqual(encode(mine, 2), (await c2.call('COMMAND', 'INFO', ...names)).raw);
    assert.deepEqual(encode(mine, 3), (await c3.call('COMMAND', 'INFO', ...names)).raw);
    assert.deepEqual(encode(commandInfoReply(names), 2), (await c2.call('COMMAND', 'INFO', ...names)).raw);
  });

  it('COMMAND INFO of every command and subcommand matches', async () => {
    const plain: CommandSpec[] = [];
    const containers: CommandSpec[] = [];
    for (const c of allCommands()) {
      (c.subcommands ? containers : plain).push(c);
      for (const s of c.subcommands?.values() ?? []) plain.push(s);
    }
    // Byte for byte for everything without subcommands (subcommands asked by full name).
    const names = plain.map((s) => s.name);
    for (const proto of [2, 3] as const) {
      const client = proto === 2 ? c2 : c3;
      const theirs = await client.call('COMMAND', 'INFO', ...names);
      assert.deepEqual(encode(plain.map(commandInfoValue), proto).toString(), theirs.raw.toString());
    }
    // Containers list their subcommands in Redis's hash-table order, which is random per
    // process (siphash with a random seed): byte equality is impossible, so compare the
    // replies with the subcommands sorted.
    const cnames = containers.map((s) => s.name);
    for (const proto of [2, 3] as const) {
      const client = proto === 2 ? c2 : c3;
      const theirs = await client.call('COMMAND', 'INFO', ...cnames);
      assert.deepEqual(canonical(reparse(containers.map(commandInfoValue), proto)), canonical(theirs.value));
    }
    // Unknown names give null, and the full listing has every command once.
    assert.deepEqual(encode(commandInfoReply(['get', 'nosuch']), 2), (await c2.call('COMMAND', 'INFO', 'get', 'nosuch')).raw);
    const all = (await c3.call('COMMAND', 'INFO')).value as Parsed[];
    assert.equal(all.length, commandCount());
    const { value: count } = await c2.call('COMMAND', 'COUNT');
    assert.equal(count, commandCount());
  });

  it('COMMAND DOCS of every command and subcommand matches', async () => {
    const plain: CommandSpec[] = [];
    const containers: CommandSpec[] = [];
    for (const c of allCommands()) {
      (c.subcommands ? containers : plain).push(c);
      for (const s of c.subcommands?.values() ?? []) plain.push(s);
    }
    const names = plain.map((s) => s.name);
    for (const proto of [2, 3] as const) {
      const client = proto === 2 ? c2 : c3;
      const theirs = await client.call('COMMAND', 'DOCS', ...names);
      assert.deepEqual(encode(commandDocsReply(names), proto).toString(), theirs.raw.toString());
      const cnames = containers.map((s) => s.name);
      const theirsC = await client.call('COMMAND', 'DOCS', ...cnames);
      assert.deepEqual(canonical(reparse(commandDocsReply(cnames), proto)), canonical(theirsC.value));
    }
    const set = lookupCommandByName('set')!;
    assert.deepEqual(
      encode({ map: [['set', commandDocsValue(set)]] }, 3),
      (await c3.call('COMMAND', 'DOCS', 'set')).raw,
    );
    // Without names Redis walks its command table in hash order too: sort the outer map.
    const sortOuter = (v: Parsed): Parsed => {
      const m = (canonical(v) as { map: Array<[Parsed, Parsed]> }).map;
      return { map: m.sort((a, b) => String(a[0]).localeCompare(String(b[0]))) };
    };
    const whole = await c3.call('COMMAND', 'DOCS');
    assert.deepEqual(sortOuter(reparse(commandDocsReply(), 3)), sortOuter(whole.value));
  });

  it('keyIndexes agrees with COMMAND GETKEYS', async () => {
    const lines = [
      'GET k1', 'MGET k1 k2 k3', 'MSET k1 v k2 v', 'DEL k1 k2', 'EVAL s 2 k1 k2 x', 'EVAL s 0', 'EVALSHA s 1 k1',
      'FCALL f 2 k1 k2 a', 'XREAD COUNT 2 STREAMS k1 k2 0 0', 'XREAD BLOCK 0 STREAMS k1 $',
      'XREADGROUP GROUP g c STREAMS k1 k2 > >', 'XREADGROUP GROUP g STREAMS STREAMS k1 >', 'BITOP AND k1 k2 k3',
      'OBJECT ENCODING k1', 'MEMORY USAGE k1 SAMPLES 5', 'XINFO STREAM k1 FULL', 'XINFO CONSUMERS k1 g',
      'ZUNIONSTORE k1 2 k2 k3 WEIGHTS 1 2', 'ZDIFF 2 k1 k2', 'ZINTERCARD 2 k1 k2', 'SINTERCARD 2 k1 k2 LIMIT 1',
      'LMPOP 2 k1 k2 LEFT', 'BLMPOP 0 2 k1 k2 LEFT', 'BZMPOP 0 1 k1 MIN', 'BLPOP k1 k2 0',
      'GEORADIUS k1 0 0 1 km', 'GEORADIUS k1 0 0 1 km STORE k2', 'GEORADIUS k1 0 0 1 km STOREDIST k2',
      'GEORADIUS k1 0 0 1 km STORE k2 STOREDIST k3', 'GEORADIUS k1 0 0 1 km STORE',
      'GEORADIUSBYMEMBER k1 m 1 km COUNT 3 STORE k2', 'SORT k1', 'SORT k1 STORE k2',
      'SORT k1 BY w_* LIMIT 0 10 GET # DESC STORE k2', 'SORT k1 STORE k2 STORE k3', 'SORT k1 LIMIT STORE 1 STORE k2',
      'SORT_RO k1 BY w_*', 'MIGRATE h 1 k1 0 5000', 'MIGRATE h 1 "" 0 5000 KEYS k1 k2',
      'MIGRATE h 1 "" 0 5000 COPY AUTH KEYS KEYS k1 k2', 'MIGRATE h 1 "" 0 5000 AUTH2 u p KEYS k1',
      'MIGRATE h 1 k1 0 5000 KEYS k2', 'SET k1 v GET', 'BITFIELD k1 GET u8 0', 'PFCOUNT k1 k2', 'WATCH k1 k2',
      'COPY k1 k2', 'LCS k1 k2', 'SMOVE k1 k2 m', 'RENAME k1 k2', 'GEOSEARCHSTORE k1 k2 FROMMEMBER m BYRADIUS 1 km',
      'EVAL s 5 k1 k2', 'ZUNIONSTORE k1 3 k2 k3', 'XREAD STREAMS k1 k2 0', 'EVAL s abc', 'PING', 'SPUBLISH c m',
      'SUBSCRIBE c', 'TOUCH k1', 'OBJECT HELP',
    ];
    for (const line of lines) {
      const args = argv(line);
      const s = lookupCommand(args);
      assert.ok(s, line);
      const mine = keyIndexes(s, args).map((i) => args[i]!.toString());
      const { value } = await c2.call('COMMAND', 'GETKEYS', ...args);
      // An error means Redis found no keys (or refused a command without key arguments).
      const theirs = Array.isArray(value) ? value : [];
      assert.deepEqual(mine, theirs, `${line}: ${JSON.stringify(value)}`);
    }
  });

  it('commandError gives the texts Redis gives', async () => {
    for (const line of ['GET', 'OBJECT', 'OBJECT ENCODING', 'object foo', 'FOO a b', 'FOO', 'xinfo nope x y']) {
      const args = argv(line);
      const { value } = await c2.call(...args);
      assert.deepEqual({ error: commandError(args) }, value, line);
    }
  });
});
