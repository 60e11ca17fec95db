"""The signed bus on a real nats-server: exchange, rejection by reason, NATS permissions."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import nats
import pytest

from meshd import hookimpl
from meshd.envelope import Envelope, Sealer
from meshd.identity import Signer, generate_key, load_private_key
from meshd.natsserver import NatsServer
from meshd.testing import BUILTIN_PLUGINS, LocalFederation, running_daemons, write_federation

pytestmark = pytest.mark.anyio


class Listener:
    """A test plugin: records every verified 'hello' envelope."""

    def __init__(self) -> None:
        self.received: list[Envelope] = []
        self.event = anyio.Event()

    @hookimpl
    async def meshd_startup(self, daemon: Any) -> None:
        async def on_hello(env: Envelope, _msg: Any) -> None:
            self.received.append(env)
            self.event.set()

        await daemon.bus.subscribe("hello", on_hello)


def scrape(daemon: Any) -> dict[tuple[str, str], float]:
    """envelopes_rejected_total by reason, read over the daemon's real /metrics endpoint."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{daemon.http.bound_port}/metrics", timeout=20) as resp:
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "meshd_envelopes_rejected_total":
                out[("rejected", s.labels["reason"])] = s.value
            if s.name == "meshd_envelopes_received_total":
                out[("received", s.labels["kind"])] = s.value
    return out


async def test_two_daemons_exchange_envelopes_and_reject_bad_ones(tmp_path: Path, nats_server: NatsServer) -> None:
    configs = write_federation(tmp_path, ["eu-west-1", "eu-central-1"], nats_server.url)
    async with running_daemons(configs, blocked=BUILTIN_PLUGINS, extra_plugins=[("listener", Listener)]) as ds:
        sender, receiver = ds["eu-west-1"], ds["eu-central-1"]
        listener: Listener = receiver.hooks.pm.get_plugin("listener")
        raw = await nats.connect(nats_server.url)
        captured: list[Any] = []
        captured_event = anyio.Event()

        async def capture(msg: Any) -> None:
            captured.append(msg)
            captured_event.set()

        await raw.subscribe("meshd.test.hello.eu-west-1", cb=capture)
        await raw.flush()

        # 1. A genuine envelope arrives, verified.
        assert await sender.bus.publish("hello", "greeting", {"text": "hi"})
        with anyio.fail_after(30):
            await listener.event.wait()
            await captured_event.wait()
        assert listener.received[0].sender == "eu-west-1" and listener.received[0].body == {"text": "hi"}

        subject = "meshd.test.hello.eu-west-1"
        genuine = captured[0]
        key = load_private_key(sender.config.daemon.identity.private_key)
        forged_payload, forged_headers = Sealer("test", "eu-west-1", Signer(generate_key()), 1).seal("greeting", {})
        other_fed, other_headers = Sealer("other", "eu-west-1", Signer(key), sender.incarnation).seal("greeting", {})
        stale, stale_headers = Sealer("test", "eu-west-1", Signer(key), sender.incarnation + 1,
                                      clock=lambda: 1_000_000.0).seal("greeting", {})
        unsigned = json.dumps({"v": 1, "federation": "test", "sender": "eu-west-1", "incarnation": 1, "seq": 1,
                               "ts": 0.0, "type": "greeting", "body": {}}).encode()
        # 2. Each kind of bad message, straight onto the wire.
        await raw.publish(subject, genuine.data, headers=genuine.headers)  # replay
        await raw.publish(subject, forged_payload, headers=forged_headers)
        await raw.publish(subject, other_fed, headers=other_headers)
        await raw.publish(subject, stale, headers=stale_headers)
        await raw.publish(subject, unsigned)
        await raw.publish(subject, b"\x00\x01 random bytes \xff")
        await raw.publish(subject, b"x" * (300 * 1024))
        await raw.flush()

        want = {"replayed": 1, "forged": 1, "wrong_federation": 1, "stale": 1, "unsigned": 1,
                "undecodable": 1, "oversized": 1}

        async def counted() -> bool:
            # Scraped from another thread: the HTTP server runs on this event loop.
            got = await anyio.to_thread.run_sync(scrape, receiver)
            return all(got.get(("rejected", r), 0) == n for r, n in want.items())

        with anyio.fail_after(30):
            while not await counted():
                await anyio.sleep(0.05)
        # 3. Nothing bad reached the plugin, and the daemon is still serving.
        assert len(listener.received) == 1
        assert receiver.ready and receiver.bus.connected
        await sender.bus.publish("hello", "greeting", {"text": "still there?"})
        with anyio.fail_after(30):
            while len(listener.received) < 2:
                await anyio.sleep(0.02)
        assert (await anyio.to_thread.run_sync(scrape, receiver))[("received", "hello")] == 2
        await raw.close()


