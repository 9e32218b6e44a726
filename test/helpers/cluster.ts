/**
 * A real Redis Cluster for integration tests: redis-server processes on loopback (started with
 * `startRedis`, so stopped by PID and cleaned up like every other test server), wired by hand into
 * a deterministic layout:
 *
 * - masters[i] owns the i-th contiguous share of the 16384 slots, split as `redis-cli --cluster
 *   create` splits them (3 masters: 0-5460, 5461-10922, 10923-16383);
 * - the replicas of masters[i] are `replicasOf(i)` = replicas[i*k .. i*k+k-1] (k = replicasPerMaster;
 *   with k = 1, replicas[i] replicates masters[i]);
 * - every node has a distinct config epoch (its index + 1), so no epoch collision has to be resolved.
 *
 * Nodes run with a short `cluster-node-timeout` (default 1000 ms), `cluster-replica-validity-factor 0`
 * (a replica may always fail over), `cluster-allow-replica-migration no` (replicas stay where they
 * were put), `repl-diskless-sync-delay 0` (a replica syncs at once) and `cluster-announce-ip
 * 127.0.0.1` (every node shows the same address for itself as the others show for it), so
 * failovers and resyncs take a second or two.
 *
 * Worth knowing when testing read_from_slave: Redis 7.0 leaves a replica out of CLUSTER SLOTS while
 * its replication offset is 0 (it synced from a master that never wrote anything). The start makes
 * one write per master so the replicas show, and `repl-ping-replica-period 1` moves the offsets of
 * replicas that join later within a second.
 *
 * "Live" nodes are those whose process runs (`RedisProc.alive`). Every wait has a deadline and its
 * timeout error names what it waited for and what was still wrong at the last look.
 */

import { encodeCmd, Raw, RespErr, type Resp } from './raw-client.js';
import { startRedis, type RedisProc } from './servers.js';

export type { RedisProc } from './servers.js';
export type { Resp } from './raw-client.js';

export const CLUSTER_SLOTS = 16384;
const HOST = '127.0.0.1';
/** one command's reply on a harness connection */
const CALL_TIMEOUT_MS = 5_000;
/** one command's reply while polling inside a wait (the wait's deadline bounds the whole) */
const POLL_CALL_TIMEOUT_MS = 2_000;
const MIGRATE_BATCH = 100;
const MIGRATE_TIMEOUT_MS = 5_000;

type Arg = string | number | Buffer;

/** one entry of CLUSTER SLOTS, addresses as "ip:port" */
export interface SlotRange {
  start: number;
  end: number;
  master: string;
  /** sorted */
  replicas: string[];
}

export interface StartClusterOptions {
  /** default 3 */
  masters?: number;
  /** default 1 */
  replicasPerMaster?: number;
  /** cluster-node-timeout, default 1000 */
  nodeTimeoutMs?: number;
  /** more redis-server arguments for every node; they come last, so they can override ours */
  args?: string[];
  /** budget for the whole start (processes, wiring, health), default 20 000 ms */
  startTimeoutMs?: number;
}

