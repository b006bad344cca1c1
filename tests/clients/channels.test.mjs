// Private / presence channels and client events with pusher-js, authorised in-process by the
// `pusher` server SDK (`docs/protocol/pusher.md#subscribing`,
// `docs/protocol/pusher.md#authorization-signatures`, `docs/protocol/pusher.md#presence-channels`,
// `docs/protocol/pusher.md#client-events`).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  serverSuite, serverSdk, connected, subscribe, nextEvent, collect, waitUntil, errorCode, sleep,
} from './helpers.mjs';

describe('private channels', () => {
  const fx = serverSuite();
  const client = fx.client;

  it('authorizeChannel signature is accepted; events are delivered', async () => {
    const c = client();
    await connected(c);
    const ch = await subscribe(c, 'private-foo');
    const got = nextEvent(ch, 'secret-event');
    await fx.sdk.trigger('private-foo', 'secret-event', { s: 1 });
    assert.deepEqual(await got, { s: 1 });
  });

  it('signature made with the wrong secret: pusher:error 4009, not subscribed, no events', async () => {
    const bad = serverSdk(fx.server, { secret: 'wrong-secret' });
    const c = client({ sdk: bad });
    const good = client();
    await Promise.all([connected(c), connected(good)]);
    const ch = c.subscribe('private-denied');
    const events = collect(ch, 'leak');
    await waitUntil(
      () => c.__errors.some((e) => e.type === 'PusherError' && errorCode(e) === 4009),
      `pusher:error 4009 (errors: ${JSON.stringify(c.__errors)})`,
    );
    const err = c.__messages.find((m) => m.event === 'pusher:error');
    assert.equal(err.data.message, 'Authentication error: Channel requires authentication');
    assert.equal(ch.subscribed, false);
    assert.equal(c.connection.state, 'connected', 'auth errors do not close the connection');
    // A legitimately subscribed socket is the fence for "not delivered".
    const gch = await subscribe(good, 'private-denied');
    const fence = nextEvent(gch, 'leak');
    await fx.sdk.trigger('private-denied', 'leak', { x: 1 });
    await fence;
    await sleep(200);
    assert.equal(events.length, 0, 'unauthorised socket received a private event');
  });

  it('client events: delivered to the other subscriber, not echoed to the sender', async () => {
    const a = client();
    const b = client();
    await Promise.all([connected(a), connected(b)]);
    const chA = await subscribe(a, 'private-chat');
    const chB = await subscribe(b, 'private-chat');
    const echoed = collect(chA, 'client-typing');
    const got = nextEvent(chB, 'client-typing');
    assert.equal(chA.trigger('client-typing', { typing: true }), true);
    assert.deepEqual(await got, { typing: true });
    // B answers; when A has B's answer, A's own event would have arrived before it.
    const reply = nextEvent(chA, 'client-reply');
    chB.trigger('client-reply', { ok: 1 });
    assert.deepEqual(await reply, { ok: 1 });
    // and a server event as a second fence
    const fence = nextEvent(chA, 'fence');
    await fx.sdk.trigger('private-chat', 'fence', {});
    await fence;
    assert.equal(echoed.length, 0, 'sender received its own client event');
  });

  it('private-encrypted channel: SDK-encrypted event is decrypted by pusher-js', async () => {
    const encSdk = serverSdk(fx.server, {
      encryptionMasterKeyBase64: Buffer.alloc(32, 7).toString('base64'),
    });
    const c = client({ sdk: encSdk });
    await connected(c);
    const ch = await subscribe(c, 'private-encrypted-vault');
    const got = nextEvent(ch, 'secret');
    const raw = new Promise((resolve) => {
      c.connection.bind('message', (m) => {
        if (m.event === 'secret') resolve(m);
      });
    });
    await encSdk.trigger('private-encrypted-vault', 'secret', { plain: 'text' });
    assert.deepEqual(await got, { plain: 'text' });
    // on the wire the server relayed the opaque {nonce, ciphertext} payload
    const m = await raw;
    assert.ok(m.data.nonce && m.data.ciphertext, JSON.stringify(m));
  });

  it('cache channel: cache_miss first, then the last published event for a new subscriber', async () => {
    const a = client();
    await connected(a);
    const chA = a.subscribe('cache-news');
    const miss = nextEvent(chA, 'pusher:cache_miss');
    await nextEvent(chA, 'pusher:subscription_succeeded');
    await miss;
    const live = nextEvent(chA, 'update');
    await fx.sdk.trigger('cache-news', 'update', 'x');
    assert.equal(await live, 'x');

    const b = client();
    await connected(b);
    const chB = b.subscribe('cache-news');
    const cached = nextEvent(chB, 'update');
    await nextEvent(chB, 'pusher:subscription_succeeded');
    assert.equal(await cached, 'x');
    assert.ok(!b.__messages.some((m) => m.event === 'pusher:cache_miss'));
  });

  it('client event on a raw frame keeps string data as a string', async () => {
    const a = client();
    const b = client();
    await Promise.all([connected(a), connected(b)]);
    const chA = await subscribe(a, 'private-strings');
    const chB = await subscribe(b, 'private-strings');
    const got = new Promise((resolve) => {
      b.connection.bind('message', (m) => {
        if (m.event === 'client-s') resolve(m);
      });
    });
    chA.trigger('client-s', 'plain text');
    const m = await Promise.race([got, sleep(10_000).then(() => null)]);
    assert.ok(m, 'client event not received');
    assert.equal(m.channel, 'private-strings');
    assert.equal(m.data, 'plain text');
    void chB;
  });
});

