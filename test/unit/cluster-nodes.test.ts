import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { parseClusterNodes, type ClusterNodeInfo } from '../../src/routing/cluster-nodes.js';
import { Raw } from '../helpers/raw-client.js';
import { startRedis, stopAll } from '../helpers/servers.js';

const A = 'a'.repeat(40);
const B = 'b'.repeat(40);
const C = 'c'.repeat(40);
const D = 'd'.repeat(40);

/** a three-master cluster with one replica, seen from the first master (as Redis 7 prints it) */
const HEALTHY = [
  `${A} 10.0.0.1:7000@17000 myself,master - 0 1700000000000 1 connected 0-5460 6000 7000-7100`,
  `${B} 10.0.0.2:7001@17001 master - 0 1700000000123 2 connected 5461-5999 6001-6999`,
  `${C} 10.0.0.3:7002@17002 master - 0 1700000000456 3 connected 7101-16383`,
  `${D} 10.0.0.4:7003@17003 slave ${A} 0 1700000000789 1 connected`,
].join('\n');

describe('parseClusterNodes', () => {
  it('reads masters with several ranges, single slots, a replica and myself', () => {
    const nodes = parseClusterNodes(HEALTHY + '\n');
    assert.equal(nodes.length, 4);
    const expected: ClusterNodeInfo = {
      id: A,
      host: '10.0.0.1',
      port: 7000,
      addr: '10.0.0.1:7000',
      master: true,
      replicaOf: null,
      myself: true,
      failing: false,
      suspect: false,
      handshake: false,
      noaddr: false,
      configEpoch: 1,
      connected: true,
      slots: [
        [0, 5460],
        [6000, 6000],
        [7000, 7100],
      ],
      migrating: [],
      importing: [],
    };
    assert.deepEqual(nodes[0], expected);
    assert.deepEqual(nodes[1]!.slots, [
      [5461, 5999],
      [6001, 6999],
    ]);
    assert.equal(nodes[1]!.myself, false);
    assert.deepEqual(nodes[2]!.slots, [[7101, 16383]]);
    assert.equal(nodes[2]!.configEpoch, 3);
    const replica = nodes[3]!;
    assert.equal(replica.master, false);
    assert.equal(replica.replicaOf, A);
    assert.equal(replica.addr, '10.0.0.4:7003');
    assert.deepEqual(replica.slots, []);
  });

  it('accepts \\r\\n line ends and skips blank lines', () => {
    const crlf = '\r\n' + HEALTHY.split('\n').join('\r\n\r\n') + '\r\n  \r\n';
    assert.deepEqual(parseClusterNodes(crlf), parseClusterNodes(HEALTHY));
    assert.deepEqual(parseClusterNodes(''), []);
    assert.deepEqual(parseClusterNodes('\n\r\n'), []);
  });

  it('reads fail, fail?, handshake, noaddr and a disconnected link', () => {
    const nodes = parseClusterNodes(
      [
        `${A} 10.0.0.1:7000@17000 master,fail - 1700000000000 1700000000000 4 disconnected`,
        `${B} 10.0.0.2:7001@17001 slave,fail? ${C} 1700000000000 0 5 connected`,
        `${C} 10.0.0.3:7002@17002 handshake - 0 0 0 disconnected`,
        `${D} :0@0 slave,noaddr ${A} 0 0 1 disconnected`,
      ].join('\n'),
    );
    const [failed, suspected, meeting, lost] = nodes as [ClusterNodeInfo, ClusterNodeInfo, ClusterNodeInfo, ClusterNodeInfo];
    assert.deepEqual([failed.failing, failed.suspect, failed.connected, failed.master], [true, false, false, true]);
    assert.deepEqual([suspected.failing, suspected.suspect, suspected.connected, suspected.master], [false, true, true, false]);
    assert.equal(suspected.replicaOf, C);
    assert.deepEqual([meeting.handshake, meeting.master, meeting.noaddr], [true, false, false]);
    assert.deepEqual([lost.noaddr, lost.host, lost.port, lost.addr, lost.replicaOf], [true, '', 0, ':0', A]);
  });

  it('drops the hostname and auxiliary fields after the address', () => {
    const [withName, withAux, emptyName] = parseClusterNodes(
      [
        `${A} 10.0.0.1:7000@17000,node-a.example.com myself,master - 0 0 1 connected 0-100`,
        `${B} 10.0.0.2:7001@17001,node-b,shard-id=${C} master - 0 0 2 connected`,
        `${C} 10.0.0.3:7002@17002,,shard-id=${C} slave ${B} 0 0 2 connected`,
      ].join('\n'),
    ) as [ClusterNodeInfo, ClusterNodeInfo, ClusterNodeInfo];
    assert.deepEqual([withName.host, withName.port, withName.addr], ['10.0.0.1', 7000, '10.0.0.1:7000']);
    assert.deepEqual([withAux.host, withAux.port], ['10.0.0.2', 7001]);
    assert.deepEqual([emptyName.host, emptyName.port, emptyName.replicaOf], ['10.0.0.3', 7002, B]);
  });

  it('splits IPv6 addresses at the last ":" before "@"', () => {
    const [v6, loop, old] = parseClusterNodes(
      [
        `${A} 2001:db8::1:7000@17000 master - 0 0 1 connected 0-10`,
        `${B} ::1:7001@17001,host-b master - 0 0 2 connected`,
        `${C} 10.0.0.3:7002 master - 0 0 3 connected`, // before Redis 4: no bus port
      ].join('\n'),
    ) as [ClusterNodeInfo, ClusterNodeInfo, ClusterNodeInfo];
    assert.deepEqual([v6.host, v6.port, v6.addr], ['2001:db8::1', 7000, '2001:db8::1:7000']);
    assert.deepEqual([loop.host, loop.port, loop.addr], ['::1', 7001, '::1:7001']);
    assert.deepEqual([old.host, old.port], ['10.0.0.3', 7002]);
  });

  it('reads a node that has not met another yet: no host, its own port', () => {
    const [fresh] = parseClusterNodes(`${A} :7000@17000 myself,master - 0 0 0 connected 5000`) as [ClusterNodeInfo];
    assert.deepEqual([fresh.host, fresh.port, fresh.addr, fresh.noaddr], ['', 7000, ':7000', false]);
  });

  it('reads migrating and importing entries apart from the stable slots', () => {
    const [source, target] = parseClusterNodes(
      [
        `${A} 10.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-100 [42->-${B}] [16383->-${C}]`,
        `${B} 10.0.0.2:7001@17001 master - 0 0 2 connected 101-200 [42-<-${A}]`,
      ].join('\n'),
    ) as [ClusterNodeInfo, ClusterNodeInfo];
    assert.deepEqual(source.slots, [[0, 100]]);
    assert.deepEqual(source.migrating, [
      { slot: 42, to: B },
      { slot: 16383, to: C },
    ]);
    assert.deepEqual(source.importing, []);
    assert.deepEqual(target.slots, [[101, 200]]);
    assert.deepEqual(target.importing, [{ slot: 42, from: A }]);
    assert.deepEqual(target.migrating, []);
  });

  describe('throws on malformed lines, naming the line', () => {
    const bad: Array<[string, string, RegExp]> = [
      ['fewer than 8 fields', `${A} 10.0.0.1:7000@17000 master - 0 0 1`, /at least 8 fields, got 7/],
      ['an error reply instead of the listing', 'ERR This instance has cluster support disabled', /at least 8 fields/],
      ['a port that is not a number', `${A} 10.0.0.1:x@17000 master - 0 0 1 connected`, /bad port "x"/],
      ['a port above 65535', `${A} 10.0.0.1:65536@17000 master - 0 0 1 connected`, /bad port "65536"/],
      ['an address without a port', `${A} 10.0.0.1@17000 master - 0 0 1 connected`, /has no port/],
      ['a bad bus port', `${A} 10.0.0.1:7000@x master - 0 0 1 connected`, /bad cluster bus port/],
      ['a bad config epoch', `${A} 10.0.0.1:7000@17000 master - 0 0 -1 connected`, /bad config-epoch "-1"/],
      ['a bad ping-sent', `${A} 10.0.0.1:7000@17000 master - 1e3 0 1 connected`, /bad ping-sent/],
      ['a bad pong-recv', `${A} 10.0.0.1:7000@17000 master - 0 soon 1 connected`, /bad pong-recv/],
      ['a slot above 16383', `${A} 10.0.0.1:7000@17000 master - 0 0 1 connected 0-16384`, /slot 16384 is outside 0\.\.16383/],
      ['a huge slot', `${A} 10.0.0.1:7000@17000 master - 0 0 1 connected 99999999`, /slot 99999999 is outside/],
      ['a range that ends before it starts', `${A} 10.0.0.1:7000@17000 master - 0 0 1 connected 100-50`, /100-50 ends before it starts/],
      ['a slot entry that is not one', `${A} 10.0.0.1:7000@17000 master - 0 0 1 connected 1-2-3`, /bad slot entry "1-2-3"/],
      ['a negative slot', `${A} 10.0.0.1:7000@17000 master - 0 0 1 connected -5`, /bad slot entry "-5"/],
      ['a migrating slot out of range', `${A} 10.0.0.1:7000@17000 master - 0 0 1 connected [16384->-${B}]`, /slot 16384 is outside/],
      ['an unclosed migration entry', `${A} 10.0.0.1:7000@17000 master - 0 0 1 connected [42->-${B}`, /bad slot entry/],
    ];
    for (const [what, line, reason] of bad) {
      it(what, () => {
        const text = `${HEALTHY}\n${line}\n`;
        assert.throws(
          () => parseClusterNodes(text),
          (err: unknown) => {
            assert.ok(err instanceof Error);
            assert.match(err.message, reason);
            assert.ok(err.message.includes(JSON.stringify(line.slice(0, 120)).slice(0, -1)), `the line is named: ${err.message}`);
            return true;
          },
        );
      });
    }

    it('truncates a long line in the message', () => {
      const line = `${A} 10.0.0.1:7000@17000 master - 0 0 1 connected ${'1 '.repeat(200)}oops`;
      assert.throws(
        () => parseClusterNodes(line),
        (err: unknown) => {
          assert.ok(err instanceof Error);
          assert.match(err.message, /bad slot entry "oops"/);
          assert.ok(err.message.includes(JSON.stringify(`${line.slice(0, 120)}...`)), err.message);
          assert.ok(err.message.length < 250, `message of ${err.message.length} chars`);
          return true;
        },
      );
    });
  });
});