export interface RedisCluster {
  /** masters[i] owns the i-th contiguous third of the slots at start (0-5460, 5461-10922, 10923-16383 for 3 masters) */
  readonly masters: RedisProc[];
  /** replicas[i] replicates masters[i] at start (with replicasPerMaster = 1); in general see replicasOf */
  readonly replicas: RedisProc[];
  /** all of them: masters, then replicas */
  readonly nodes: RedisProc[];
  /** the slot ranges masters[i] owned at start, [start, end] inclusive */
  readonly ranges: Array<[number, number]>;
  /** "127.0.0.1:port" of every node (the seeds a proxy config lists) */
  addrs(): string[];
  /** "127.0.0.1:port" of one node */
  addr(node: RedisProc): string;
  /** a name for messages, after the node's place at start: "masters[1] :40123" */
  label(node: RedisProc): string;
  /** the replicas given to masters[i] at start */
  replicasOf(i: number): RedisProc[];
  /** nodes whose process is running */
  live(): RedisProc[];
  /** the node listening on `port` (or "host:port"), if it belongs to this cluster */
  byAddr(addr: string | number): RedisProc | undefined;
  /** the node id of a node (CLUSTER MYID), cached */
  nodeId(node: RedisProc): Promise<string>;
  /**
   * one command on one node over a cached raw connection (one per node, shared by concurrent
   * callers, replaced when it closes or a reply times out after 5 s); returns the parsed reply
   * (RespErr for errors). For connection state such as ASKING or READONLY that must hold for
   * exactly your next command, prefer your own `Raw` connection.
   */
  call(node: RedisProc, ...args: Arg[]): Promise<Resp>;
  /** several commands written at once on the cached connection; their replies in order */
  pipeline(node: RedisProc, cmds: Arg[][]): Promise<Resp[]>;
  /** slot of a key as Redis computes it (CLUSTER KEYSLOT on a live node) */
  keySlot(key: string | Buffer): Promise<number>;
  /** `viewFrom`'s CLUSTER SLOTS, sorted by start (default: the first live node, masters first) */
  slots(viewFrom?: RedisProc): Promise<SlotRange[]>;
  /** which node (RedisProc) owns `slot` according to `viewFrom`'s CLUSTER SLOTS (default: the first live node, masters first) */
  ownerOf(slot: number, viewFrom?: RedisProc): Promise<RedisProc | undefined>;
  /**
   * waits until every live node says cluster_state:ok, every live replica has master_link_status:up,
   * and all live nodes agree on CLUSTER SLOTS (owners and the replica lists); default 10 s
   */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** slot migration in steps: IMPORTING on `to`, MIGRATING on `from` */
  beginMigration(slot: number, from: RedisProc, to: RedisProc): Promise<void>;
  /**
   * MIGRATE keys of `slot` from `from` to `to` (all keys, or only the given ones), in batches of
   * 100; resolves the number of keys moved (given keys that `from` did not hold are not counted)
   */
  migrateKeys(slot: number, from: RedisProc, to: RedisProc, keys?: Array<string | Buffer>): Promise<number>;
  /**
   * CLUSTER SETSLOT slot NODE <to-id> on `to`, `from` and every other master, then waits until all
   * live nodes agree. Refuses (throws, changing nothing) while `from` still holds keys of the slot:
   * `to` would take the slot and `from` would then drop those keys.
   */
  finishMigration(slot: number, from: RedisProc, to: RedisProc): Promise<void>;
  /** the three steps in order */
  moveSlot(slot: number, from: RedisProc, to: RedisProc): Promise<void>;
  /** CLUSTER SETSLOT slot STABLE on `from` and `to`: the slot stays `from`'s (keys already migrated stay on `to`) */
  abortMigration(slot: number, from: RedisProc, to: RedisProc): Promise<void>;
  /**
   * SIGKILLs masters[i] and resolves once one of its replicas reports role master, owns the slots,
   * and the cluster is healthy again (timeout default 20 s); returns the promoted replica
   */
  killMasterAndWaitFailover(i: number, timeoutMs?: number): Promise<RedisProc>;
  /** stops exactly the processes this harness started (by PID), and closes its connections */
  stop(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// small helpers

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function show(args: readonly Arg[]): string {
  const text = args.map((a) => (Buffer.isBuffer(a) ? a.toString('latin1') : String(a))).join(' ');
  return text.length > 80 ? text.slice(0, 77) + '...' : text;
}

function showReply(reply: Resp): string {
  if (reply instanceof RespErr) return `-${reply.message}`;
  const text = JSON.stringify(reply, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)) ?? String(reply);
  return text.length > 200 ? text.slice(0, 197) + '...' : text;
}

/** "k:v" lines of INFO / CLUSTER INFO */
function fields(reply: Resp, what: string): Map<string, string> {
  if (typeof reply !== 'string') throw new Error(`${what}: unexpected reply ${showReply(reply)}`);
  const out = new Map<string, string>();
  for (const line of reply.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0 && !line.startsWith('#')) out.set(line.slice(0, colon), line.slice(colon + 1));
  }
  return out;
}

