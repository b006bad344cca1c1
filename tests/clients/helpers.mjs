// Shared helpers: pusher-js client factory, server-SDK factory, a per-suite server
// fixture, waiting helpers and a tiny raw WebSocket client (package `ws`) for
// frame-level checks.

import { before, after } from 'node:test';
import PusherJS from 'pusher-js';
import PusherServer from 'pusher';
import WebSocket from 'ws';
import { HOST, DEV_APP, startServer } from './server.mjs';

export { PusherJS, PusherServer, WebSocket };

/** Generous wait for anything that should happen "soon". Never a speed assertion. */
export const WAIT_MS = 10_000;

export const SOCKET_ID_RE = /^\d{1,11}\.\d{1,11}$/;

/** The official Node server SDK pointed at the test server. */
export function serverSdk(server, overrides = {}) {
  return new PusherServer({
    appId: DEV_APP.id,
    key: DEV_APP.key,
    secret: DEV_APP.secret,
    host: HOST,
    port: server.port,
    useTLS: false,
    timeout: 10_000,
    ...overrides,
  });
}

/**
 * A pusher-js client for the test server. Channel authorization and user
 * authentication are done in-process with the server SDK `sdk`.
 * @param {object} server  from startServer
 * @param {object} [o]
 * @param {object} [o.sdk]          server SDK used by the auth handlers
 * @param {object} [o.presence]     presence data {user_id, user_info} for presence channels
 * @param {object} [o.user]         user data {id, user_info?, watchlist?} for signin()
 * @param {string} [o.key]          app key (default app-key)
 */
export function newClient(server, o = {}) {
  const sdk = o.sdk || serverSdk(server);
  const client = new PusherJS(o.key || DEV_APP.key, {
    cluster: 'local', // required by pusher-js 8, unused because wsHost is set
    wsHost: HOST,
    wsPort: server.port,
    wssPort: server.port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, callback) => {
        try {
          const presence = channelName.startsWith('presence-') ? o.presence : undefined;
          callback(null, sdk.authorizeChannel(socketId, channelName, presence));
        } catch (e) {
          callback(e, null);
        }
      },
    },
    userAuthentication: {
      customHandler: ({ socketId }, callback) => {
        try {
          if (!o.user) throw new Error('no user configured for this test client');
          callback(null, sdk.authenticateUser(socketId, o.user));
        } catch (e) {
          callback(e, null);
        }
      },
    },
  });
  // Record every state change, error and decoded frame for later assertions.
  client.__states = [];
  client.__errors = [];
  client.__messages = [];
  client.connection.bind('state_change', (s) => client.__states.push(s.current));
  client.connection.bind('error', (e) => client.__errors.push(e));
  client.connection.bind('message', (m) => client.__messages.push(m));
  return client;
}

/**
 * Call inside a `describe`: starts a server (with `startServer(serverOpts)`) and a server
 * SDK for it before the suite's tests; after them, disconnects every client made with
 * `fx.client()` and stops the server. `fx.server` and `fx.sdk` are set once `before` ran.
 * Hooks the suite registers itself run after this fixture's.
 * @returns {{server: object, sdk: object, clients: object[], client: (o?: object) => object}}
 *   `client(o)` is `newClient(fx.server, { sdk: fx.sdk, ...o })`, disconnected by the fixture.
 */
export function serverSuite(serverOpts) {
  const fx = { server: undefined, sdk: undefined, clients: [] };
  fx.client = (o = {}) => {
    const c = newClient(fx.server, { sdk: fx.sdk, ...o });
    fx.clients.push(c);
    return c;
  };
  before(async () => {
    fx.server = await startServer(serverOpts);
    fx.sdk = serverSdk(fx.server);
  });
  after(async () => {
    disconnectAll(fx.clients);
    await fx.server?.stop();
  });
  return fx;
}