describe('parseClusterNodes on a real redis-server', () => {
  after(() => stopAll());

  it('reads a cluster-enabled node with slots added by ranges and one by one', async () => {
    const redis = await startRedis({ args: ['--cluster-enabled', 'yes', '--cluster-announce-hostname', 'node-a.test'] });
    const raw = await Raw.connect(redis.port);
    try {
      assert.deepEqual(
        await raw.pipeline([
          ['CLUSTER', 'ADDSLOTSRANGE', 0, 100, 200, 300],
          ['CLUSTER', 'ADDSLOTS', 5000],
        ]),
        ['OK', 'OK'],
      );
      const [text, myId] = await raw.pipeline([
        ['CLUSTER', 'NODES'],
        ['CLUSTER', 'MYID'],
      ]);
      assert.equal(typeof text, 'string', `CLUSTER NODES answered ${JSON.stringify(text)}`);
      const nodes = parseClusterNodes(text as string);
      assert.equal(nodes.length, 1, text as string);
      const me = nodes[0]!;
      assert.equal(me.id, myId);
      assert.equal(me.myself, true);
      assert.equal(me.master, true);
      assert.equal(me.replicaOf, null);
      assert.equal(me.connected, true);
      assert.equal(me.failing || me.suspect || me.handshake || me.noaddr, false);
      assert.equal(me.port, redis.port);
      // a node that has met no other does not know its own IP yet (Redis 7.0 prints ':port@cport')
      assert.ok(me.host === '' || me.host === '127.0.0.1', `host ${JSON.stringify(me.host)}`);
      assert.deepEqual(me.slots, [
        [0, 100],
        [200, 300],
        [5000, 5000],
      ]);
      assert.deepEqual(me.migrating, []);
      assert.deepEqual(me.importing, []);
    } finally {
      raw.close();
    }
  });
});