/** the ranges `redis-cli --cluster create` gives n masters */
export function slotRanges(n: number): Array<[number, number]> {
  const per = CLUSTER_SLOTS / n;
  const out: Array<[number, number]> = [];
  let first = 0;
  for (let i = 0; i < n; i++) {
    let last = Math.round(per * (i + 1) - 1);
    if (i === n - 1 || last > CLUSTER_SLOTS - 1) last = CLUSTER_SLOTS - 1;
    if (last < first) last = first;
    out.push([first, last]);
    first = last + 1;
  }
  return out;
}

function parseSlots(reply: Resp, what: string): SlotRange[] {
  if (!Array.isArray(reply)) throw new Error(`${what}: CLUSTER SLOTS replied ${showReply(reply)}`);
  const out: SlotRange[] = [];
  for (const entry of reply) {
    if (!Array.isArray(entry) || entry.length < 3) throw new Error(`${what}: bad CLUSTER SLOTS entry ${showReply(entry)}`);
    const [start, end, ...nodes] = entry;
    const addrs = nodes.map((n) => {
      if (!Array.isArray(n) || typeof n[0] !== 'string' || typeof n[1] !== 'number') {
        throw new Error(`${what}: bad CLUSTER SLOTS node ${showReply(n)}`);
      }
      return `${n[0]}:${n[1]}`;
    });
    out.push({ start: Number(start), end: Number(end), master: addrs[0], replicas: addrs.slice(1).sort() });
  }
  return out.sort((a, b) => a.start - b.start);
}

function showSlots(view: SlotRange[]): string {
  return view.map((r) => `${r.start}-${r.end}@${r.master}${r.replicas.length > 0 ? `+[${r.replicas.join(',')}]` : ''}`).join(' ');
}

/**
 * Polls `check` (null: done; a string: what is still wrong) until done; throws after `timeoutMs`
 * with `what` and the last problem seen. A throwing check counts as not done.
 */
async function until(what: string, timeoutMs: number, check: () => Promise<string | null>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let delay = 10;
  let last: string;
  for (let round = 0; ; round++) {
    try {
      const problem = await check();
      if (problem === null) return;
      last = problem;
    } catch (err) {
      last = `error: ${(err as Error).message}`;
    }
    if (Date.now() >= deadline) {
      throw new Error(`cluster: timed out after ${timeoutMs} ms (${round + 1} checks) waiting for ${what}; last: ${last}`);
    }
    await sleep(Math.min(delay, Math.max(1, deadline - Date.now())));
    delay = Math.min(delay * 2, 100);
  }
}

function expectOk(reply: Resp, what: string): void {
  if (reply !== 'OK') throw new Error(`cluster: ${what} replied ${showReply(reply)}`);
}

// ---------------------------------------------------------------------------------------------

class Cluster implements RedisCluster {
  readonly nodes: RedisProc[];
  readonly ranges: Array<[number, number]>;
  private readonly conns = new Map<RedisProc, Promise<Raw>>();
  private readonly ids = new Map<RedisProc, string>();
  private readonly names = new Map<RedisProc, string>();

  constructor(
    readonly masters: RedisProc[],
    readonly replicas: RedisProc[],
    private readonly perMaster: number,
  ) {
    this.nodes = [...masters, ...replicas];
    this.ranges = slotRanges(masters.length);
    masters.forEach((n, i) => this.names.set(n, `masters[${i}] :${n.port}`));
    replicas.forEach((n, i) => this.names.set(n, `replicas[${i}] :${n.port}`));
  }

  addrs(): string[] {
    return this.nodes.map((n) => this.addr(n));
  }

  addr(node: RedisProc): string {
    return `${HOST}:${node.port}`;
  }

  label(node: RedisProc): string {
    return this.names.get(node) ?? `node :${node.port}`;
  }

  replicasOf(i: number): RedisProc[] {
    return this.replicas.slice(i * this.perMaster, (i + 1) * this.perMaster);
  }