async def test_request_reply_is_signed_both_ways(tmp_path: Path, nats_server: NatsServer) -> None:
    configs = write_federation(tmp_path, ["eu-west-1", "us-east-1"], nats_server.url)
    async with running_daemons(configs, blocked=BUILTIN_PLUGINS) as ds:
        a, b = ds["eu-west-1"], ds["us-east-1"]

        async def answer(env: Envelope, msg: Any) -> None:
            await b.bus.reply(msg, "pong", {"n": env.body["n"] + 1})

        await b.bus.subscribe("ping", answer, target="us-east-1")
        reply = await a.bus.request("ping", "ping", {"n": 41}, "us-east-1", timeout=20)
        assert (reply.sender, reply.type, reply.body) == ("us-east-1", "pong", {"n": 42})


async def test_a_region_cannot_publish_as_another(tmp_path: Path) -> None:
    """NATS permissions from `meshd init`: the server refuses a subject naming another sender."""
    fed = LocalFederation(tmp_path, regions=["eu-west-1", "us-east-1"], federation="acme")
    fed.start(daemons=False)
    try:
        url = fed.servers[0].url
        passwords = {r: (fed.dir / "secrets" / f"{r}.nats-password").read_text().strip() for r in fed.regions}
        errors: list[Exception] = []

        async def on_error(exc: Exception) -> None:
            errors.append(exc)

        mallory = await nats.connect(url, user="eu-west-1", password=passwords["eu-west-1"], error_cb=on_error)
        victim = await nats.connect(url, user="us-east-1", password=passwords["us-east-1"],
                                    inbox_prefix="_INBOX.us-east-1")
        seen: list[str] = []

        async def on_msg(msg: Any) -> None:
            seen.append(msg.subject)

        await victim.subscribe("meshd.acme.>", cb=on_msg)
        await victim.flush()
        await mallory.publish("meshd.acme.vote.us-east-1", b"fake vote")   # as another region: refused
        await mallory.publish("meshd.acme.vote.eu-west-1", b"own vote")    # as itself: allowed
        await mallory.flush()
        with anyio.fail_after(30):
            while "meshd.acme.vote.eu-west-1" not in seen or not errors:
                await anyio.sleep(0.02)
        assert "meshd.acme.vote.us-east-1" not in seen
        assert any("permissions violation" in str(e).lower() for e in errors)
        # Nor may it listen to another region's replies.
        await mallory.subscribe("_INBOX.us-east-1.>")
        await mallory.flush()
        with anyio.fail_after(30):
            while not any("subscription" in str(e).lower() for e in errors):
                await anyio.sleep(0.02)
        await mallory.close()
        await victim.close()
    finally:
        fed.stop()


@pytest.mark.parametrize("created", [True, False], ids=["answer-lost", "request-lost"])
async def test_a_bucket_creation_left_unanswered_is_asked_for_again(
        nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch, created: bool) -> None:
    """A young cluster can drop the answer to a bucket's creation (seen once in CI on an R3 bucket);
    the creation is idempotent, so the transport asks again before the caller sees an error."""
    from nats.errors import TimeoutError as NatsTimeout

    from meshd.config import NatsConfig
    from meshd.transport import KV_CREATE_ATTEMPTS, NatsTransport

    t = NatsTransport(NatsConfig(servers=[nats_server.url]), name="eu-west-1")
    await t.connect()
    try:
        real, calls = t._create_bucket, []

        async def lossy(*args: Any) -> None:
            calls.append(args)
            if len(calls) == 1:
                if created:
                    await real(*args)  # the server made it; only its answer went missing
                raise NatsTimeout
            await real(*args)

        monkeypatch.setattr(t, "_create_bucket", lossy)
        kv = await t.key_value(f"lossy_{created}")
        await kv.put("k", b"v")
        entry = await kv.get("k")
        assert entry is not None and entry.value == b"v"
        assert len(calls) == (1 if created else 2)  # a bucket that exists is found, not made twice

        async def silent(*args: Any) -> None:
            calls.append(args)
            raise NatsTimeout

        calls.clear()
        monkeypatch.setattr(t, "_create_bucket", silent)
        with pytest.raises(NatsTimeout):
            await t.key_value(f"never_{created}")
        assert len(calls) == KV_CREATE_ATTEMPTS
    finally:
        await t.close()
