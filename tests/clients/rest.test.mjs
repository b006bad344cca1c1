// REST queries and request authentication through the `pusher` server SDK
// (`docs/protocol/http-api.md#request-signing`, `docs/protocol/http-api.md#error-responses`,
// `docs/protocol/http-api.md#listing-channels`, `docs/protocol/http-api.md#channel-information`,
// `docs/protocol/http-api.md#presence-users`).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './server.mjs';
import {
  serverSuite, serverSdk, connected, subscribe, waitUntil,
} from './helpers.mjs';

describe('channel queries via pusher.get', () => {
  const fx = serverSuite();
  before(async () => {
    // orders: 2 sockets; presence-lobby: users 42 (2 sockets) and 7.
    const mk = (presence) => fx.client({ presence });
    const o1 = mk();
    const o2 = mk();
    const p42a = mk({ user_id: '42', user_info: { name: 'Ada' } });
    const p42b = mk({ user_id: '42', user_info: { name: 'Ada' } });
    const p7 = mk({ user_id: '7', user_info: { name: 'Bob' } });
    await Promise.all(fx.clients.map((c) => connected(c)));
    await subscribe(o1, 'orders');
    await subscribe(o2, 'orders');
    await subscribe(p42a, 'presence-lobby');
    await subscribe(p42b, 'presence-lobby');
    await subscribe(p7, 'presence-lobby');
  });

  const getJson = async (path, params) => {
    const res = await fx.sdk.get({ path, params });
    assert.equal(res.status, 200);
    return res.json();
  };

  it('GET /channels lists the occupied channels', async () => {
    // /channels may be up to 2 s stale on the reference server
    // (`docs/protocol/http-api.md#listing-channels`): poll.
    const body = await waitUntil(async () => {
      const b = await getJson('/channels');
      return b.channels && 'orders' in b.channels && 'presence-lobby' in b.channels ? b : null;
    }, '/channels to list orders and presence-lobby');
    assert.deepEqual(body.channels.orders, {});
    assert.deepEqual(body.channels['presence-lobby'], {});
    assert.ok(!('never-subscribed' in body.channels));
  });

  it('GET /channels?filter_by_prefix=presence-&info=user_count', async () => {
    const body = await waitUntil(async () => {
      const b = await getJson('/channels', { filter_by_prefix: 'presence-', info: 'user_count' });
      return b.channels?.['presence-lobby']?.user_count === 2 ? b : null;
    }, 'presence-lobby user_count 2');
    assert.deepEqual(Object.keys(body.channels), ['presence-lobby']);
    assert.deepEqual(body.channels['presence-lobby'], { user_count: 2 });
  });

  it('GET /channels?info=subscription_count', async () => {
    const body = await waitUntil(async () => {
      const b = await getJson('/channels', { info: 'subscription_count' });
      return b.channels?.orders?.subscription_count === 2 ? b : null;
    }, 'orders subscription_count 2');
    assert.equal(body.channels['presence-lobby'].subscription_count, 3);
  });

  it('GET /channels/orders?info=subscription_count', async () => {
    const body = await getJson('/channels/orders', { info: 'subscription_count' });
    assert.deepEqual(body, { occupied: true, subscription_count: 2 });
  });

  it('GET /channels/NAME for an unoccupied channel', async () => {
    const body = await getJson('/channels/empty-channel');
    assert.equal(body.occupied, false);
  });

  it('GET /channels/presence-lobby?info=user_count,subscription_count', async () => {
    const body = await getJson('/channels/presence-lobby', { info: 'user_count,subscription_count' });
    assert.deepEqual(body, { occupied: true, user_count: 2, subscription_count: 3 });
  });

  it('GET /channels/presence-lobby/users lists each user once', async () => {
    const body = await getJson('/channels/presence-lobby/users');
    const ids = body.users.map((u) => u.id).sort();
    assert.deepEqual(ids, ['42', '7']);
    for (const u of body.users) assert.deepEqual(Object.keys(u), ['id']);
  });

  it('GET /channels/orders/users is a 400 (presence only)', async () => {
    await assert.rejects(fx.sdk.get({ path: '/channels/orders/users' }), (e) => e.status === 400);
  });

  it('GET /channels/orders?info=user_count is a 400', async () => {
    await assert.rejects(
      fx.sdk.get({ path: '/channels/orders', params: { info: 'user_count' } }),
      (e) => e.status === 400,
    );
  });
});

describe('REST authentication via the SDK', () => {
  let server;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server?.stop();
  });

  it('a bad secret gives 401 on trigger', async () => {
    const bad = serverSdk(server, { secret: 'not-the-secret' });
    await assert.rejects(bad.trigger('orders', 'e', {}), (e) => {
      assert.equal(e.name, 'PusherRequestError');
      assert.equal(e.status, 401);
      return true;
    });
  });

  it('a bad secret gives 401 with JSON code auth_failed on GET /channels', async () => {
    const bad = serverSdk(server, { secret: 'not-the-secret' });
    await assert.rejects(bad.get({ path: '/channels' }), (e) => {
      assert.equal(e.status, 401);
      const body = JSON.parse(e.body);
      assert.equal(body.code, 'auth_failed');
      assert.equal(body.status, 401);
      return true;
    });
  });

  it('a bad secret gives 401 on terminateUserConnections and triggerBatch', async () => {
    const bad = serverSdk(server, { secret: 'not-the-secret' });
    await assert.rejects(bad.terminateUserConnections('42'), (e) => e.status === 401);
    await assert.rejects(bad.triggerBatch([{ channel: 'a', name: 'b', data: 'c' }]), (e) => e.status === 401);
  });

  it('an unknown key gives 404 app_not_found', async () => {
    const bad = serverSdk(server, { key: 'no-such-key' });
    await assert.rejects(bad.trigger('orders', 'e', {}), (e) => {
      assert.equal(e.status, 404);
      assert.equal(JSON.parse(e.body).code, 'app_not_found');
      return true;
    });
  });

  it('a valid key used on another app id gives 401', async () => {
    const bad = serverSdk(server, { appId: 'other-app' });
    await assert.rejects(bad.trigger('orders', 'e', {}), (e) => e.status === 401);
  });

  it('the correct secret works (control)', async () => {
    const res = await serverSdk(server).trigger('orders', 'e', {});
    assert.equal(res.status, 200);
  });
});
