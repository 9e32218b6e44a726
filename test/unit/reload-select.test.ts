import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { firstValueFrom, of } from 'rxjs';
import { parseConfig } from '../../src/config/load.js';
import type { ClusterConfig, Config } from '../../src/config/types.js';
import { reloads, type ClusterHost } from '../../src/streams/reload.js';
import { clustersForWorker } from '../../src/streams/workers.js';
import { createLogger } from '../../src/sinks/log.js';

const file = `[[clusters]]
name = "one"
listen_addr = "127.0.0.1:7101"
cache_type = "redis"
thread = 1
servers = ["127.0.0.1:7001"]

[[clusters]]
name = "two"
listen_addr = "127.0.0.1:7102"
cache_type = "redis"
thread = 2
servers = ["127.0.0.1:7002"]
`;

describe('reload in a worker', () => {
  it('starts only the clusters that worker serves (worker 1 skips a thread = 1 cluster)', async () => {
    const started: string[] = [];
    const host: ClusterHost = {
      clusters: () => [],
      want: (_c: Config) => undefined,
      start: async (c: ClusterConfig) => {
        started.push(c.name);
      },
      retire: async () => undefined,
    };
    const load = () => parseConfig(file, 'w.toml');
    const outcome = await firstValueFrom(
      reloads(of({ kind: 'signal', signal: 'SIGHUP' } as const), { file: 'w.toml', host, logger: createLogger('silent'), load, quietMs: 0, select: (c) => clustersForWorker(c, 1) }),
    );
    assert.equal(outcome.result, 'ok');
    assert.deepEqual(started, ['two']);
  });
});