  live(): RedisProc[] {
    return this.nodes.filter((n) => n.alive);
  }

  byAddr(addr: string | number): RedisProc | undefined {
    let port: number;
    if (typeof addr === 'number') port = addr;
    else {
      const colon = addr.lastIndexOf(':');
      const host = addr.slice(0, colon);
      if (host !== HOST && host !== '') return undefined;
      port = Number(addr.slice(colon + 1));
    }
    return this.nodes.find((n) => n.port === port);
  }

  private firstLive(): RedisProc {
    const node = this.live()[0];
    if (node === undefined) throw new Error('cluster: no live node');
    return node;
  }

  // --- connections ---------------------------------------------------------------------------

  private connection(node: RedisProc): Promise<Raw> {
    const cached = this.conns.get(node);
    if (cached !== undefined) return cached;
    const conn = Raw.connect(node.port);
    this.conns.set(node, conn);
    conn.then(
      (raw) => void raw.closedP.then(() => this.forget(node, conn)),
      () => this.forget(node, conn),
    );
    return conn;
  }

  private forget(node: RedisProc, conn: Promise<Raw>): void {
    if (this.conns.get(node) === conn) this.conns.delete(node);
  }

  private async drop(node: RedisProc): Promise<void> {
    const conn = this.conns.get(node);
    this.conns.delete(node);
    if (conn !== undefined) (await conn.catch(() => undefined))?.close();
  }

  private async send(node: RedisProc, cmds: Arg[][], timeoutMs: number): Promise<Resp[]> {
    const what = `${this.label(node)} ${show(cmds[0])}${cmds.length > 1 ? ` (+${cmds.length - 1} more)` : ''}`;
    let raw: Raw;
    try {
      raw = await this.connection(node);
    } catch (err) {
      throw new Error(`cluster: ${what}: cannot connect: ${(err as Error).message}`, { cause: err });
    }
    const first = raw.expectMore(cmds.length);
    raw.write(Buffer.concat(cmds.map(encodeCmd)));
    try {
      await raw.waitReplies(first + cmds.length, timeoutMs);
    } catch (err) {
      // the reply alignment of this connection is in doubt now: never reuse it
      await this.drop(node);
      throw new Error(`cluster: ${what}: ${(err as Error).message}`, { cause: err });
    }
    return raw.replies.slice(first, first + cmds.length);
  }

  async call(node: RedisProc, ...args: Arg[]): Promise<Resp> {
    return (await this.send(node, [args], CALL_TIMEOUT_MS))[0];
  }

  pipeline(node: RedisProc, cmds: Arg[][]): Promise<Resp[]> {
    return cmds.length === 0 ? Promise.resolve([]) : this.send(node, cmds, CALL_TIMEOUT_MS);
  }

  private async poll(node: RedisProc, ...args: Arg[]): Promise<Resp> {
    return (await this.send(node, [args], POLL_CALL_TIMEOUT_MS))[0];
  }

  // --- queries -------------------------------------------------------------------------------

  async nodeId(node: RedisProc): Promise<string> {
    const cached = this.ids.get(node);
    if (cached !== undefined) return cached;
    const reply = await this.call(node, 'CLUSTER', 'MYID');
    if (typeof reply !== 'string' || !/^[0-9a-f]{40}$/.test(reply)) {
      throw new Error(`cluster: CLUSTER MYID on ${this.label(node)} replied ${showReply(reply)}`);
    }
    this.ids.set(node, reply);
    return reply;
  }

  async keySlot(key: string | Buffer): Promise<number> {
    const reply = await this.call(this.firstLive(), 'CLUSTER', 'KEYSLOT', key);
    if (typeof reply !== 'number') throw new Error(`cluster: CLUSTER KEYSLOT replied ${showReply(reply)}`);
    return reply;
  }

  async slots(viewFrom: RedisProc = this.firstLive()): Promise<SlotRange[]> {
    return parseSlots(await this.call(viewFrom, 'CLUSTER', 'SLOTS'), this.label(viewFrom));
  }

