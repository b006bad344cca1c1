// Helper for the real-client compatibility tests: starts the sockudo binary on
// fresh ports (optionally with a TOML config written to a temp dir), waits for
// GET /up == 200 "OK", and stops it again.
//
// Environment:
//   SOCKUDO_BIN     path of the server binary (default: <repo>/target/release/sockudo)
//   SOCKUDO_SHARDS  shard count passed as --shards (default 1)
//   SOCKUDO_TEST_LOG=1  echo the server's stdout/stderr to this process' stderr

import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(here, '..', '..');
export const SOCKUDO_BIN =
  process.env.SOCKUDO_BIN || path.join(REPO_ROOT, 'target', 'release', 'sockudo');
export const SHARDS = Number.parseInt(process.env.SOCKUDO_SHARDS || '1', 10) || 1;
export const HOST = '127.0.0.1';

export const DEV_APP = Object.freeze({ id: 'app-id', key: 'app-key', secret: 'app-secret' });

// Ports handed out by this process are never handed out again (a stale server
// on a reused port would steal connections through SO_REUSEPORT).
const usedPorts = new Set();

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, HOST, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function freshPort() {
  for (let i = 0; i < 50; i++) {
    const p = await freePort();
    if (!usedPorts.has(p)) {
      usedPorts.add(p);
      return p;
    }
  }
  throw new Error('could not find a fresh free port');
}

// ---------------------------------------------------------------- TOML helpers

function tomlValue(v) {
  if (typeof v === 'string') return JSON.stringify(v); // basic string, JSON escapes are TOML-compatible
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (Array.isArray(v)) {
    if (v.length && typeof v[0] === 'object' && !Array.isArray(v[0])) {
      return '[' + v.map((t) => '{ ' + inlineTable(t) + ' }').join(', ') + ']';
    }
    return '[' + v.map(tomlValue).join(', ') + ']';
  }
  if (v && typeof v === 'object') return '{ ' + inlineTable(v) + ' }';
  throw new Error(`cannot encode ${v} as TOML`);
}

function inlineTable(obj) {
  return Object.entries(obj)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k} = ${tomlValue(v)}`)
    .join(', ');
}

/**
 * Build a TOML config.
 * @param {object} opts
 * @param {object} [opts.server] top-level scalar options (activity_timeout, ...)
 * @param {object[]} [opts.apps] apps with the flat fields of `docs/protocol/pusher.md#app-fields`;
 *   `enabled` defaults to true here (the server defaults it to FALSE).
 */
export function buildToml({ server = {}, apps = [] } = {}) {
  const lines = [];
  for (const [k, v] of Object.entries(server)) {
    if (v !== undefined) lines.push(`${k} = ${tomlValue(v)}`);
  }
  for (const app of apps) {
    lines.push('', '[[app_manager.array.apps]]');
    const full = { enabled: true, ...app };
    for (const [k, v] of Object.entries(full)) {
      if (v !== undefined) lines.push(`${k} = ${tomlValue(v)}`);
    }
  }
  return lines.join('\n') + '\n';
}

/** The dev app (`docs/protocol/pusher.md#development-app`) as an explicit app entry, with overrides. */
export function devApp(overrides = {}) {
  return {
    id: DEV_APP.id,
    key: DEV_APP.key,
    secret: DEV_APP.secret,
    enabled: true,
    enable_client_messages: true,
    enable_user_authentication: true,
    enable_watchlist_events: true,
    max_client_events_per_second: 1000,
    ...overrides,
  };
}

// ---------------------------------------------------------------- server control

async function getUp(port) {
  const ctrl = new AbortController();
  const t = setTimeout(() => ctrl.abort(), 1000);
  try {
    const res = await fetch(`http://${HOST}:${port}/up`, { signal: ctrl.signal });
    const body = await res.text();
    return { status: res.status, body };
  } finally {
    clearTimeout(t);
  }
}

/**
 * Start a sockudo server.
 * @param {object} [opts]
 * @param {string|object} [opts.config] TOML text, or {server, apps} for buildToml
 * @param {number} [opts.shards] overrides SOCKUDO_SHARDS
 * @param {string[]} [opts.extraArgs]
 * @param {object} [opts.env] extra environment variables
 * @param {number} [opts.readyTimeoutMs]
 */
export async function startServer(opts = {}) {
  if (!existsSync(SOCKUDO_BIN)) {
    throw new Error(`sockudo binary not found at ${SOCKUDO_BIN} (set SOCKUDO_BIN or run cargo build --release -p sockudo)`);
  }
  const port = await freshPort();
  const metricsPort = await freshPort();
  const shards = opts.shards ?? SHARDS;
  const args = ['--host', HOST, '--port', String(port), '--shards', String(shards), '--metrics-port', String(metricsPort)];
  const tmp = mkdtempSync(path.join(tmpdir(), 'sockudo-test-'));
  args.push('--data-dir', path.join(tmp, 'data'));
  if (opts.config !== undefined) {
    const text = typeof opts.config === 'string' ? opts.config : buildToml(opts.config);
    const file = path.join(tmp, 'config.toml');
    writeFileSync(file, text);
    args.push('--config', file);
  }
  if (opts.extraArgs) args.push(...opts.extraArgs);

  const child = spawn(SOCKUDO_BIN, args, {
    cwd: tmp,
    // Tests are not throttled (`docs/protocol/http-api.md#rate-limits`); a test that wants the limiter
    // passes opts.env.
    env: { ...process.env, SOCKUDO_SHARDS: String(shards), RATE_LIMITER_ENABLED: 'false', ...(opts.env || {}) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const onData = (chunk) => {
    const s = chunk.toString();
    log += s;
    if (log.length > 200_000) log = log.slice(-100_000);
    if (process.env.SOCKUDO_TEST_LOG === '1') process.stderr.write(`[sockudo:${port}] ${s}`);
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  let exited = null;
  const exitPromise = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
  });

  const server = {
    host: HOST,
    port,
    metricsPort,
    shards,
    pid: child.pid,
    child,
    app: DEV_APP,
    httpUrl: `http://${HOST}:${port}`,
    wsUrl(key = DEV_APP.key, query = 'protocol=7&client=js&version=8.6.0&flash=false') {
      return `ws://${HOST}:${port}/app/${key}?${query}`;
    },
    logs: () => log,
    async stop() {
      if (exited) return exited;
      child.kill('SIGTERM');
      const r = await Promise.race([exitPromise, sleep(3000).then(() => null)]);
      if (!r) {
        child.kill('SIGKILL');
        await exitPromise;
      }
      if (tmp) rmSync(tmp, { recursive: true, force: true });
      return exited;
    },
  };

  const deadline = Date.now() + (opts.readyTimeoutMs ?? 30_000);
  let last = null;
  while (Date.now() < deadline) {
    if (exited) {
      throw new Error(`sockudo exited early (${JSON.stringify(exited)}); args=${args.join(' ')}\n${log}`);
    }
    try {
      last = await getUp(port);
      if (last.status === 200 && last.body.trim() === 'OK') return server;
    } catch (e) {
      last = { error: String(e) };
    }
    await sleep(100);
  }
  await server.stop();
  throw new Error(`sockudo did not become ready on port ${port}: last /up=${JSON.stringify(last)}\n${log}`);
}