/** Resolve when `pred()` is truthy; reject with `what` after `ms`. */
export async function waitUntil(pred, what = 'condition', ms = WAIT_MS, stepMs = 20) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** Wait for a pusher-js client to reach `connected`; returns its socket_id. */
export async function connected(client, ms = WAIT_MS) {
  if (client.connection.state !== 'connected') {
    await new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        client.connection.unbind('connected', on);
        reject(new Error(`client did not connect within ${ms} ms; states=${client.__states.join(',')} errors=${JSON.stringify(client.__errors)}`));
      }, ms);
      const on = () => {
        clearTimeout(t);
        client.connection.unbind('connected', on);
        resolve();
      };
      client.connection.bind('connected', on);
    });
  }
  return client.connection.socket_id;
}

/** Wait for one event on a channel (or any Dispatcher: channel, client.user, ...). */
export function nextEvent(dispatcher, event, ms = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      dispatcher.unbind(event, on);
      reject(new Error(`timed out after ${ms} ms waiting for '${event}' on ${dispatcher.name || 'dispatcher'}`));
    }, ms);
    const on = (data, meta) => {
      clearTimeout(t);
      dispatcher.unbind(event, on);
      resolve(data === undefined && meta === undefined ? undefined : data);
    };
    dispatcher.bind(event, on);
  });
}

/** Subscribe and wait for pusher:subscription_succeeded (fails fast on subscription_error / pusher:error). */
export async function subscribe(client, name, ms = WAIT_MS) {
  const ch = client.subscribe(name);
  const errorsBefore = client.__errors.length;
  await new Promise((resolve, reject) => {
    const done = (err, v) => {
      clearTimeout(t);
      clearInterval(poll);
      ch.unbind('pusher:subscription_succeeded', ok);
      ch.unbind('pusher:subscription_error', bad);
      err ? reject(err) : resolve(v);
    };
    const ok = (v) => done(null, v);
    const bad = (e) => done(new Error(`subscription_error on ${name}: ${JSON.stringify(e)}`));
    const t = setTimeout(() => done(new Error(`no subscription_succeeded for ${name} within ${ms} ms; errors=${JSON.stringify(client.__errors)}`)), ms);
    const poll = setInterval(() => {
      const errs = client.__errors.slice(errorsBefore).filter((e) => e.type === 'PusherError');
      if (errs.length) done(new Error(`pusher:error while subscribing to ${name}: ${JSON.stringify(errs)}`));
    }, 20);
    if (ch.subscribed) done(null);
    ch.bind('pusher:subscription_succeeded', ok);
    ch.bind('pusher:subscription_error', bad);
  });
  return ch;
}

/** Collect events of one name on a dispatcher. */
export function collect(dispatcher, event) {
  const list = [];
  dispatcher.bind(event, (data) => list.push(data));
  return list;
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Disconnect a list of pusher-js clients (ignores errors). */
export function disconnectAll(clients) {
  for (const c of clients) {
    try {
      c.disconnect();
    } catch {
      /* ignore */
    }
  }
}

/** Error code carried by a pusher-js connection error, whatever its wrapping. */
export function errorCode(e) {
  return e?.data?.code ?? e?.error?.data?.code ?? e?.error?.code ?? null;
}

// ---------------------------------------------------------------- raw WebSocket

/**
 * Open a raw WebSocket and record frames. Resolves once the socket is open.
 * frames: parsed JSON frames (or {raw} if not JSON); close: {code, reason} once closed.
 */
export function rawSocket(url, opts = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, opts);
    const rec = { ws, frames: [], close: null, error: null };
    ws.on('message', (buf) => {
      const s = buf.toString();
      try {
        rec.frames.push(JSON.parse(s));
      } catch {
        rec.frames.push({ raw: s });
      }
    });
    ws.on('close', (code, reason) => {
      rec.close = { code, reason: reason.toString() };
    });
    ws.on('error', (e) => {
      rec.error = e;
      if (ws.readyState !== WebSocket.OPEN) reject(e);
    });
    ws.on('open', () => resolve(rec));
    ws.on('unexpected-response', (_req, res) => {
      reject(new Error(`unexpected HTTP ${res.statusCode} on WebSocket upgrade`));
    });
  });
}
