/**
 * The proxy as a one-node Redis Cluster: CLUSTER SLOTS, SHARDS, NODES, INFO, KEYSLOT and MYID
 * describe a single master, the proxy at its announced address, owning all 16384 slots. A
 * cluster-aware client (ioredis Cluster, node-redis createCluster, redis-cli -c) then sends
 * everything to the proxy and never sees a MOVED: the proxy follows the real cluster's
 * redirects itself.
 */
import type { Resp } from '../protocol/encode.js';
import { keySlot } from '../routing/crc16.js';

export interface ClusterSelf {
  ip: string;
  port: number;
  myId: string;
  /** every slot has an owner behind the proxy */
  ok: boolean;
}

const DISABLED: Resp = { error: 'ERR This instance has cluster support disabled' };
const lower = (b: Buffer | undefined): string => (b === undefined ? '' : b.toString('latin1').toLowerCase());

/** CLUSTER <subcommand> answered about the proxy itself; `self` undefined: standalone mode. */
export function answerCluster(args: readonly Buffer[], self: ClusterSelf | undefined): Resp {
  if (self === undefined) return DISABLED;
  const sub = lower(args[1]);
  switch (sub) {
    case 'slots':
      return [[0, 16383, [self.ip, self.port, self.myId, []]]];
    case 'shards':
      return [
        {
          map: [
            ['slots', [0, 16383]],
            [
              'nodes',
              [
                {
                  map: [
                    ['id', self.myId],
                    ['port', self.port],
                    ['ip', self.ip],
                    ['endpoint', self.ip],
                    ['role', 'master'],
                    ['replication-offset', 0],
                    ['health', self.ok ? 'online' : 'failed'],
                  ],
                },
              ],
            ],
          ],
        },
      ];
    case 'nodes':
      return { verbatim: `${self.myId} ${self.ip}:${self.port}@0 myself,master - 0 0 1 connected 0-16383\n` };
    case 'info':
      return {
        verbatim:
          [
            `cluster_state:${self.ok ? 'ok' : 'fail'}`,
            'cluster_slots_assigned:16384',
            `cluster_slots_ok:${self.ok ? 16384 : 0}`,
            'cluster_slots_pfail:0',
            `cluster_slots_fail:${self.ok ? 0 : 16384}`,
            'cluster_known_nodes:1',
            'cluster_size:1',
            'cluster_current_epoch:1',
            'cluster_my_epoch:1',
            'cluster_stats_messages_sent:0',
            'cluster_stats_messages_received:0',
            'total_cluster_links_buffer_limit_exceeded:0',
          ].join('\r\n') + '\r\n',
      };
    case 'keyslot':
      return keySlot(args[2]);
    case 'myid':
      return self.myId;
    default:
      return { error: `ERR CLUSTER ${sub.toUpperCase()} is not supported by aster-proxy (it shows itself as one node owning every slot)` };
  }
}

/** READONLY, READWRITE and ASKING: accepted in cluster mode (the proxy decides where reads go), refused as by Redis otherwise */
export function answerClusterFlag(self: ClusterSelf | undefined): Resp {
  return self === undefined ? DISABLED : { simple: 'OK' };
}
