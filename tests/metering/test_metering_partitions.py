"""Partitions without NATS: the tenant hash, the config, forwarding, shard files, merging and repartition."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from meshd_plugins.metering.aggregate import Partial
from meshd_plugins.metering.atrest import KeyringProtected, Plaintext
from meshd_plugins.metering.config import DAY, MeteringConfig, parse_ranges
from meshd_plugins.metering.events import Policy, UsageEvent, encode, wire
from meshd_plugins.metering.ingest import Incoming, owned_buckets, process_batch
from meshd_plugins.metering.ledger import Ledger
from meshd_plugins.metering.shards import (
    Busy,
    LayoutMismatch,
    ShardLock,
    check_layout,
    layouts_on_disk,
    merge_partials,
    repartition,
    shard_path,
)
from meshd_plugins.metering.subjects import BUCKETS, bucket_of, partition_filters, partition_of

T0 = 1_790_000_000.0 - 1_790_000_000.0 % DAY
METERS = {"api_calls": {"kind": "SUM"}, "users": {"kind": "UNIQUE_COUNT"}}
TENANTS = [f"tenant-{i}" for i in range(40)]


def ev(i: int, tenant: str, value: Any = Decimal(1), meter: str = "api_calls") -> UsageEvent:
    return UsageEvent(f"e{i}", "//svc", tenant, meter, value, T0 + 10)


def ledger_at(path: Path, at_rest: Any = None) -> Ledger:
    ledger = Ledger(path, at_rest or Plaintext(), region="eu-west-1", retention=35 * DAY)
    ledger.open()
    return ledger


def test_the_tenant_hash_is_the_first_byte_of_sha256_and_partitions_are_buckets_mod_n() -> None:
    for tenant in TENANTS:
        bucket = hashlib.sha256(tenant.encode()).digest()[0]
        assert bucket_of(tenant) == bucket
        assert [partition_of(tenant, n) for n in (1, 2, 3, 8)] == [0, bucket % 2, bucket % 3, bucket % 8]
    # Every bucket belongs to exactly one partition's consumer.
    filters = [set(partition_filters("f", "r", k, 3)) for k in range(3)]
    assert sum(len(f) for f in filters) == BUCKETS and not (filters[0] & filters[1] or filters[1] & filters[2])
    assert partition_filters("f", "r", 0, 1) == []  # one partition: the consumer of old, unfiltered


def test_partition_settings_are_checked_and_name_what_is_wrong() -> None:
    assert parse_ranges("0-3, 6") == [0, 1, 2, 3, 6]
    assert MeteringConfig(meters=METERS).local_partitions() == [0]
    assert MeteringConfig(meters=METERS, partitions=4, ingest=["0-1", 3]).local_partitions() == [0, 1, 3]
    assert MeteringConfig(meters=METERS, partitions=4, ingest="none").local_partitions() == []
    with pytest.raises(ValidationError, match="partition 4 does not exist"):
        MeteringConfig(meters=METERS, partitions=4, ingest=["2-4"])
    with pytest.raises(ValidationError, match="'x' is not a partition"):
        MeteringConfig(meters=METERS, partitions=4, ingest=["x"])
    with pytest.raises(ValueError, match="ends before it starts"):
        parse_ranges("3-1")
    with pytest.raises(ValidationError):
        MeteringConfig(meters=METERS, partitions=0)


def incoming(seq: int, events: list[UsageEvent]) -> Incoming:
    return Incoming(encode([wire(e) for e in events]), {"Meshd-Receipt": "tok"}, seq, T0 + 20)


def test_a_partition_counts_its_own_tenants_and_hands_the_others_on_to_their_buckets(tmp_path: Path) -> None:
    mine = next(t for t in TENANTS if partition_of(t, 2) == 0)
    other = next(t for t in TENANTS if partition_of(t, 2) == 1)
    policy = Policy(meters=MeteringConfig(meters=METERS).kinds(), future_skew=300, max_age=31 * DAY)
    ledger = ledger_at(tmp_path / "l.sqlite3")
    batch = [incoming(1, [ev(1, mine), ev(2, other), ev(3, mine)]), incoming(2, [ev(4, other)])]
    outcomes, forwards = process_batch(batch, policy, ledger, owned_buckets(0, 2))
    assert [(o.accepted, o.forwarded) for o in outcomes] == [(2, 1), (0, 1)]
    assert {key: [e.id for e in evs] for key, evs in forwards.items()} == {
        (0, bucket_of(other)): ["e2"], (1, bucket_of(other)): ["e4"]}
    assert ledger.counters["accepted"] == 2
    # The router counts nothing, forwards everything; one partition forwards nothing.
    outcomes, forwards = process_batch(batch, policy, None, owned_buckets(None, 2))
    assert sum(o.accepted for o in outcomes) == 0 and sum(len(v) for v in forwards.values()) == 4
    _, forwards = process_batch(batch[:1], policy, ledger_at(tmp_path / "one.sqlite3"), owned_buckets(0, 1))
    assert forwards == {}


def test_shard_files_name_their_layout_and_another_layout_is_refused(tmp_path: Path) -> None:
    base = tmp_path / "metering" / "ledger.sqlite3"
    assert shard_path(base, 0, 1) == base
    assert shard_path(base, 1, 4).name == "ledger.p1of4.sqlite3"
    ledger_at(base).close()
    check_layout(base, 1)
    with pytest.raises(LayoutMismatch, match=r"partitions: 1, the config says 2.*repartition --config c.yaml --to 2"):
        check_layout(base, 2, "c.yaml")


def test_the_shards_are_locked_against_a_repartition_while_open(tmp_path: Path) -> None:
    reader, writer = ShardLock(tmp_path), ShardLock(tmp_path)
    reader.acquire()
    with pytest.raises(Busy, match="stop|has the shards open"):
        writer.acquire(exclusive=True)
    reader.release()
    writer.acquire(exclusive=True)
    with pytest.raises(Busy, match="repartition is rewriting"):
        reader.acquire()
    writer.release()


def test_merging_shards_adds_aggregates_and_unites_unique_members() -> None:
    a, b = Partial(), Partial()
    a.aggregate.events, a.aggregate.sum, a.members = 2, Decimal("1.5"), {b"x" * 16}
    b.aggregate.events, b.aggregate.sum, b.members = 3, Decimal("2.25"), {b"x" * 16, b"y" * 16}
    merged = merge_partials([{"api_calls": a}, {"api_calls": b}, {}])
    assert merged["api_calls"].aggregate.events == 5 and merged["api_calls"].aggregate.sum == Decimal("3.75")
    assert merged["api_calls"].distinct == 2


@pytest.mark.parametrize("encrypted", [False, True], ids=["plaintext", "keyring"])
def test_repartition_moves_every_row_to_its_tenants_shard_and_every_dedup_record_to_all(
        tmp_path: Path, fake_keyring: Any, encrypted: bool) -> None:
    at_rest = KeyringProtected(fake_keyring("eu-west-1")) if encrypted else Plaintext()
    base = tmp_path / "ledger.sqlite3"
    one = ledger_at(base, at_rest)
    events = [ev(i, TENANTS[i % len(TENANTS)], Decimal(i)) for i in range(200)]
    events += [ev(1000 + i, TENANTS[i % 5], f"user-{i % 7}", meter="users") for i in range(50)]
    one.apply([(events, T0 + 20)])
    one.apply([([events[0]], T0 + 30)])  # a duplicate, counted as such
    before = {t: one.totals(t, T0, T0 + DAY) for t in TENANTS}
    one.close()

    report = repartition(base, at_rest, region="eu-west-1", retention=35 * DAY, to=3)
    assert report["from"] == 1 and report["events"] == 250 and report["dedup_records"] == 250
    assert set(layouts_on_disk(base)) == {3} and Path(report["backup"], "ledger.sqlite3").exists()
    shards = [ledger_at(shard_path(base, k, 3), at_rest) for k in range(3)]
    assert sum(s.counters["accepted"] for s in shards) == 250
    assert sum(s.counters["duplicates"] for s in shards) == 1
    for tenant in TENANTS:
        home = partition_of(tenant, 3)
        for k, shard in enumerate(shards):
            found = shard.totals(tenant, T0, T0 + DAY)
            if k != home:
                assert found == {}, (tenant, k)
                continue
            assert {m: (p.aggregate.events, p.aggregate.sum, p.distinct) for m, p in found.items()} == \
                {m: (p.aggregate.events, p.aggregate.sum, p.distinct) for m, p in before[tenant].items()}
        # Every shard knows every event: a resend to any of them is a duplicate.
        assert all(s.apply([([events[5]], T0 + 40)]) == [[False]] for s in shards)
    for shard in shards:
        shard.close()