  async ownerOf(slot: number, viewFrom?: RedisProc): Promise<RedisProc | undefined> {
    const range = (await this.slots(viewFrom)).find((r) => r.start <= slot && slot <= r.end);
    return range === undefined ? undefined : this.byAddr(range.master);
  }

  private async role(node: RedisProc, poll = false): Promise<string> {
    const reply = poll ? await this.poll(node, 'ROLE') : await this.call(node, 'ROLE');
    if (!Array.isArray(reply) || typeof reply[0] !== 'string') {
      throw new Error(`cluster: ROLE on ${this.label(node)} replied ${showReply(reply)}`);
    }
    return reply[0];
  }

  // --- health --------------------------------------------------------------------------------

  /** what is wrong with the cluster right now (null: healthy), and the common CLUSTER SLOTS view */
  private async healthProblem(): Promise<{ problem: string | null; view: SlotRange[] }> {
    const live = this.live();
    if (live.length === 0) return { problem: 'no live node', view: [] };
    const looks = await Promise.all(
      live.map(async (node) => {
        const [clusterInfo, replication, slots] = await Promise.all([
          this.poll(node, 'CLUSTER', 'INFO'),
          this.poll(node, 'INFO', 'replication'),
          this.poll(node, 'CLUSTER', 'SLOTS'),
        ]);
        const name = this.label(node);
        return {
          name,
          info: fields(clusterInfo, `CLUSTER INFO on ${name}`),
          replication: fields(replication, `INFO replication on ${name}`),
          view: parseSlots(slots, name),
        };
      }),
    );
    for (const look of looks) {
      const state = look.info.get('cluster_state');
      if (state !== 'ok') return { problem: `${look.name} says cluster_state:${state}`, view: [] };
      if (look.replication.get('role') === 'slave') {
        const link = look.replication.get('master_link_status');
        if (link !== 'up') return { problem: `${look.name} (replica) has master_link_status:${link}`, view: [] };
      }
    }
    const reference = showSlots(looks[0].view);
    for (const look of looks.slice(1)) {
      const view = showSlots(look.view);
      if (view !== reference) {
        return { problem: `${looks[0].name} sees CLUSTER SLOTS ${reference} but ${look.name} sees ${view}`, view: [] };
      }
    }
    return { problem: null, view: looks[0].view };
  }

  waitHealthy(timeoutMs = 10_000): Promise<void> {
    return until('a healthy cluster (cluster_state:ok, replicas linked, one CLUSTER SLOTS view)', timeoutMs, async () => {
      return (await this.healthProblem()).problem;
    });
  }

  /** healthy, and the view is the layout made at start */
  async waitLayout(timeoutMs: number): Promise<void> {
    const expected: SlotRange[] = this.masters.map((m, i) => ({
      start: this.ranges[i][0],
      end: this.ranges[i][1],
      master: this.addr(m),
      replicas: this.replicasOf(i).map((r) => this.addr(r)).sort(),
    }));
    await until(`the start layout ${showSlots(expected)} on a healthy cluster`, timeoutMs, async () => {
      const { problem, view } = await this.healthProblem();
      if (problem !== null) return problem;
      return showSlots(view) === showSlots(expected) ? null : `every node sees ${showSlots(view)}`;
    });
  }

  // --- wiring (start) ------------------------------------------------------------------------

