// Multi-shard behaviour seen through real clients. The server is started with
// max(2, SOCKUDO_SHARDS) shards; several sockets are opened so that the kernel's
// SO_REUSEPORT hashing spreads them over the shards.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SHARDS } from './server.mjs';
import {
  serverSuite, connected, subscribe, nextEvent, waitUntil, sleep,
} from './helpers.mjs';

const ROOM = 'presence-shards';
const PER_USER = 4; // sockets per user

function memberEvents(client, event) {
  return client.__messages.filter((m) => m.event === event && m.channel === ROOM);
}

describe(`presence across shards (${Math.max(2, SHARDS)} shards)`, () => {
  const fx = serverSuite({ shards: Math.max(2, SHARDS) });
  const mk = (presence) => fx.client({ presence });

  const fence = async (list, channel) => {
    const name = `fence-${Math.random().toString(36).slice(2)}`;
    const waits = list.map((c) => nextEvent(c.channel(channel), name));
    await fx.sdk.trigger(channel, name, {});
    await Promise.all(waits);
    await sleep(300);
  };

  it('same user on many sockets and different users are each seen exactly once', async () => {
    const alice = Array.from({ length: PER_USER }, () => mk({ user_id: 'alice', user_info: { n: 'A' } }));
    const bob = Array.from({ length: PER_USER }, () => mk({ user_id: 'bob', user_info: { n: 'B' } }));
    // connect everything first so the sockets spread over the shards
    await Promise.all([...alice, ...bob].map((c) => connected(c)));

    for (const c of alice) await subscribe(c, ROOM);
    for (const c of bob) await subscribe(c, ROOM);
    const all = [...alice, ...bob];
    await fence(all, ROOM);

    for (const c of all) {
      const ch = c.channel(ROOM);
      const ids = [];
      ch.members.each((m) => ids.push(m.id));
      assert.deepEqual(ids.sort(), ['alice', 'bob'], `members seen by a socket`);
      assert.equal(ch.members.count, 2);
    }
    // every alice socket was in the room before bob's first socket: exactly one member_added(bob)
    for (const c of alice) {
      const added = memberEvents(c, 'pusher_internal:member_added').map((m) => m.data.user_id);
      assert.deepEqual(added, ['bob'], 'alice socket: member_added events');
    }
    // bob's sockets joined a room that already had both users (except the first): no member_added
    for (const c of bob) {
      const added = memberEvents(c, 'pusher_internal:member_added').map((m) => m.data.user_id);
      assert.deepEqual(added, [], 'bob socket: member_added events');
    }
    // subscription_succeeded snapshots list each user once
    for (const c of bob) {
      const snap = memberEvents(c, 'pusher_internal:subscription_succeeded')[0].data.presence;
      assert.deepEqual([...snap.ids].sort(), ['alice', 'bob']);
      assert.equal(snap.count, 2);
    }

    // REST sees each user once, and every socket
    const users = await (await fx.sdk.get({ path: `/channels/${ROOM}/users` })).json();
    assert.deepEqual(users.users.map((u) => u.id).sort(), ['alice', 'bob']);
    const info = await (await fx.sdk.get({ path: `/channels/${ROOM}`, params: { info: 'user_count,subscription_count' } })).json();
    assert.deepEqual(info, { occupied: true, user_count: 2, subscription_count: 2 * PER_USER });

    // bob leaves socket by socket: member_removed only after the last one
    for (const c of bob.slice(0, -1)) c.disconnect();
    await fence(alice, ROOM);
    for (const c of alice) {
      assert.deepEqual(memberEvents(c, 'pusher_internal:member_removed'), [], 'member_removed before last bob socket left');
    }
    const removedWaits = alice.map((c) => nextEvent(c.channel(ROOM), 'pusher:member_removed'));
    bob[bob.length - 1].disconnect();
    const removed = await Promise.all(removedWaits);
    for (const r of removed) assert.equal(r.id, 'bob');
    await fence(alice, ROOM);
    for (const c of alice) {
      const rem = memberEvents(c, 'pusher_internal:member_removed').map((m) => m.data.user_id);
      assert.deepEqual(rem, ['bob'], 'exactly one member_removed(bob)');
      assert.equal(c.channel(ROOM).members.count, 1);
    }
    const after = await waitUntil(async () => {
      const u = await (await fx.sdk.get({ path: `/channels/${ROOM}/users` })).json();
      return u.users.length === 1 ? u : null;
    }, 'users endpoint to drop bob');
    assert.deepEqual(after.users, [{ id: 'alice' }]);
  });

  it('public trigger and client events reach sockets on every shard', async () => {
    const n = 8;
    const list = Array.from({ length: n }, () => mk());
    await Promise.all(list.map((c) => connected(c)));
    const chans = [];
    for (const c of list) chans.push(await subscribe(c, 'private-fanout'));
    const waits = chans.map((ch) => nextEvent(ch, 'hello'));
    await fx.sdk.trigger('private-fanout', 'hello', { all: true });
    for (const d of await Promise.all(waits)) assert.deepEqual(d, { all: true });

    // client event from socket 0 reaches the other n-1 sockets
    const cWaits = chans.slice(1).map((ch) => nextEvent(ch, 'client-ping'));
    chans[0].trigger('client-ping', { from: 0 });
    for (const d of await Promise.all(cWaits)) assert.deepEqual(d, { from: 0 });

    const info = await (await fx.sdk.get({ path: '/channels/private-fanout', params: { info: 'subscription_count' } })).json();
    assert.deepEqual(info, { occupied: true, subscription_count: n });
  });
});
