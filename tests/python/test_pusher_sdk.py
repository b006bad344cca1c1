"""Compatibility of the official `pusher` Python server SDK (pusher-http-python)
with sockudo: events are checked with a raw WebSocket client (websocket-client).
Covers `docs/protocol/pusher.md#envelope-and-data-encoding` and, in `docs/protocol/http-api.md`,
request signing, publishing, batch events, listing channels, channel information and presence
users (`docs/protocol/http-api.md#request-signing` to `docs/protocol/http-api.md#presence-users`).
"""

from __future__ import annotations

import json

import pusher
import pusher.errors
import pytest

from conftest import SHARDS, Server

pytestmark = pytest.mark.timeout(120)


def parsed(frame: dict):
    """HTTP-published events carry `data` as a string
    (`docs/protocol/pusher.md#envelope-and-data-encoding`)."""
    assert isinstance(frame["data"], str), f"data must be a string: {frame!r}"
    return json.loads(frame["data"])


# ------------------------------------------------------------------ trigger


def test_trigger_single_channel(sdk, clients):
    c = clients()
    c.subscribe("py-orders")
    resp = sdk.trigger("py-orders", "order.created", {"id": "ord_1", "n": 1})
    assert isinstance(resp, dict)
    f = c.event("order.created", "py-orders")
    assert f["channel"] == "py-orders"
    assert parsed(f) == {"id": "ord_1", "n": 1}
    # V1 deliveries carry no V2 fields
    for k in ("message_id", "serial", "stream_id", "tags", "extras", "idempotency_key"):
        assert k not in f


def test_trigger_string_data_is_passed_through(sdk, clients):
    c = clients()
    c.subscribe("py-strings")
    sdk.trigger("py-strings", "s", "just text")
    assert c.event("s", "py-strings")["data"] == "just text"


def test_trigger_multi_channel(sdk, clients):
    a, b = clients(), clients()
    a.subscribe("py-multi-a")
    b.subscribe("py-multi-b")
    a.subscribe("py-multi-c")
    sdk.trigger(["py-multi-a", "py-multi-b", "py-multi-c"], "multi", {"k": "v"})
    assert parsed(a.event("multi", "py-multi-a")) == {"k": "v"}
    assert parsed(b.event("multi", "py-multi-b")) == {"k": "v"}
    assert parsed(a.event("multi", "py-multi-c")) == {"k": "v"}


def test_trigger_socket_id_exclusion(sdk, clients):
    a, b = clients(), clients()
    a.subscribe("py-excl")
    b.subscribe("py-excl")
    sdk.trigger("py-excl", "excluded", {"x": 1}, socket_id=a.socket_id)
    assert parsed(b.event("excluded", "py-excl")) == {"x": 1}
    sdk.trigger("py-excl", "fence", {})
    a.event("fence", "py-excl")
    assert not [f for f in a.frames if f.get("event") == "excluded"], "excluded socket got the event"


def test_trigger_batch(sdk, clients):
    c = clients()
    c.subscribe("py-batch-1")
    c.subscribe("py-batch-2")
    resp = sdk.trigger_batch([
        {"channel": "py-batch-1", "name": "seq", "data": {"i": 1}},
        {"channel": "py-batch-2", "name": "other", "data": "x"},
        {"channel": "py-batch-1", "name": "seq", "data": {"i": 2}},
    ])
    assert isinstance(resp, dict)
    assert c.event("other", "py-batch-2")["data"] == "x"
    c.wait_for(lambda f: f.get("event") == "seq" and parsed(f) == {"i": 2}, "second seq event")
    seq = [parsed(f) for f in c.frames if f.get("event") == "seq"]
    assert seq == [{"i": 1}, {"i": 2}]


def test_private_channel_signed_by_sdk(sdk, clients):
    c = clients()
    f = c.subscribe("private-py", sdk=sdk)
    assert f["data"] == "{}" or json.loads(f["data"]) == {}
    sdk.trigger("private-py", "p", {"ok": True})
    assert parsed(c.event("p", "private-py")) == {"ok": True}