  async wire(deadline: number): Promise<void> {
    const left = (): number => Math.max(1, deadline - Date.now());
    // distinct config epochs before the nodes meet (allowed only while a node knows no other)
    await Promise.all(
      this.nodes.map(async (node, i) => expectOk(await this.call(node, 'CLUSTER', 'SET-CONFIG-EPOCH', i + 1), `CLUSTER SET-CONFIG-EPOCH ${i + 1} on ${this.label(node)}`)),
    );
    await Promise.all(
      this.masters.map(async (node, i) => {
        const [start, end] = this.ranges[i];
        expectOk(await this.call(node, 'CLUSTER', 'ADDSLOTSRANGE', start, end), `CLUSTER ADDSLOTSRANGE ${start} ${end} on ${this.label(node)}`);
      }),
    );
    const ids = await Promise.all(this.nodes.map((n) => this.nodeId(n)));
    const hub = this.nodes[0];
    await Promise.all(
      this.nodes.slice(1).map(async (node) => {
        expectOk(await this.call(node, 'CLUSTER', 'MEET', HOST, hub.port), `CLUSTER MEET ${HOST} ${hub.port} on ${this.label(node)}`);
      }),
    );
    await until(`every node to know all ${this.nodes.length} nodes (CLUSTER NODES, no handshake)`, left(), async () => {
      for (const node of this.nodes) {
        const reply = await this.poll(node, 'CLUSTER', 'NODES');
        if (typeof reply !== 'string') return `CLUSTER NODES on ${this.label(node)} replied ${showReply(reply)}`;
        const known = new Map<string, { flags: string[]; link: string }>();
        for (const line of reply.split('\n')) {
          const parts = line.trim().split(' ');
          if (parts.length >= 8) known.set(parts[0], { flags: parts[2].split(','), link: parts[7] });
        }
        for (const id of ids) {
          const seen = known.get(id);
          if (seen === undefined) return `${this.label(node)} does not know ${id} yet`;
          const bad = seen.flags.some((f) => f === 'handshake' || f === 'noaddr' || f === 'fail' || f === 'fail?');
          if (bad || seen.link !== 'connected') return `${this.label(node)} sees ${id} as ${seen.flags.join(',')} ${seen.link}`;
        }
      }
      return null;
    });
    await Promise.all(
      this.masters.flatMap((master, i) =>
        this.replicasOf(i).map(async (replica) => {
          const id = await this.nodeId(master);
          expectOk(await this.call(replica, 'CLUSTER', 'REPLICATE', id), `CLUSTER REPLICATE ${id} on ${this.label(replica)}`);
        }),
      ),
    );
    await until('every replica to report master_link_status:up', left(), async () => {
      for (const replica of this.replicas) {
        const link = fields(await this.poll(replica, 'INFO', 'replication'), this.label(replica)).get('master_link_status');
        if (link !== 'up') return `${this.label(replica)} has master_link_status:${link}`;
      }
      return null;
    });
    // Redis 7.0 leaves a replica out of CLUSTER SLOTS while its replication offset is 0, which it
    // is after syncing with a master that never wrote anything: one write (a FLUSHALL of the empty
    // dataset, always propagated) moves every offset on
    await Promise.all(
      this.masters.filter((_m, i) => this.replicasOf(i).length > 0).map(async (m) => expectOk(await this.call(m, 'FLUSHALL'), `FLUSHALL on ${this.label(m)}`)),
    );
    await this.waitLayout(left());
  }

  // --- slot migration ------------------------------------------------------------------------

