"""Fixtures for the Python real-client compatibility suite.

Starts the sockudo binary on fresh ports (like tests/clients/server.mjs), waits
for GET /up == 200 "OK" and kills it at the end.

Environment:
  SOCKUDO_BIN     server binary (default <repo>/target/release/sockudo)
  SOCKUDO_SHARDS  shard count passed as --shards (default 1)
  SOCKUDO_TEST_LOG=1  print the server log at teardown
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pusher
import pytest
import websocket

REPO_ROOT = Path(__file__).resolve().parents[2]
SOCKUDO_BIN = os.environ.get("SOCKUDO_BIN") or str(REPO_ROOT / "target" / "release" / "sockudo")
SHARDS = int(os.environ.get("SOCKUDO_SHARDS", "1") or "1")
HOST = "127.0.0.1"
# The Python SDK only accepts numeric app ids (pusher/util.py app_id_re), so the
# suite runs against a configured app instead of the dev app `app-id`.
APP_ID, APP_KEY, APP_SECRET = "12345", "py-app-key", "py-app-secret"


def default_config(**app_overrides) -> str:
    app = {
        "id": APP_ID, "key": APP_KEY, "secret": APP_SECRET, "enabled": True,
        "enable_client_messages": True, "enable_user_authentication": True,
        "max_client_events_per_second": 1000, "annotations_enabled": True,
        "presence_history_enabled": True,
    }
    app.update(app_overrides)
    return build_toml(apps=[app])
WAIT = 10.0  # generous wait for events; never a speed assertion

_used_ports: set[int] = set()


def fresh_port() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port not in _used_ports:
            _used_ports.add(port)
            return port
    raise RuntimeError("no fresh free port")


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def build_toml(server: dict | None = None, apps: list[dict] | None = None) -> str:
    lines = [f"{k} = {toml_value(v)}" for k, v in (server or {}).items()]
    for app in apps or []:
        lines += ["", "[[app_manager.array.apps]]"]
        for k, v in {"enabled": True, **app}.items():
            lines.append(f"{k} = {toml_value(v)}")
    return "\n".join(lines) + "\n"


class Server:
    def __init__(self, config: str | None = "default", shards: int | None = None, env: dict | None = None):
        if config == "default":
            config = default_config()
        if not os.path.exists(SOCKUDO_BIN):
            raise RuntimeError(f"sockudo binary not found at {SOCKUDO_BIN}")
        self.port = fresh_port()
        self.metrics_port = fresh_port()
        self.shards = shards or SHARDS
        self.tmp = tempfile.mkdtemp(prefix="sockudo-pytest-")
        self.log_path = os.path.join(self.tmp, "server.log")
        args = [SOCKUDO_BIN, "--host", HOST, "--port", str(self.port),
                "--shards", str(self.shards), "--metrics-port", str(self.metrics_port),
                "--data-dir", os.path.join(self.tmp, "data")]
        if config is not None:
            cfg = os.path.join(self.tmp, "config.toml")
            with open(cfg, "w") as f:
                f.write(config)
            args += ["--config", cfg]
        # Tests are not throttled (`docs/protocol/http-api.md#rate-limits`).
        env = dict(os.environ, SOCKUDO_SHARDS=str(self.shards), RATE_LIMITER_ENABLED="false", **(env or {}))
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, cwd=self.tmp, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._wait_ready(args)

    def logs(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-20000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def _wait_ready(self, args):
        deadline = time.time() + 30
        last = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sockudo exited early ({self.proc.returncode}); args={args}\n{self.logs()}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{self.port}/up", timeout=1) as r:
                    body = r.read().decode()
                    last = (r.status, body)
                    if r.status == 200 and body.strip() == "OK":
                        return
            except Exception as e:  # noqa: BLE001 - not ready yet
                last = repr(e)
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"sockudo not ready on {self.port}: last /up={last}\n{self.logs()}")

    def ws_url(self, key: str = APP_KEY) -> str:
        return f"ws://{HOST}:{self.port}/app/{key}?protocol=7&client=python-test&version=1.0&flash=false"

    def sdk(self, **overrides) -> pusher.Pusher:
        opts = dict(app_id=APP_ID, key=APP_KEY, secret=APP_SECRET, host=HOST,
                    port=self.port, ssl=False, timeout=10)
        opts.update(overrides)
        return pusher.Pusher(**opts)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        if os.environ.get("SOCKUDO_TEST_LOG") == "1":
            print(self.logs())
        shutil.rmtree(self.tmp, ignore_errors=True)


class RawClient:
    """A raw Pusher protocol client over websocket-client; records every frame."""

    def __init__(self, url: str):
        self.ws = websocket.create_connection(url, timeout=WAIT)
        self.frames: list[dict] = []
        self.closed: tuple[int, str] | None = None
        self.socket_id: str | None = None

    def _read_one(self, timeout: float) -> dict | None:
        self.ws.settimeout(timeout)
        try:
            opcode, payload = self.ws.recv_data(control_frame=True)
        except websocket.WebSocketTimeoutException:
            return None
        except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
            if self.closed is None:
                self.closed = (1006, "")
            return None
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raw = payload.encode() if isinstance(payload, str) else bytes(payload)
            code = int.from_bytes(raw[:2], "big") if len(raw) >= 2 else 1005
            self.closed = (code, raw[2:].decode("utf-8", "replace"))
            return None
        if opcode not in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
            return None
        if isinstance(payload, bytes):
            payload = payload.decode("utf-8")
        frame = json.loads(payload)
        self.frames.append(frame)
        return frame

    def wait_for(self, pred, what: str = "frame", timeout: float = WAIT) -> dict:
        for f in self.frames:
            if pred(f):
                return f
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.closed is not None:
                break
            f = self._read_one(max(0.01, deadline - time.time()))
            if f is not None and pred(f):
                return f
        raise AssertionError(f"timed out waiting for {what}; frames={self.frames} closed={self.closed}")

    def event(self, name: str, channel: str | None = None, timeout: float = WAIT) -> dict:
        return self.wait_for(
            lambda f: f.get("event") == name and (channel is None or f.get("channel") == channel),
            f"{name} on {channel}", timeout)

    def drain(self, timeout: float = 0.3):
        """Read whatever arrives within `timeout` seconds."""
        deadline = time.time() + timeout
        while time.time() < deadline and self.closed is None:
            self._read_one(max(0.01, deadline - time.time()))

    def connect(self) -> str:
        f = self.event("pusher:connection_established")
        self.socket_id = json.loads(f["data"])["socket_id"]
        return self.socket_id

    def send(self, event: str, data, channel: str | None = None):
        msg = {"event": event, "data": data}
        if channel is not None:
            msg["channel"] = channel
        self.ws.send(json.dumps(msg))

    def subscribe(self, channel: str, sdk: pusher.Pusher | None = None, user: dict | None = None) -> dict:
        data = {"channel": channel}
        if channel.startswith("private-") or channel.startswith("presence-"):
            assert sdk is not None, "private/presence channels need an SDK to sign"
            data.update(sdk.authenticate(channel=channel, socket_id=self.socket_id, custom_data=user))
        self.send("pusher:subscribe", data)
        return self.event("pusher_internal:subscription_succeeded", channel)

    def close(self):
        try:
            self.ws.close(timeout=1)
        except Exception:  # noqa: BLE001
            pass


@pytest.fixture(scope="module")
def server():
    s = Server()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def sdk(server):
    return server.sdk()


@pytest.fixture
def clients(server):
    """Factory of connected RawClients, all closed at test end."""
    made: list[RawClient] = []

    def make(key: str = APP_KEY, connect: bool = True) -> RawClient:
        c = RawClient(server.ws_url(key))
        made.append(c)
        if connect:
            c.connect()
        return c

    yield make
    for c in made:
        c.close()
