// Several nodes over one Redis (README "Run several nodes"), seen through the real clients:
// pusher-js sockets on two nodes share one presence channel (each client's `members` and `me`,
// one member event per user however many nodes hold its sockets), and the pusher server SDK,
// pointed at either node, reaches sockets on both and reads the same channel state from both.
// The server semantics themselves are tested once, in tests/e2e/tests/backplane.rs.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { startServer, freePort, HOST } from './server.mjs';
import {
  newClient, serverSdk, connected, subscribe, nextEvent, waitUntil, sleep, disconnectAll,
} from './helpers.mjs';

const ROOM = 'presence-cluster';

/** A redis-server of its own on a free port, without persistence. */
async function startRedis() {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
  });
  await waitUntil(
    () => new Promise((resolve) => {
      const s = net.connect(port, HOST, () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    }),
    'redis-server to accept connections',
  );
  return { port, stop: () => child.kill('SIGKILL') };
}

describe('two nodes over Redis, through pusher-js and the server SDK', () => {
  const fx = { redis: undefined, nodes: [], sdks: [], clients: [] };
  const client = (node, o = {}) => {
    const c = newClient(fx.nodes[node], { sdk: fx.sdks[node], ...o });
    fx.clients.push(c);
    return c;
  };
  const memberEvents = (c, event) => c.__messages.filter((m) => m.event === event && m.channel === ROOM);
  // Every listed client has what was triggered before this (through node 1's SDK).
  const fence = async (list, channel) => {
    const name = `fence-${Math.random().toString(36).slice(2)}`;
    const waits = list.map((c) => nextEvent(c.channel(channel), name));
    await fx.sdks[1].trigger(channel, name, {});
    await Promise.all(waits);
    await sleep(300);
  };
  const users = async (sdk) => (await (await sdk.get({ path: `/channels/${ROOM}/users` })).json()).users.map((u) => u.id).sort();

  before(async () => {
    fx.redis = await startRedis();
    const env = {
      ADAPTER_DRIVER: 'redis',
      REDIS_URL: `redis://${HOST}:${fx.redis.port}`,
      ADAPTER_REDIS_PREFIX: `clients-${fx.redis.port}:`,
    };
    for (let i = 0; i < 2; i++) {
      const node = await startServer({ env });
      await waitUntil(async () => (await fetch(`${node.httpUrl}/up`)).headers.get('x-backplane') === 'connected', 'node to reach Redis');
      fx.nodes.push(node);
      fx.sdks.push(serverSdk(node));
    }
  });
  after(async () => {
    disconnectAll(fx.clients);
    for (const node of fx.nodes) await node.stop();
    fx.redis?.stop();
  });

  it('a user is one member however many nodes hold its sockets', async () => {
    const alice = client(0, { presence: { user_id: 'alice', user_info: { n: 'A' } } });
    const bobs = [client(1, { presence: { user_id: 'bob', user_info: { n: 'B' } } }),
      client(0, { presence: { user_id: 'bob', user_info: { n: 'B' } } })];
    await Promise.all([alice, ...bobs].map((c) => connected(c)));
    await subscribe(alice, ROOM);
    for (const c of bobs) await subscribe(c, ROOM);
    await fence([alice, ...bobs], ROOM);

    for (const [c, me] of [[alice, 'alice'], [bobs[0], 'bob'], [bobs[1], 'bob']]) {
      const ch = c.channel(ROOM);
      const ids = [];
      ch.members.each((m) => ids.push(m.id));
      assert.deepEqual(ids.sort(), ['alice', 'bob'], `members as ${me}'s client sees them`);
      assert.equal(ch.members.count, 2);
      assert.equal(ch.members.me.id, me);
    }
    assert.deepEqual(alice.channel(ROOM).members.get('bob').info, { n: 'B' });
    const added = memberEvents(alice, 'pusher_internal:member_added').map((m) => m.data.user_id);
    assert.deepEqual(added, ['bob'], 'one member_added for bob, whose sockets are on both nodes');
    for (const sdk of fx.sdks) assert.deepEqual(await users(sdk), ['alice', 'bob']);

    bobs[0].disconnect();
    await fence([alice], ROOM);
    assert.deepEqual(memberEvents(alice, 'pusher_internal:member_removed'), [], 'bob is still on node 0');
    const removed = nextEvent(alice.channel(ROOM), 'pusher:member_removed');
    bobs[1].disconnect();
    assert.equal((await removed).id, 'bob');
    assert.equal(alice.channel(ROOM).members.count, 1);
    for (const sdk of fx.sdks) {
      await waitUntil(async () => (await users(sdk)).join() === 'alice', 'every node to list alice alone');
    }
  });

  it('the server SDK on either node reaches sockets on both, and client events cross nodes', async () => {
    const a = client(0);
    const b = client(1);
    await Promise.all([a, b].map((c) => connected(c)));
    const chans = [await subscribe(a, 'private-orders'), await subscribe(b, 'private-orders')];
    for (const [i, sdk] of fx.sdks.entries()) {
      const waits = chans.map((ch) => nextEvent(ch, 'placed'));
      await sdk.trigger('private-orders', 'placed', { via: i });
      for (const d of await Promise.all(waits)) assert.deepEqual(d, { via: i });
    }
    const ping = nextEvent(chans[1], 'client-ping');
    chans[0].trigger('client-ping', { from: 'node 0' });
    assert.deepEqual(await ping, { from: 'node 0' });
    for (const sdk of fx.sdks) {
      await waitUntil(async () => {
        const info = await (await sdk.get({ path: '/channels/private-orders', params: { info: 'subscription_count' } })).json();
        return info.subscription_count === 2;
      }, 'every node to count both subscriptions');
    }
  });
});