describe('presence channels', () => {
  const fx = serverSuite();
  const client = (user_id, user_info) => fx.client({ presence: { user_id, user_info } });

  it('subscription_succeeded members, member_added and member_removed', async () => {
    const a = client('42', { name: 'Ada' });
    const b = client('7', { name: 'Bob' });
    await Promise.all([connected(a), connected(b)]);

    const chA = a.subscribe('presence-room');
    const subA = nextEvent(chA, 'pusher:subscription_succeeded');
    const membersA = await subA;
    assert.equal(membersA.count, 1);
    assert.deepEqual(membersA.me, { id: '42', info: { name: 'Ada' } });

    const added = nextEvent(chA, 'pusher:member_added');
    const chB = b.subscribe('presence-room');
    const membersB = await nextEvent(chB, 'pusher:subscription_succeeded');
    assert.equal(membersB.count, 2);
    const seen = {};
    membersB.each((m) => (seen[m.id] = m.info));
    assert.deepEqual(seen, { 42: { name: 'Ada' }, 7: { name: 'Bob' } });
    assert.deepEqual(membersB.me, { id: '7', info: { name: 'Bob' } });

    assert.deepEqual(await added, { id: '7', info: { name: 'Bob' } });
    assert.equal(chA.members.count, 2);

    // The joiner never receives its own member_added.
    assert.ok(
      !b.__messages.some((m) => m.event === 'pusher_internal:member_added'),
      'joiner received member_added',
    );

    const removed = nextEvent(chA, 'pusher:member_removed');
    b.disconnect();
    assert.deepEqual(await removed, { id: '7', info: { name: 'Bob' } });
    assert.equal(chA.members.count, 1);
  });

  it('subscription_succeeded frame data is a JSON string with ids/hash/count', async () => {
    const a = client('raw-1', { n: 1 });
    await connected(a);
    await subscribe(a, 'presence-rawcheck');
    const frames = [];
    // pusher-js already parsed the data; check the parsed shape at least
    const f = a.__messages.find(
      (m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === 'presence-rawcheck',
    );
    frames.push(f);
    assert.ok(f);
    assert.deepEqual(f.data.presence.ids, ['raw-1']);
    assert.deepEqual(f.data.presence.hash, { 'raw-1': { n: 1 } });
    assert.equal(f.data.presence.count, 1);
  });

  it('client events on a presence channel reach the other member', async () => {
    const a = client('pa', {});
    const b = client('pb', {});
    await Promise.all([connected(a), connected(b)]);
    const chA = await subscribe(a, 'presence-talk');
    const chB = await subscribe(b, 'presence-talk');
    const got = nextEvent(chB, 'client-hello');
    chA.trigger('client-hello', { hi: true });
    assert.deepEqual(await got, { hi: true });
  });

  it('unsubscribe sends member_removed to the remaining member', async () => {
    const a = client('u-stay', {});
    const b = client('u-leave', {});
    await Promise.all([connected(a), connected(b)]);
    const chA = await subscribe(a, 'presence-unsub');
    const added = nextEvent(chA, 'pusher:member_added');
    await subscribe(b, 'presence-unsub');
    await added;
    const removed = nextEvent(chA, 'pusher:member_removed');
    b.unsubscribe('presence-unsub');
    assert.deepEqual(await removed, { id: 'u-leave', info: {} });
  });
});
