// Connection-level compatibility with pusher-js 8 (`docs/protocol/pusher.md#connecting`).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './server.mjs';
import {
  newClient, connected, waitUntil, disconnectAll, errorCode, rawSocket, SOCKET_ID_RE,
} from './helpers.mjs';

describe('pusher-js connection', () => {
  let server;
  const clients = [];
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    disconnectAll(clients);
    await server?.stop();
  });

  it('connects and gets a socket_id of the form <digits>.<digits>', async () => {
    const c = newClient(server);
    clients.push(c);
    const id = await connected(c);
    assert.match(id, SOCKET_ID_RE);
    assert.equal(c.connection.state, 'connected');
  });

  it('two connections get different socket_ids', async () => {
    const a = newClient(server);
    const b = newClient(server);
    clients.push(a, b);
    const [ia, ib] = await Promise.all([connected(a), connected(b)]);
    assert.match(ia, SOCKET_ID_RE);
    assert.match(ib, SOCKET_ID_RE);
    assert.notEqual(ia, ib);
  });

  it('connection_established frame: data is a JSON string with socket_id and activity_timeout 120', async () => {
    const s = await rawSocket(server.wsUrl());
    try {
      await waitUntil(() => s.frames.length >= 1, 'connection_established');
      const f = s.frames[0];
      assert.equal(f.event, 'pusher:connection_established');
      assert.equal(typeof f.data, 'string', 'data must be a JSON-encoded string');
      const d = JSON.parse(f.data);
      assert.match(d.socket_id, SOCKET_ID_RE);
      assert.equal(d.activity_timeout, 120);
    } finally {
      s.ws.terminate();
    }
  });

  it('unknown app key: pusher-js never reaches connected, gets error 4001 and stops', async () => {
    const c = newClient(server, { key: 'unknown-key' });
    clients.push(c);
    await waitUntil(
      () => c.__errors.some((e) => errorCode(e) === 4001),
      `error 4001 (errors so far: ${JSON.stringify(c.__errors)})`,
    );
    // pusher-js treats 4000-4099 as "refused": it disconnects and does not retry.
    await waitUntil(() => c.connection.state === 'disconnected', 'state disconnected');
    assert.ok(!c.__states.includes('connected'), `states: ${c.__states.join(',')}`);
  });

  it('unknown app key (raw socket): pusher:error 4001 then close 4001', async () => {
    const s = await rawSocket(server.wsUrl('unknown-key'));
    await waitUntil(() => s.close, 'server to close the socket');
    assert.ok(
      !s.frames.some((f) => f.event === 'pusher:connection_established'),
      'must not send connection_established',
    );
    const err = s.frames.find((f) => f.event === 'pusher:error');
    assert.ok(err, `expected a pusher:error frame, got ${JSON.stringify(s.frames)}`);
    assert.equal(err.data.code, 4001);
    assert.ok(!('channel' in err), 'pusher:error has no channel key');
    assert.equal(s.close.code, 4001);
  });

  it('ping/pong: {"event":"pusher:ping"} answered by {"event":"pusher:pong"} without data', async () => {
    const s = await rawSocket(server.wsUrl());
    try {
      await waitUntil(() => s.frames.length >= 1, 'connection_established');
      s.ws.send(JSON.stringify({ event: 'pusher:ping', data: {} }));
      await waitUntil(() => s.frames.find((f) => f.event === 'pusher:pong'), 'pusher:pong');
      const pong = s.frames.find((f) => f.event === 'pusher:pong');
      assert.deepEqual(pong, { event: 'pusher:pong' });
    } finally {
      s.ws.terminate();
    }
  });
});

describe('disabled app', () => {
  let server;
  before(async () => {
    server = await startServer({
      config: {
        apps: [
          { id: 'app-id', key: 'app-key', secret: 'app-secret', enabled: true },
          { id: 'off-id', key: 'off-key', secret: 'off-secret', enabled: false },
        ],
      },
    });
  });
  after(async () => {
    await server?.stop();
  });

  it('disabled app key: pusher:error 4003 then close 4003, never connected', async () => {
    const s = await rawSocket(server.wsUrl('off-key'));
    await waitUntil(() => s.close, 'server to close the socket');
    assert.ok(!s.frames.some((f) => f.event === 'pusher:connection_established'));
    const err = s.frames.find((f) => f.event === 'pusher:error');
    assert.ok(err, `expected a pusher:error frame, got ${JSON.stringify(s.frames)}`);
    assert.equal(err.data.code, 4003);
    assert.equal(s.close.code, 4003);
  });

  it('the enabled app in the same config still connects with pusher-js', async () => {
    const c = newClient(server);
    try {
      assert.match(await connected(c), SOCKET_ID_RE);
    } finally {
      c.disconnect();
    }
  });
});