  async beginMigration(slot: number, from: RedisProc, to: RedisProc): Promise<void> {
    const [fromId, toId] = await Promise.all([this.nodeId(from), this.nodeId(to)]);
    expectOk(await this.call(to, 'CLUSTER', 'SETSLOT', slot, 'IMPORTING', fromId), `CLUSTER SETSLOT ${slot} IMPORTING on ${this.label(to)}`);
    expectOk(await this.call(from, 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', toId), `CLUSTER SETSLOT ${slot} MIGRATING on ${this.label(from)}`);
  }

  async migrateKeys(slot: number, from: RedisProc, to: RedisProc, keys?: Array<string | Buffer>): Promise<number> {
    const what = `MIGRATE of slot ${slot} from ${this.label(from)} to ${this.label(to)}`;
    let moved = 0;
    if (keys !== undefined) {
      // one MIGRATE per key (pipelined by batch), so keys `from` did not hold are counted out
      for (let i = 0; i < keys.length; i += MIGRATE_BATCH) {
        const batch = keys.slice(i, i + MIGRATE_BATCH);
        const replies = await this.pipeline(
          from,
          batch.map((key) => ['MIGRATE', HOST, to.port, key, 0, MIGRATE_TIMEOUT_MS]),
        );
        replies.forEach((reply, j) => {
          if (reply === 'OK') moved++;
          else if (reply !== 'NOKEY') throw new Error(`cluster: ${what}: key ${show([batch[j]])} replied ${showReply(reply)}`);
        });
      }
      return moved;
    }
    const count = await this.call(from, 'CLUSTER', 'COUNTKEYSINSLOT', slot);
    if (typeof count !== 'number') throw new Error(`cluster: CLUSTER COUNTKEYSINSLOT ${slot} on ${this.label(from)} replied ${showReply(count)}`);
    const maxRounds = Math.ceil(count / MIGRATE_BATCH) + 10;
    for (let round = 0; round < maxRounds; round++) {
      const batch = await this.call(from, 'CLUSTER', 'GETKEYSINSLOT', slot, MIGRATE_BATCH);
      if (!Array.isArray(batch)) throw new Error(`cluster: CLUSTER GETKEYSINSLOT on ${this.label(from)} replied ${showReply(batch)}`);
      if (batch.length === 0) return moved;
      const reply = await this.call(from, 'MIGRATE', HOST, to.port, '', 0, MIGRATE_TIMEOUT_MS, 'KEYS', ...(batch as string[]));
      if (reply === 'OK') moved += batch.length;
      else if (reply !== 'NOKEY') throw new Error(`cluster: ${what}: replied ${showReply(reply)}`);
    }
    throw new Error(`cluster: ${what}: keys still left after ${maxRounds} batches (someone keeps writing to the slot?)`);
  }

  async finishMigration(slot: number, from: RedisProc, to: RedisProc): Promise<void> {
    const toId = await this.nodeId(to);
    const left = await this.call(from, 'CLUSTER', 'COUNTKEYSINSLOT', slot);
    if (left !== 0) {
      const count = typeof left === 'number' ? `${left} key${left === 1 ? '' : 's'}` : `(COUNTKEYSINSLOT: ${showReply(left)})`;
      throw new Error(`cluster: cannot finish the migration of slot ${slot}: ${this.label(from)} still holds ${count} of it`);
    }
    const setslot = async (node: RedisProc): Promise<void> =>
      expectOk(await this.call(node, 'CLUSTER', 'SETSLOT', slot, 'NODE', toId), `CLUSTER SETSLOT ${slot} NODE ${toId} on ${this.label(node)}`);
    await setslot(to); // first, so that its config epoch goes up before anyone else hears of it
    await setslot(from);
    const others = this.live().filter((n) => n !== to && n !== from);
    const roles = await Promise.all(others.map((n) => this.role(n)));
    await Promise.all(others.filter((_n, i) => roles[i] === 'master').map(setslot));
    await until(`every live node to see slot ${slot} owned by ${this.label(to)}`, 10_000, async () => {
      for (const node of this.live()) {
        const view = parseSlots(await this.poll(node, 'CLUSTER', 'SLOTS'), this.label(node));
        const owner = view.find((r) => r.start <= slot && slot <= r.end)?.master;
        if (owner !== this.addr(to)) return `${this.label(node)} says ${owner ?? 'nobody'}`;
      }
      return null;
    });
  }

  async moveSlot(slot: number, from: RedisProc, to: RedisProc): Promise<void> {
    await this.beginMigration(slot, from, to);
    await this.migrateKeys(slot, from, to);
    await this.finishMigration(slot, from, to);
  }

  async abortMigration(slot: number, from: RedisProc, to: RedisProc): Promise<void> {
    expectOk(await this.call(to, 'CLUSTER', 'SETSLOT', slot, 'STABLE'), `CLUSTER SETSLOT ${slot} STABLE on ${this.label(to)}`);
    expectOk(await this.call(from, 'CLUSTER', 'SETSLOT', slot, 'STABLE'), `CLUSTER SETSLOT ${slot} STABLE on ${this.label(from)}`);
  }

  // --- failover ------------------------------------------------------------------------------

  async killMasterAndWaitFailover(i: number, timeoutMs = 20_000): Promise<RedisProc> {
    const master = this.masters[i];
    if (master === undefined) throw new Error(`cluster: there is no masters[${i}]`);
    if (!master.alive) throw new Error(`cluster: ${this.label(master)} is not running`);
    const candidates = this.replicasOf(i).filter((r) => r.alive);
    if (candidates.length === 0) throw new Error(`cluster: ${this.label(master)} has no live replica to fail over to`);
    const deadline = Date.now() + timeoutMs;
    const left = (): number => Math.max(1, deadline - Date.now());
    master.kill('SIGKILL');
    await until(`${this.label(master)} (pid ${master.pid}) to exit after SIGKILL`, Math.min(left(), 5_000), async () =>
      master.alive ? 'still running' : null,
    );
    await this.drop(master);
    let promoted: RedisProc | undefined;
    await until(`a replica of ${this.label(master)} (${candidates.map((c) => this.label(c)).join(', ')}) to report role master`, left(), async () => {
      for (const candidate of candidates) {
        if (candidate.alive && (await this.role(candidate, true)) === 'master') {
          promoted = candidate;
          return null;
        }
      }
      return 'no replica is master yet';
    });
    const winner = promoted!;
    const [start] = this.ranges[i];
    await until(`a healthy cluster with ${this.label(winner)} owning slot ${start} (the slots of ${this.label(master)})`, left(), async () => {
      const { problem, view } = await this.healthProblem();
      if (problem !== null) return problem;
      const owner = view.find((r) => r.start <= start && start <= r.end)?.master;
      return owner === this.addr(winner) ? null : `slot ${start} is owned by ${owner ?? 'nobody'}`;
    });
    return winner;
  }

  // --- stop ----------------------------------------------------------------------------------

  async stop(): Promise<void> {
    await Promise.all([...this.conns.keys()].map((node) => this.drop(node)));
    await Promise.all(this.nodes.map((node) => node.stop()));
  }
}

/**
 * Starts a cluster with the deterministic layout described at the top of this file; resolves once
 * every node says cluster_state:ok, every replica is linked, and all nodes see that layout in
 * CLUSTER SLOTS. If any step fails, every process started so far is stopped and the error rethrown.
 */
export async function startCluster(opts: StartClusterOptions = {}): Promise<RedisCluster> {
  const masterCount = opts.masters ?? 3;
  const perMaster = opts.replicasPerMaster ?? 1;
  const nodeTimeoutMs = opts.nodeTimeoutMs ?? 1_000;
  const startTimeoutMs = opts.startTimeoutMs ?? 20_000;
  if (!Number.isInteger(masterCount) || masterCount < 1 || masterCount > 64) throw new Error(`startCluster: masters must be 1..64, got ${masterCount}`);
  if (!Number.isInteger(perMaster) || perMaster < 0 || perMaster > 8) throw new Error(`startCluster: replicasPerMaster must be 0..8, got ${perMaster}`);
  const deadline = Date.now() + startTimeoutMs;
  const args = [
    '--cluster-enabled', 'yes',
    '--cluster-config-file', 'nodes.conf', // relative to the node's own temp dir (its cwd and dir)
    '--cluster-node-timeout', String(nodeTimeoutMs),
    '--cluster-replica-validity-factor', '0',
    '--cluster-allow-replica-migration', 'no',
    '--cluster-allow-reads-when-down', 'no',
    '--cluster-require-full-coverage', 'yes',
    '--cluster-announce-ip', HOST, // else a node that was never sent a MEET shows itself as ":port"
    '--repl-diskless-sync-delay', '0',
    '--repl-ping-replica-period', '1',
    '--appendonly', 'no',
    '--save', '',
    ...(opts.args ?? []),
  ];
  const total = masterCount * (1 + perMaster);
  const started = await Promise.allSettled(Array.from({ length: total }, () => startRedis({ args })));
  const nodes = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed !== undefined) {
    await Promise.all(nodes.map((n) => n.stop()));
    throw failed.reason;
  }
  const cluster = new Cluster(nodes.slice(0, masterCount), nodes.slice(masterCount), perMaster);
  try {
    await cluster.wire(deadline);
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}
