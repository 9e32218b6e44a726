import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { ASTER_REMOTE_BUCKETS_US, ASTER_TOTAL_BUCKETS_US, Histogram, LATENCY_BOUNDS_US, SECONDS_BUCKETS } from '../../src/util/histogram.js';
import { COMMAND_NAMES, commandIndex, commandKind, FrontError, InFlight, NO_COMMAND, OTHER_COMMAND, RequestStats, skipsSlowlog } from '../../src/util/request-stats.js';
import { lookupCommand } from '../../src/commands/index.js';
import { requestFromArgs } from '../../src/protocol/request-decoder.js';
import { registerRequestMetrics } from '../../src/sinks/request-metrics.js';
import { sanitize, Slowlog } from '../../src/streams/slowlog.js';
import type { SessionStats } from '../../src/streams/session.js';

const b = (s: string): Buffer => Buffer.from(s);

describe('Histogram', () => {
  it('counts each value in the first bucket whose bound is >= the value (Prometheus le)', () => {
    const h = new Histogram([10, 100, 1000]);
    for (const v of [0, 10, 10.5, 100, 999, 1000, 1001, 5e9]) h.observe(v);
    assert.deepEqual([...h.counts], [2, 2, 2, 2]);
    assert.equal(h.count, 8);
    assert.equal(h.sum, 0 + 10 + 10.5 + 100 + 999 + 1000 + 1001 + 5e9);
    assert.deepEqual(h.cumulative([10, 1000]), [2, 6]);
    assert.deepEqual(h.cumulative([100]), [4]);
  });

  it('rejects bounds that do not increase, and published bounds it does not hold', () => {
    assert.throws(() => new Histogram([1, 1]), /strictly increasing/);
    assert.throws(() => new Histogram([5, 3]), /strictly increasing/);
    assert.throws(() => new Histogram([10, 100]).cumulative([50]), /not a bound/);
  });

  it('holds every bound aster and the seconds histograms publish, so each set is exact', () => {
    for (const u of [...ASTER_TOTAL_BUCKETS_US, ...ASTER_REMOTE_BUCKETS_US, ...SECONDS_BUCKETS.map((s) => Math.round(s * 1e6))]) {
      assert.ok(LATENCY_BOUNDS_US.includes(u), `missing ${u}`);
    }
    const h = new Histogram();
    const values = [50, 150, 999, 1000, 1001, 9000, 39000, 41000, 150000, 199999, 250000, 3e6, 9e6];
    for (const v of values) h.observe(v);
    const expect = (bounds: readonly number[]) => bounds.map((le) => values.filter((v) => v <= le).length);
    assert.deepEqual(h.cumulative(ASTER_TOTAL_BUCKETS_US), expect(ASTER_TOTAL_BUCKETS_US));
    assert.deepEqual(h.cumulative(ASTER_REMOTE_BUCKETS_US), expect(ASTER_REMOTE_BUCKETS_US));
    const secondsUs = SECONDS_BUCKETS.map((s) => Math.round(s * 1e6));
    assert.deepEqual(h.cumulative(secondsUs), expect(secondsUs));
    h.reset();
    assert.equal(h.count, 0);
    assert.equal(h.sum, 0);
  });
});

describe('command index', () => {
  it('maps table commands to their top-level name, subcommands to their container, the rest to other', () => {
    const get = commandIndex(lookupCommand([b('GET'), b('k')]));
    assert.equal(COMMAND_NAMES[get], 'get');
    assert.equal(commandKind(get), 'read');
    const set = commandIndex(lookupCommand([b('set'), b('k'), b('v')]));
    assert.equal(COMMAND_NAMES[set], 'set');
    assert.equal(commandKind(set), 'write');
    const enc = commandIndex(lookupCommand([b('OBJECT'), b('ENCODING'), b('k')]));
    assert.equal(COMMAND_NAMES[enc], 'object');
    assert.equal(commandKind(commandIndex(lookupCommand([b('PING')]))), 'other');
    assert.equal(commandIndex(lookupCommand([b('NOSUCH')])), OTHER_COMMAND);
    assert.equal(COMMAND_NAMES[OTHER_COMMAND], 'other');
    assert.equal(commandKind(OTHER_COMMAND), 'invalid');
    assert.equal(skipsSlowlog(commandIndex(lookupCommand([b('EXEC')]))), true);
    assert.equal(skipsSlowlog(get), false);
  });
});