def test_private_channel_bad_signature(server, clients):
    bad = server.sdk(secret="wrong-secret")
    c = clients()
    auth = bad.authenticate(channel="private-py-denied", socket_id=c.socket_id)
    c.send("pusher:subscribe", {"channel": "private-py-denied", **auth})
    err = c.event("pusher:error")
    assert err["data"]["code"] == 4009
    assert err["data"]["message"] == "Authentication error: Channel requires authentication"
    assert "channel" not in err
    assert not [f for f in c.frames if f.get("event") == "pusher_internal:subscription_succeeded"]
    # connection stays open
    c.send("pusher:ping", {})
    assert c.event("pusher:pong") == {"event": "pusher:pong"}


# ------------------------------------------------------------------ queries
#
# Note: pusher-http-python signs EVERY request with body_md5, GET included
# (md5 of the empty body, d41d8cd98f00b204e9800998ecf8427e; see pusher/http.py
# Request._generate_auth). A server that rejects body_md5 on GET breaks all of
# the SDK's read calls below.


def test_get_signed_with_empty_body_md5_is_accepted(server):
    """The exact query the Python SDK sends for channels_info(): GET with body_md5."""
    import hashlib
    import hmac
    import time
    import urllib.error
    import urllib.request

    from conftest import APP_ID, APP_KEY, APP_SECRET, HOST

    path = f"/apps/{APP_ID}/channels"
    params = {
        "auth_key": APP_KEY,
        "auth_timestamp": str(int(time.time())),
        "auth_version": "1.0",
        "body_md5": hashlib.md5(b"").hexdigest(),
    }
    qs = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    sig = hmac.new(APP_SECRET.encode(), f"GET\n{path}\n{qs}".encode(), hashlib.sha256).hexdigest()
    url = f"http://{HOST}:{server.port}{path}?{qs}&auth_signature={sig}"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200
            assert "channels" in json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise AssertionError(f"GET with empty-body body_md5 rejected: {e.code} {e.read().decode()}") from None


@pytest.fixture(scope="module")
def populated(server):
    """orders: 2 sockets; presence-py-room: user 42 on 2 sockets, user 7 on 1."""
    from conftest import RawClient

    sdk = server.sdk()
    made = []

    def mk():
        c = RawClient(server.ws_url())
        c.connect()
        made.append(c)
        return c

    for _ in range(2):
        mk().subscribe("py-query-orders")
    for uid, info in (("42", {"name": "Ada"}), ("42", {"name": "Ada"}), ("7", {"name": "Bob"})):
        mk().subscribe("presence-py-room", sdk=sdk, user={"user_id": uid, "user_info": info})
    yield made
    for c in made:
        c.close()


def _poll(fn, pred, what):
    import time

    deadline = time.time() + 10
    last = None
    while time.time() < deadline:
        last = fn()
        if pred(last):
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last={last}")


def test_channels_info(sdk, populated):
    # /channels may be up to 2 s stale on the reference server
    # (`docs/protocol/http-api.md#listing-channels`): poll
    res = _poll(lambda: sdk.channels_info(),
                lambda r: "py-query-orders" in r.get("channels", {}) and "presence-py-room" in r["channels"],
                "both channels listed")
    assert res["channels"]["py-query-orders"] == {}


def test_channels_info_presence_user_count(sdk, populated):
    res = _poll(lambda: sdk.channels_info(prefix_filter="presence-", attributes=["user_count"]),
                lambda r: r.get("channels", {}).get("presence-py-room", {}).get("user_count") == 2,
                "user_count 2")
    assert set(res["channels"]) == {"presence-py-room"}


def test_channels_info_subscription_count(sdk, populated):
    res = _poll(lambda: sdk.channels_info(attributes=["subscription_count"]),
                lambda r: r.get("channels", {}).get("py-query-orders", {}).get("subscription_count") == 2,
                "subscription_count 2")
    assert res["channels"]["presence-py-room"]["subscription_count"] == 3


