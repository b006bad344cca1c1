// User authentication (pusher-js signin() + SDK authenticateUser), send-to-user
// and terminateUserConnections (`docs/protocol/pusher.md#user-sign-in`,
// `docs/protocol/pusher.md#sending-to-a-user`, `docs/protocol/http-api.md#terminating-user-connections`).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  serverSuite, serverSdk, connected, subscribe, nextEvent, waitUntil, errorCode, sleep,
} from './helpers.mjs';

async function signedIn(client) {
  client.signin();
  await waitUntil(
    () => client.__messages.find((m) => m.event === 'pusher:signin_success'),
    `pusher:signin_success (errors: ${JSON.stringify(client.__errors)})`,
  );
  await waitUntil(() => client.user.user_data, 'pusher-js to accept the user data');
  return client.user.user_data;
}

describe('user authentication', () => {
  const fx = serverSuite();
  const client = (user) => fx.client({ user });

  it('signin() with authenticateUser succeeds and echoes user_data', async () => {
    const user = { id: 'u-signin', user_info: { name: 'Ada' } };
    const c = client(user);
    await connected(c);
    const data = await signedIn(c);
    assert.deepEqual(data, user);
    const frame = c.__messages.find((m) => m.event === 'pusher:signin_success');
    // pusher-js parsed data; user_data must be the exact string the SDK produced.
    assert.equal(frame.data.user_data, JSON.stringify(user));
  });

  it('signin with a bad signature: pusher:error 4009, connection stays open', async () => {
    const bad = serverSdk(fx.server, { secret: 'wrong' });
    const c = fx.client({ sdk: bad, user: { id: 'u-bad' } });
    await connected(c);
    c.signin();
    await waitUntil(
      () => c.__errors.some((e) => e.type === 'PusherError' && errorCode(e) === 4009),
      'pusher:error 4009',
    );
    const err = c.__messages.find((m) => m.event === 'pusher:error');
    assert.equal(err.data.message, 'Authentication error: Connection not authorized for signin.');
    assert.ok(!c.__messages.some((m) => m.event === 'pusher:signin_success'));
    assert.equal(c.connection.state, 'connected');
  });

  it('sendToUser reaches the signed-in user (client.user.bind)', async () => {
    const c = client({ id: 'u-direct' });
    const other = client({ id: 'u-other' });
    await Promise.all([connected(c), connected(other)]);
    await signedIn(c);
    await signedIn(other);
    const got = nextEvent(c.user, 'direct-message');
    const otherGot = [];
    other.user.bind('direct-message', (d) => otherGot.push(d));
    const res = await fx.sdk.sendToUser('u-direct', 'direct-message', { hello: 'you' });
    assert.equal(res.status, 200);
    assert.deepEqual(await got, { hello: 'you' });
    // fence for "other did not get it"
    const otherFence = nextEvent(other.user, 'fence');
    await fx.sdk.sendToUser('u-other', 'fence', {});
    await otherFence;
    assert.equal(otherGot.length, 0);
  });

  it('terminateUserConnections disconnects every socket of that user only', async () => {
    const victim1 = client({ id: 'u-term' });
    const victim2 = client({ id: 'u-term' });
    const bystander = client({ id: 'u-keep' });
    await Promise.all([connected(victim1), connected(victim2), connected(bystander)]);
    await signedIn(victim1);
    await signedIn(victim2);
    await signedIn(bystander);

    const res = await fx.sdk.terminateUserConnections('u-term');
    assert.equal(res.status, 200);

    for (const v of [victim1, victim2]) {
      await waitUntil(
        () => v.__errors.some((e) => errorCode(e) === 4009),
        `error 4009 on the terminated client (errors: ${JSON.stringify(v.__errors)})`,
      );
      // close code 4009 is in 4000-4099 => pusher-js gives up ("refused") instead of reconnecting
      await waitUntil(() => v.connection.state === 'disconnected', 'terminated client to be disconnected');
    }
    const err = victim1.__messages.find((m) => m.event === 'pusher:error');
    assert.equal(err?.data?.message, 'You got disconnected by the app.');

    // the bystander is untouched and still receives events
    assert.equal(bystander.connection.state, 'connected');
    const ch = await subscribe(bystander, 'after-terminate');
    const got = nextEvent(ch, 'still-here');
    await fx.sdk.trigger('after-terminate', 'still-here', 1);
    assert.equal(await got, 1);
    // and the victims did not reconnect behind our back
    await sleep(1500);
    assert.equal(victim1.connection.state, 'disconnected', `states: ${victim1.__states.join(',')}`);
    assert.equal(victim2.connection.state, 'disconnected', `states: ${victim2.__states.join(',')}`);
  });

  it('terminateUserConnections also covers users identified by presence channel_data', async () => {
    const c = fx.client({ presence: { user_id: 'u-presence-term', user_info: {} } });
    await connected(c);
    await subscribe(c, 'presence-term');
    await fx.sdk.terminateUserConnections('u-presence-term');
    await waitUntil(() => c.__errors.some((e) => errorCode(e) === 4009), 'error 4009');
    await waitUntil(() => c.connection.state === 'disconnected', 'disconnected');
  });

  it('terminateUserConnections for a user with no sockets is still 200', async () => {
    const res = await fx.sdk.terminateUserConnections('nobody-at-all');
    assert.equal(res.status, 200);
  });
});