describe('InFlight', () => {
  it('keeps arrival, command and request per sequence number, growing past its capacity', () => {
    const f = new InFlight(16);
    const reqs = Array.from({ length: 100 }, (_, i) => requestFromArgs([b('GET'), b(`k${i}`)]));
    for (let i = 0; i < 40; i++) {
      f.add(i * 10, reqs[i]);
      f.setCommand(i, i % 7);
    }
    f.release(30); // 30 written: the ring holds 30..39 and grows as needed from here
    for (let i = 40; i < 100; i++) {
      f.add(i * 10, reqs[i]);
      f.setCommand(i, i % 7);
    }
    for (let i = 30; i < 100; i++) {
      assert.equal(f.arrivedAt(i), i * 10);
      assert.equal(f.command(i), i % 7);
      assert.equal(f.request(i), reqs[i]);
    }
    f.release(100);
    f.add(0, undefined);
    assert.equal(f.command(100), NO_COMMAND);
    assert.equal(f.request(100), undefined);
  });
});

describe('Slowlog', () => {
  it('keeps the newest maxLen entries, newest first, with increasing ids', () => {
    const log = new Slowlog(0, 3);
    for (let i = 0; i < 5; i++) log.record(i * 100, [b('GET'), b(`k${i}`)], '1.2.3.4:5', i === 4 ? 'named' : '', 1000 + i);
    assert.equal(log.length, 3);
    const all = log.entries(-1);
    assert.deepEqual(
      all.map((e) => [e.id, e.time, e.durationUs, e.args.map(String), e.addr, e.name]),
      [
        [4, 1004, 400, ['GET', 'k4'], '1.2.3.4:5', 'named'],
        [3, 1003, 300, ['GET', 'k3'], '1.2.3.4:5', ''],
        [2, 1002, 200, ['GET', 'k2'], '1.2.3.4:5', ''],
      ],
    );
    assert.deepEqual(log.entries(2).map((e) => e.id), [4, 3]);
    assert.deepEqual(log.entries(0), []);
    log.configure(0, 2); // shorter: keeps the newest
    assert.deepEqual(log.entries(-1).map((e) => e.id), [4, 3]);
    log.record(1, [b('PING')], 'a:1', '', 1);
    assert.deepEqual(log.entries(10).map((e) => e.id), [5, 4]);
    log.reset();
    assert.equal(log.length, 0);
    log.record(1, [b('PING')], 'a:1', '', 1);
    assert.deepEqual(log.entries(10).map((e) => e.id), [6], 'ids go on after a reset, as in Redis');
  });

  it('threshold: negative logs nothing, 0 logs everything; a length of 0 keeps nothing', () => {
    assert.equal(new Slowlog(-1, 10).isSlow(1e9), false);
    assert.equal(new Slowlog(0, 10).isSlow(0), true);
    assert.equal(new Slowlog(500, 10).isSlow(499.9), false);
    assert.equal(new Slowlog(500, 10).isSlow(500), true);
    const none = new Slowlog(0, 0);
    none.record(5, [b('GET'), b('k')], 'a:1', '', 1);
    assert.equal(none.length, 0);
  });

  it('cuts arguments as Redis does: 32 at most, 128 bytes each', () => {
    const many = Array.from({ length: 40 }, (_, i) => b(`a${i}`));
    const cut = sanitize(many).map(String);
    assert.equal(cut.length, 32);
    assert.deepEqual(cut.slice(0, 31), many.slice(0, 31).map(String));
    assert.equal(cut[31], '... (9 more arguments)');
    const exactly32 = sanitize(many.slice(0, 32)).map(String);
    assert.deepEqual(exactly32, many.slice(0, 32).map(String));
    const long = sanitize([b('SET'), b('k'), Buffer.alloc(200, 0x78)]).map(String);
    assert.equal(long[2], 'x'.repeat(128) + '... (72 more bytes)');
    assert.equal(sanitize([b('SET'), b('k'), Buffer.alloc(128, 0x78)])[2].length, 128);
  });

  it('copies arguments (an entry never holds a socket buffer) and redacts passwords', () => {
    const chunk = b('GETkey');
    const out = sanitize([chunk.subarray(0, 3), chunk.subarray(3)]);
    chunk.fill(0x21);
    assert.deepEqual(out.map(String), ['GET', 'key']);
    assert.deepEqual(sanitize([b('AUTH'), b('pw')]).map(String), ['AUTH', '(redacted)']);
    assert.deepEqual(sanitize([b('auth'), b('user'), b('pw')]).map(String), ['auth', '(redacted)', '(redacted)']);
    assert.deepEqual(sanitize([b('HELLO'), b('3'), b('AUTH'), b('default'), b('pw'), b('SETNAME'), b('n')]).map(String), [
      'HELLO',
      '3',
      'AUTH',
      '(redacted)',
      '(redacted)',
      'SETNAME',
      'n',
    ]);
    assert.deepEqual(sanitize([b('MIGRATE'), b('h'), b('1'), b('k'), b('0'), b('5'), b('AUTH2'), b('u'), b('p'), b('KEYS')]).map(String), [
      'MIGRATE',
      'h',
      '1',
      'k',
      '0',
      '5',
      'AUTH2',
      '(redacted)',
      '(redacted)',
      'KEYS',
    ]);
  });
});