def test_channel_info(sdk, populated):
    assert sdk.channel_info("py-query-orders", ["subscription_count"]) == {
        "occupied": True, "subscription_count": 2}
    assert sdk.channel_info("presence-py-room", ["user_count", "subscription_count"]) == {
        "occupied": True, "user_count": 2, "subscription_count": 3}
    assert sdk.channel_info("py-nobody-here")["occupied"] is False


def test_channel_info_user_count_on_public_is_400(sdk, populated):
    with pytest.raises(pusher.errors.PusherBadRequest):
        sdk.channel_info("py-query-orders", ["user_count"])


def test_users_info(sdk, populated):
    res = sdk.users_info("presence-py-room")
    assert sorted(u["id"] for u in res["users"]) == ["42", "7"]


def test_users_info_on_public_channel_is_400(sdk, populated):
    with pytest.raises(pusher.errors.PusherBadRequest):
        sdk.users_info("py-query-orders")


# ------------------------------------------------------------------ auth errors


def test_bad_secret_trigger_is_401(server):
    bad = server.sdk(secret="not-the-secret")
    with pytest.raises(pusher.errors.PusherBadAuth) as ei:
        bad.trigger("py-orders", "e", {})
    body = json.loads(str(ei.value))
    assert body["code"] == "auth_failed"
    assert body["status"] == 401


def test_bad_secret_channels_info_is_401(server):
    bad = server.sdk(secret="not-the-secret")
    with pytest.raises(pusher.errors.PusherBadAuth):
        bad.channels_info()


def test_bad_secret_batch_is_401(server):
    bad = server.sdk(secret="not-the-secret")
    with pytest.raises(pusher.errors.PusherBadAuth):
        bad.trigger_batch([{"channel": "a", "name": "b", "data": "c"}])


def test_unknown_key_is_404(server):
    bad = server.sdk(key="no-such-key")
    with pytest.raises(pusher.errors.PusherBadStatus) as ei:
        bad.trigger("py-orders", "e", {})
    assert str(ei.value).startswith("404")


# ------------------------------------------------------------------ WebSocket errors


def test_unknown_app_key_websocket(clients):
    c = clients(key="unknown-key", connect=False)
    c.drain(timeout=3)
    c.wait_for(lambda f: f.get("event") == "pusher:error", "pusher:error", timeout=10)
    assert not [f for f in c.frames if f.get("event") == "pusher:connection_established"]
    err = [f for f in c.frames if f.get("event") == "pusher:error"][0]
    assert err["data"]["code"] == 4001
    if c.closed is None:
        c.drain(timeout=5)
    assert c.closed is not None and c.closed[0] == 4001, f"close={c.closed}"


# ------------------------------------------------------------------ shards


def test_presence_across_shards():
    """Several sockets of two users (spread over >= 2 shards) see each user once."""
    from conftest import RawClient

    s = Server(shards=max(2, SHARDS))
    made = []
    try:
        sdk = s.sdk()
        for uid in ["alice"] * 3 + ["bob"] * 3:
            c = RawClient(s.ws_url())
            c.connect()
            made.append((uid, c))
        snaps = []
        for uid, c in made:
            f = c.subscribe("presence-py-shards", sdk=sdk, user={"user_id": uid, "user_info": {}})
            snaps.append(json.loads(f["data"])["presence"])
        assert snaps[-1]["count"] == 2
        assert sorted(snaps[-1]["ids"]) == ["alice", "bob"]
        assert sorted(u["id"] for u in sdk.users_info("presence-py-shards")["users"]) == ["alice", "bob"]
        assert sdk.channel_info("presence-py-shards", ["user_count", "subscription_count"]) == {
            "occupied": True, "user_count": 2, "subscription_count": 6}
        # fence, then count member_added on alice's sockets: exactly one (bob)
        sdk.trigger("presence-py-shards", "fence", {})
        for uid, c in made:
            c.event("fence", "presence-py-shards")
            c.drain(0.2)
            added = [json.loads(f["data"])["user_id"] for f in c.frames
                     if f.get("event") == "pusher_internal:member_added"]
            assert added == (["bob"] if uid == "alice" else []), f"{uid}: {added}"
    finally:
        for _, c in made:
            c.close()
        s.stop()
