// Delta compression (docs/protocol/v2.md#delta-compression) decoded by independent decoders
// from the registry: npm `fossil-delta` and `@ably/vcdiff-decoder`. A 1,000-message ticker is
// published over HTTP; a V2 socket per algorithm reconstructs every message exactly from the
// full frames and deltas it receives, sees a full frame at the configured interval, and after
// `sockudo:delta_sync_error` a full frame next.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyDelta } from 'fossil-delta';
import { decode as vcdiffDecode } from '@ably/vcdiff-decoder';
import { serverSuite, waitUntil, WebSocket } from './helpers.mjs';
import { HOST } from './server.mjs';

const fx = serverSuite();
const TICKS = 1000;
const INTERVAL = 10; // delta_compression.full_message_interval (default)

/** A V2 socket keeping every text frame exactly as received. */
function v2Socket(port) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://${HOST}:${port}/app/app-key?protocol=2`);
    const rec = { ws, raw: [] };
    ws.on('message', (buf) => rec.raw.push(buf.toString()));
    ws.on('error', reject);
    ws.on('open', () => resolve(rec));
  });
}

const send = (rec, frame) => rec.ws.send(JSON.stringify(frame));
const frames = (rec) => rec.raw.map((text) => ({ text, json: JSON.parse(text) }));

/** The message bytes a delta applies to: the frame without its delta markers. */
function withoutMarkers(text) {
  return text.replace(/,"__delta_seq":\d+/, '').replace(/,"__conflation_key":"(?:[^"\\]|\\.)*"/, '');
}

function decoder(algorithm) {
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  if (algorithm === 'fossil') {
    return (base, delta) => dec.decode(Uint8Array.from(applyDelta(enc.encode(base), Buffer.from(delta, 'base64'))));
  }
  return (base, delta) => dec.decode(vcdiffDecode(new Uint8Array(Buffer.from(delta, 'base64')), enc.encode(base)));
}

/** Reconstructs the channel's messages from a socket's frames; checks sequences as it goes. */
function reconstruct(rec, channel, algorithm) {
  const apply = decoder(algorithm);
  const out = [];
  let base = null;
  let lastSeq = null;
  const fullAt = [];
  for (const { text, json } of frames(rec)) {
    if (json.channel !== channel) continue;
    if (json.event === 'tick') {
      assert.equal(typeof json.__delta_seq, 'number', `a full frame in the delta stream: ${text}`);
      if (lastSeq !== null) assert.equal(json.__delta_seq, lastSeq + 1);
      lastSeq = json.__delta_seq;
      fullAt.push(json.__delta_seq);
      base = withoutMarkers(text);
      out.push(base);
    } else if (json.event === 'sockudo:delta') {
      const d = json.data;
      assert.equal(d.event, 'tick');
      assert.equal(d.algorithm, algorithm);
      assert.equal(d.seq, lastSeq + 1, 'sequence numbers follow each other');
      assert.equal(d.base_index, lastSeq, 'the delta applies to the previous frame');
      lastSeq = d.seq;
      base = apply(base, d.delta);
      out.push(base);
    }
  }
  return { messages: out, fullAt };
}

/**
 * Subscribes and waits for a pong sent after the subscribe: its answer means the subscribe's
 * read is over and the subscription's continuity gate released, so the first publish starts
 * the delta stream (frames a gate held go out whole).
 */
async function subscribe(rec, channel, delta) {
  send(rec, { event: 'sockudo:subscribe', data: delta === undefined ? { channel } : { channel, delta } });
  await waitUntil(() => rec.raw.some((t) => t.includes('subscription_succeeded') && t.includes(channel)), 'subscribed');
  send(rec, { event: 'sockudo:ping' });
  await waitUntil(() => rec.raw.some((t) => t.includes('"sockudo:pong"')), 'pong');
}

for (const algorithm of ['fossil', 'xdelta3']) {
  test(`a ${TICKS}-message ticker reconstructs exactly (${algorithm})`, async () => {
    const channel = `ticker-${algorithm}`;
    const plainChannel = channel; // a plain V2 socket on the same channel is the reference
    const delta = await v2Socket(fx.server.port);
    const plain = await v2Socket(fx.server.port);
    try {
      await waitUntil(() => delta.raw.length > 0 && plain.raw.length > 0, 'connection_established');
      await subscribe(delta, channel, { enabled: true, algorithm });
      await subscribe(plain, plainChannel);
      // The per-subscription opt-in is confirmed on the channel.
      const confirm = frames(delta).find((f) => f.json.event === 'sockudo:delta_compression_enabled');
      assert.equal(typeof confirm?.json.message_id, 'string', 'a frame to one V2 socket has a message_id');
      delete confirm.json.message_id;
      assert.deepEqual(confirm.json, {
        event: 'sockudo:delta_compression_enabled', channel,
        data: { enabled: true, algorithm, channel },
      });
      let price = 67000;
      const batch = [];
      for (let i = 0; i < TICKS; i++) {
        price += ((i * 7919) % 21) - 10;
        const data = JSON.stringify({ symbol: 'BTC', price, volume: 1000 + (i % 97), seq: i, venue: 'spot', currency: 'USD' });
        batch.push({ name: 'tick', channel, data });
        if (batch.length === 10) {
          await fx.sdk.triggerBatch(batch.splice(0));
        }
      }
      const count = (rec) => frames(rec).filter((f) => f.json.channel === channel && (f.json.event === 'tick' || f.json.event === 'sockudo:delta')).length;
      await waitUntil(() => count(delta) >= TICKS && count(plain) >= TICKS, `${TICKS} frames each`, 30_000);
      const expected = frames(plain).filter((f) => f.json.event === 'tick').map((f) => f.text);
      const { messages, fullAt } = reconstruct(delta, channel, algorithm);
      assert.equal(messages.length, TICKS);
      for (let i = 0; i < TICKS; i++) assert.equal(messages[i], expected[i], `message ${i}`);
      // Full frames: the first, then after every INTERVAL deltas.
      assert.deepEqual(fullAt.slice(0, 4), [0, INTERVAL + 1, 2 * (INTERVAL + 1), 3 * (INTERVAL + 1)]);
      const deltaBytes = frames(delta).filter((f) => f.json.channel === channel).reduce((n, f) => n + f.text.length, 0);
      const plainBytes = expected.reduce((n, t) => n + t.length, 0);
      console.log(`# ${algorithm}: ${deltaBytes} bytes with deltas, ${plainBytes} without (${(plainBytes / deltaBytes).toFixed(2)}x)`);
      assert.ok(deltaBytes < plainBytes, 'deltas are smaller');

      // A sync error: the next frame of the channel is a full one.
      send(delta, { event: 'sockudo:delta_sync_error', data: { channel } });
      await new Promise((r) => setTimeout(r, 100));
      const before = delta.raw.length;
      await fx.sdk.trigger(channel, 'tick', JSON.stringify({ symbol: 'BTC', price, volume: 1, seq: TICKS, venue: 'spot', currency: 'USD' }));
      await waitUntil(() => delta.raw.length > before, 'the frame after the sync error');
      const next = JSON.parse(delta.raw[before]);
      assert.equal(next.event, 'tick', `a full frame after delta_sync_error: ${delta.raw[before]}`);
      assert.equal(next.__delta_seq, 0, 'the stream starts again');
    } finally {
      delta.ws.close();
      plain.ws.close();
    }
  });
}
