"""The Transport / KeyValueStore contract, checked on the in-memory fake and on real NATS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from meshd.config import NatsConfig
from meshd.memtransport import MemoryNetwork, subject_matches
from meshd.natsserver import NatsServer
from meshd.transport import (
    KeyExists,
    Message,
    NatsTransport,
    RequestTimeout,
    RevisionMismatch,
    Transport,
    TransportError,
    round_trip,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", "nats"])
async def pair(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Transport, Transport]]:
    """Two connected transports of one kind."""
    if request.param == "memory":
        net = MemoryNetwork()
        a, b = net.transport("a"), net.transport("b")
        server = None
    else:
        server = NatsServer(tmp_path / "nats").start()
        config = NatsConfig(servers=[server.url])
        a, b = NatsTransport(config, name="a"), NatsTransport(config, name="b")
    await a.connect()
    await b.connect()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()
        if server:
            server.stop()


async def test_publish_reaches_wildcard_subscribers(pair: tuple[Transport, Transport]) -> None:
    a, b = pair
    got: list[Message] = []
    done = anyio.Event()

    async def handler(msg: Message) -> None:
        got.append(msg)
        if len(got) == 2:
            done.set()

    await b.subscribe("meshd.f.*.a", handler)
    await a.publish("meshd.f.x.a", b"1", {"H": "v"})
    await a.publish("meshd.f.x.other", b"ignored")
    await a.publish("meshd.f.y.a", b"2")
    with anyio.fail_after(20):
        await done.wait()
    assert [m.data for m in got] == [b"1", b"2"]
    assert got[0].headers == {"H": "v"} and got[0].subject == "meshd.f.x.a"


async def test_request_reply_and_timeout(pair: tuple[Transport, Transport]) -> None:
    a, b = pair

    async def echo(msg: Message) -> None:
        await b.respond(msg, msg.data.upper(), {"K": "1"})

    await b.subscribe("svc.echo", echo)
    reply = await a.request("svc.echo", b"hi", None, timeout=20)
    assert reply.data == b"HI" and reply.headers == {"K": "1"}
    with pytest.raises(RequestTimeout):
        await a.request("svc.nobody", b"?", None, timeout=0.3)


async def test_queue_group_delivers_each_message_once(pair: tuple[Transport, Transport]) -> None:
    a, b = pair
    seen: list[bytes] = []
    done = anyio.Event()

    async def handler(msg: Message) -> None:
        seen.append(msg.data)
        if len(seen) >= 20:
            done.set()

    await a.subscribe("work", handler, queue="q")
    await b.subscribe("work", handler, queue="q")
    for i in range(20):
        await a.publish("work", str(i).encode())
    with anyio.fail_after(20):
        await done.wait()
    await anyio.lowlevel.checkpoint()  # let any duplicate (there must be none) land
    assert sorted(seen, key=int) == [str(i).encode() for i in range(20)]


async def test_kv_create_is_exclusive_under_concurrency(pair: tuple[Transport, Transport]) -> None:
    a, b = pair
    kv_a = await a.key_value("meshd_contract", history=1)
    kv_b = await b.key_value("meshd_contract", history=1)
    wins: list[str] = []
    losses: list[str] = []

    async def attempt(kv: object, who: str) -> None:
        try:
            await kv.create("decision.eu-west-1.7", who.encode())  # type: ignore[attr-defined]
            wins.append(who)
        except KeyExists:
            losses.append(who)

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(attempt, kv_a if i % 2 else kv_b, f"p{i}")
    assert len(wins) == 1 and len(losses) == 19
    entry = await kv_a.get("decision.eu-west-1.7")
    assert entry is not None and entry.value == wins[0].encode()


async def test_kv_get_put_update_delete_keys(pair: tuple[Transport, Transport]) -> None:
    a, _ = pair
    kv = await a.key_value("meshd_contract2")
    assert await kv.get("missing") is None
    assert await kv.keys() == []
    r1 = await kv.put("k", b"1")
    r2 = await kv.update("k", b"2", r1)
    assert r2 > r1
    with pytest.raises(RevisionMismatch):
        await kv.update("k", b"3", r1)
    entry = await kv.get("k")
    assert entry is not None and (entry.value, entry.revision) == (b"2", r2)
    await kv.create("other", b"x")
    assert sorted(await kv.keys()) == ["k", "other"]
    await kv.delete("other")
    assert await kv.get("other") is None
    await kv.create("other", b"again")  # a deleted key can be created again
    assert (await kv.get("other")).value == b"again"  # type: ignore[union-attr]


async def test_state_callbacks_on_memory_cut_and_heal() -> None:
    net = MemoryNetwork()
    t = net.transport("a")
    states: list[bool] = []
    t.on_state(states.append)
    await t.connect()
    kv = await t.key_value("b")
    await net.cut([t])
    assert not t.connected
    with pytest.raises(TransportError):
        await kv.get("x")  # a cut-off daemon cannot reach the commit point either
    await net.heal([t])
    assert t.connected and states == [False, True]
    assert await kv.get("x") is None


def test_subject_matching() -> None:
    assert subject_matches("a.*.c", "a.b.c")
    assert not subject_matches("a.*.c", "a.b.d")
    assert subject_matches("a.>", "a.b.c")
    assert not subject_matches("a.>", "a")
    assert not subject_matches("a.b", "a.b.c")


async def test_round_trip_pings_only_after_the_queued_commands_went_out() -> None:
    """nats-py's flush() writes its PING ahead of commands still buffered for its flusher task;
    round_trip() must let them go first, or the PONG does not prove the server saw a new SUB."""

    class Client:
        """A nats-py client's relevant surface: a buffer only a flusher task empties, a direct PING."""

        is_connected = True

        def __init__(self) -> None:
            self.pending_data_size = 0
            self.wire: list[str] = []

        def subscribe(self) -> None:
            self.pending_data_size += 20
            asyncio.get_running_loop().call_soon(self._flusher)  # runs at the caller's next yield

        def _flusher(self) -> None:
            self.wire.append("SUB")
            self.pending_data_size = 0

        async def flush(self, timeout: float) -> None:
            self.wire.append("PING")

    nc = Client()
    nc.subscribe()
    await round_trip(nc)
    assert nc.wire == ["SUB", "PING"]