describe('registerRequestMetrics', () => {
  const stats = (): SessionStats => ({ connectedClients: 0, totalConnections: 0, totalCommands: 0, protocolErrors: 2, internalErrors: 1, requests: new RequestStats() });

  it('publishes the plain counters as labelled series at scrape time', async () => {
    const s = stats();
    const r = s.requests;
    const get = commandIndex(lookupCommand([b('GET'), b('k')]));
    r.replied(get, b('$1\r\nv\r\n'));
    r.replied(get, b('-ERR x\r\n'));
    r.replied(OTHER_COMMAND, b('-ERR unknown command\r\n'));
    r.replied(NO_COMMAND, b('-ERR Protocol error\r\n')); // not a command: not counted
    r.timed(get, 500); // 0.5 ms
    r.timed(get, 15000); // 15 ms
    r.errors[FrontError.crossslot] += 3;
    const be = r.backend('r1');
    be.reply(0.8, b('+OK\r\n')); // 0.8 ms at the backend
    be.reply(2, b('-WRONGTYPE x\r\n'));
    be.failed('timeout', 2);
    be.error('timeout');
    const registry = new Registry();
    registerRequestMetrics(registry, { clusters: () => [{ name: 'c1', stats: s }] });
    const text = await registry.metrics();
    const value = (series: string): number => {
      const line = text.split('\n').find((l) => l.startsWith(series + ' '));
      assert.ok(line !== undefined, `no ${series} in\n${text}`);
      return Number(line.slice(series.length + 1));
    };
    assert.equal(value('aster_commands_total{cluster="c1",command="get",result="ok"}'), 1);
    assert.equal(value('aster_commands_total{cluster="c1",command="get",result="error"}'), 1);
    assert.equal(value('aster_commands_total{cluster="c1",command="other",result="error"}'), 1);
    assert.equal(value('aster_front_command_total{cluster="c1",kind="read",result="ok"}'), 1);
    assert.equal(value('aster_front_command_total{cluster="c1",kind="read",result="fail"}'), 1);
    assert.equal(value('aster_front_command_total{cluster="c1",kind="invalid",result="fail"}'), 1);
    assert.equal(value('aster_front_command_total{cluster="c1",kind="write",result="ok"}'), 0);
    assert.equal(value('aster_total_timer_bucket{cluster="c1",le="1000"}'), 1);
    assert.equal(value('aster_total_timer_bucket{cluster="c1",le="10000"}'), 1);
    assert.equal(value('aster_total_timer_bucket{cluster="c1",le="40000"}'), 2);
    assert.equal(value('aster_total_timer_bucket{cluster="c1",le="+Inf"}'), 2);
    assert.equal(value('aster_total_timer_sum{cluster="c1"}'), 15500);
    assert.equal(value('aster_total_timer_count{cluster="c1"}'), 2);
    assert.equal(value('aster_request_duration_seconds_bucket{cluster="c1",le="0.0005"}'), 1);
    assert.equal(value('aster_request_duration_seconds_bucket{cluster="c1",le="0.025"}'), 2);
    assert.equal(value('aster_request_duration_seconds_sum{cluster="c1"}'), 0.0155);
    // by command: the same observations, under the command's name
    assert.equal(value('aster_command_duration_seconds_bucket{cluster="c1",command="get",le="0.0005"}'), 1);
    assert.equal(value('aster_command_duration_seconds_count{cluster="c1",command="get"}'), 2);
    assert.doesNotMatch(text, /aster_command_duration_seconds_count\{cluster="c1",command="set"\}/, 'a command never answered has no series');
    assert.equal(value('aster_remote_timer_bucket{cluster="c1",le="1000"}'), 1);
    assert.equal(value('aster_remote_timer_bucket{cluster="c1",le="10000"}'), 2);
    assert.equal(value('aster_backend_request_duration_seconds_count{cluster="c1"}'), 2);
    assert.equal(value('aster_errors_total{cluster="c1",kind="crossslot"}'), 3);
    assert.equal(value('aster_errors_total{cluster="c1",kind="protocol"}'), 2);
    assert.equal(value('aster_errors_total{cluster="c1",kind="internal"}'), 1);
    assert.equal(value('aster_errors_total{cluster="c1",kind="backend"}'), 2);
    assert.equal(value('aster_front_error_total{cluster="c1",kind="crossslot"}'), 3);
    assert.equal(value('aster_backend_request_total{cluster="c1",backend="r1",result="ok"}'), 1);
    assert.equal(value('aster_backend_request_total{cluster="c1",backend="r1",result="resp_error"}'), 1);
    assert.equal(value('aster_backend_request_total{cluster="c1",backend="r1",result="timeout"}'), 2);
    assert.equal(value('aster_backend_error_total{cluster="c1",backend="r1",kind="timeout"}'), 1);
    assert.match(text, /# TYPE aster_total_timer histogram/);
    assert.match(text, /# TYPE aster_commands_total counter/);

    // moving on: a second scrape shows the new totals
    r.replied(get, b(':1\r\n'));
    r.timed(OTHER_COMMAND, 150000);
    const again = await registry.metrics();
    assert.match(again, /^aster_commands_total\{cluster="c1",command="get",result="ok"\} 2$/m);
    assert.match(again, /^aster_total_timer_bucket\{cluster="c1",le="200000"\} 3$/m);
    assert.match(again, /^aster_total_timer_bucket\{cluster="c1",le="100000"\} 2$/m);
  });

  it('the JSON form (what workers send their primary) has the same values', async () => {
    const s = stats();
    s.requests.timed(OTHER_COMMAND, 2000);
    const registry = new Registry();
    registerRequestMetrics(registry, { clusters: () => [{ name: 'c1', stats: s }] });
    const json = (await registry.getMetricsAsJSON()) as unknown as Array<{ name: string; type: string; values: Array<{ value: number; labels: Record<string, unknown>; metricName?: string }> }>;
    const total = json.find((m) => m.name === 'aster_total_timer');
    assert.ok(total);
    assert.equal(total.type, 'histogram');
    const bucket = total.values.find((v) => v.metricName === 'aster_total_timer_bucket' && v.labels.le === 10000);
    assert.equal(bucket?.value, 1);
    assert.equal(bucket?.labels.cluster, 'c1');
  });

  it('replaces an older declaration of the same name instead of failing', async () => {
    const registry = new Registry();
    registerRequestMetrics(registry, { clusters: () => [] });
    registerRequestMetrics(registry, { clusters: () => [{ name: 'c2', stats: stats() }] });
    assert.match(await registry.metrics(), /aster_errors_total\{cluster="c2",kind="protocol"\} 2/);
  });
});
