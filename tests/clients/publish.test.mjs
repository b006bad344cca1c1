// Publishing with the official `pusher` server SDK, received by pusher-js
// (`docs/protocol/http-api.md#publishing-an-event`, `docs/protocol/http-api.md#batch-events`).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  serverSuite, connected, subscribe, nextEvent, collect, waitUntil,
} from './helpers.mjs';

describe('server SDK trigger -> pusher-js', () => {
  const fx = serverSuite();
  const client = () => fx.client();

  it('public channel: trigger delivers the event with object data', async () => {
    const c = client();
    await connected(c);
    const ch = await subscribe(c, 'orders');
    const got = nextEvent(ch, 'order.created');
    const res = await fx.sdk.trigger('orders', 'order.created', { id: 'ord_123', n: 1 });
    assert.equal(res.status, 200);
    await res.json(); // body must be JSON
    assert.deepEqual(await got, { id: 'ord_123', n: 1 });
  });

  it('string data arrives unchanged', async () => {
    const c = client();
    await connected(c);
    const ch = await subscribe(c, 'strings');
    const got = nextEvent(ch, 'msg');
    await fx.sdk.trigger('strings', 'msg', 'hello world');
    assert.equal(await got, 'hello world');
  });

  it('multi-channel trigger reaches every channel', async () => {
    const a = client();
    const b = client();
    await Promise.all([connected(a), connected(b)]);
    const chA = await subscribe(a, 'multi-a');
    const chB = await subscribe(b, 'multi-b');
    const chA2 = await subscribe(a, 'multi-c');
    const gotA = nextEvent(chA, 'multi');
    const gotB = nextEvent(chB, 'multi');
    const gotA2 = nextEvent(chA2, 'multi');
    const res = await fx.sdk.trigger(['multi-a', 'multi-b', 'multi-c'], 'multi', { k: 'v' });
    assert.equal(res.status, 200);
    assert.deepEqual(await gotA, { k: 'v' });
    assert.deepEqual(await gotB, { k: 'v' });
    assert.deepEqual(await gotA2, { k: 'v' });
  });

  it('triggerBatch delivers every item, in order per channel', async () => {
    const c = client();
    await connected(c);
    const ch1 = await subscribe(c, 'batch-1');
    const ch2 = await subscribe(c, 'batch-2');
    const seq = collect(ch1, 'seq');
    const other = nextEvent(ch2, 'other');
    const res = await fx.sdk.triggerBatch([
      { channel: 'batch-1', name: 'seq', data: { i: 1 } },
      { channel: 'batch-2', name: 'other', data: 'x' },
      { channel: 'batch-1', name: 'seq', data: { i: 2 } },
      { channel: 'batch-1', name: 'seq', data: { i: 3 } },
    ]);
    assert.equal(res.status, 200);
    await res.json();
    assert.equal(await other, 'x');
    await waitUntil(() => seq.length >= 3, 'three batch events on batch-1');
    assert.deepEqual(seq, [{ i: 1 }, { i: 2 }, { i: 3 }]);
  });

  it('socket_id exclusion: the excluded socket does not receive, others do', async () => {
    const a = client();
    const b = client();
    const [idA] = await Promise.all([connected(a), connected(b)]);
    const chA = await subscribe(a, 'excl');
    const chB = await subscribe(b, 'excl');
    const aEvents = collect(chA, 'excluded');
    const aFence = nextEvent(chA, 'fence');
    const gotB = nextEvent(chB, 'excluded');
    await fx.sdk.trigger('excl', 'excluded', { x: 1 }, { socket_id: idA });
    assert.deepEqual(await gotB, { x: 1 });
    // Fence: a later event to both; once A has it, A must not have the excluded one.
    await fx.sdk.trigger('excl', 'fence', {});
    await aFence;
    assert.equal(aEvents.length, 0, 'excluded socket received the event');
  });

  it('socket_id exclusion in triggerBatch items', async () => {
    const a = client();
    const b = client();
    const [idA] = await Promise.all([connected(a), connected(b)]);
    const chA = await subscribe(a, 'excl-batch');
    const chB = await subscribe(b, 'excl-batch');
    const aEvents = collect(chA, 'e');
    const aFence = nextEvent(chA, 'fence');
    const gotB = nextEvent(chB, 'e');
    await fx.sdk.triggerBatch([{ channel: 'excl-batch', name: 'e', data: 'd', socket_id: idA }]);
    assert.equal(await gotB, 'd');
    await fx.sdk.trigger('excl-batch', 'fence', {});
    await aFence;
    assert.equal(aEvents.length, 0, 'excluded socket received the batch event');
  });

  it('trigger with info=subscription_count returns per-channel counts', async () => {
    const a = client();
    const b = client();
    await Promise.all([connected(a), connected(b)]);
    await subscribe(a, 'counted');
    await subscribe(b, 'counted');
    const res = await fx.sdk.trigger('counted', 'e', {}, { info: 'subscription_count' });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.channels?.counted?.subscription_count, 2, JSON.stringify(body));
  });

  it('sendToUser is accepted (#server-to-user- channel name)', async () => {
    const res = await fx.sdk.sendToUser('nobody-online', 'evt', { a: 1 });
    assert.equal(res.status, 200);
  });
});
