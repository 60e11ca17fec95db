"""The SQLite ledger: counted once, exact, per hour, protected at rest, and honest about it."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from meshd_plugins.metering.aggregate import Partial, total
from meshd_plugins.metering.atrest import KeyringProtected, Plaintext
from meshd_plugins.metering.config import DAY, MeteringConfig, MeterKind
from meshd_plugins.metering.events import UsageEvent
from meshd_plugins.metering.ledger import Ledger, LedgerError, LedgerLocked

HOUR = 3600.0
T0 = 1_790_000_000.0 - 1_790_000_000.0 % DAY  # midnight UTC


def ev(i: int | str, value: Any = Decimal(1), *, meter: str = "api_calls", tenant: str = "acme-eu",
       at: float = T0 + 10, source: str = "//svc") -> UsageEvent:
    return UsageEvent(str(i), source, tenant, meter, value, at)


def open_ledger(path: Path, at_rest: Any = None, **kw: Any) -> Ledger:
    ledger = Ledger(path, at_rest or Plaintext(), region="eu-west-1", retention=35 * DAY, **kw)
    ledger.open()
    return ledger


def totals(ledger: Ledger, tenant: str = "acme-eu", start: float = T0, end: float = T0 + DAY) -> dict[str, Partial]:
    return ledger.totals(tenant, start, end)


def test_each_event_is_counted_once_within_a_batch_across_batches_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = open_ledger(path)
    flags = ledger.apply([([ev(1), ev(2), ev(1)], T0), ([ev(2), ev(3)], T0)])
    assert flags == [[True, True, False], [False, True]]
    assert ledger.apply([([ev(3), ev(4)], T0 + 60)]) == [[False, True]]
    ledger.close()

    again = open_ledger(path)
    assert again.apply([([ev(1), ev(4), ev(5)], T0 + 120)]) == [[False, False, True]]
    part = totals(again)["api_calls"]
    assert part.aggregate.events == 5 and part.aggregate.sum == Decimal(5)
    assert again.counters["accepted"] == 5 and again.counters["duplicates"] == 5
    assert again.counters["dedup_rows"] == 5


def test_same_id_from_another_source_is_another_event(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path / "l.sqlite3")
    assert ledger.apply([([ev(1, source="//a"), ev(1, source="//b")], T0)]) == [[True, True]]


def test_sums_are_exact_decimals(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path / "l.sqlite3")
    ledger.apply([([ev(i, Decimal("0.1")) for i in range(10)], T0)])
    ledger.apply([([ev("big", Decimal("123456789012345678901234567.123456789012345678"))], T0)])
    assert totals(ledger)["api_calls"].aggregate.sum == Decimal("123456789012345678901234568.123456789012345678")
    assert sum([0.1] * 10) != 1.0  # what floats would have done


def test_every_meter_kind_folds_per_hour_and_over_a_period(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path / "l.sqlite3")
    ledger.apply([([
        ev("m1", Decimal(3), meter="peak_gb", at=T0 + 10), ev("m2", Decimal(7), meter="peak_gb", at=T0 + 2 * HOUR),
        ev("l1", Decimal(5), meter="seats", at=T0 + 3 * HOUR), ev("l2", Decimal(9), meter="seats", at=T0 + HOUR),
        ev("u1", "alice", meter="users", at=T0 + 10), ev("u2", "bob", meter="users", at=T0 + 5 * HOUR),
        ev("u3", "alice", meter="users", at=T0 + 6 * HOUR),
        ev("c1", None, meter="requests"), ev("c2", None, meter="requests", at=T0 + 7 * HOUR),
    ], T0 + 8 * HOUR)])
    parts = totals(ledger)
    kinds = {"peak_gb": MeterKind.MAX, "seats": MeterKind.LATEST, "users": MeterKind.UNIQUE_COUNT,
             "requests": MeterKind.COUNT}
    got = {m: total(k, [parts[m]]).value for m, k in kinds.items()}
    assert got == {"peak_gb": Decimal(7), "seats": "5", "users": Decimal(2), "requests": Decimal(2)}
    # Hour by hour: the first two hours hold one MAX event each.
    assert totals(ledger, end=T0 + HOUR)["peak_gb"].aggregate.max == Decimal(3)
    assert totals(ledger, start=T0 + HOUR)["users"].distinct == 2  # bob, then alice again in hour 6


def test_unique_counts_are_united_across_regions_not_added() -> None:
    def part(*names: str) -> Partial:
        from meshd_plugins.metering.aggregate import member_digest

        return Partial(members={member_digest("acme-eu", "users", n) for n in names}, distinct=len(names))

    merged = total(MeterKind.UNIQUE_COUNT, [part("alice", "bob"), part("bob", "carol")])
    assert merged.value == Decimal(3) and merged.exact
    wire = [Partial.from_json(p.to_json(max_members=1)) for p in (part("alice", "bob"), part("bob", "carol"))]
    bounded = total(MeterKind.UNIQUE_COUNT, wire)  # too many members to send: an upper bound, said so
    assert bounded.value == Decimal(4) and not bounded.exact


def test_with_a_keyring_no_tenant_id_or_value_is_stored_in_clear(tmp_path: Path, fake_keyring: Any) -> None:
    path = tmp_path / "l.sqlite3"
    ledger = open_ledger(path, KeyringProtected(fake_keyring("eu-west-1")))
    ledger.apply([([ev(1, Decimal("424242.17"), tenant="acme-eu"), ev(2, "carol-the-user", meter="users")], T0)])
    assert totals(ledger)["api_calls"].aggregate.sum == Decimal("424242.17")
    ledger.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"acme-eu" not in raw and b"424242.17" not in raw and b"carol-the-user" not in raw
    assert b"meshd:v1:" in raw


def test_a_plaintext_ledger_is_encrypted_when_a_keyring_arrives(tmp_path: Path, fake_keyring: Any) -> None:
    path = tmp_path / "l.sqlite3"
    plain = open_ledger(path)
    plain.apply([([ev(1, Decimal(2)), ev(2, "alice", meter="users")], T0)])
    plain.close()
    protected = open_ledger(path, KeyringProtected(fake_keyring("eu-west-1")))
    assert protected.migrated == 2
    assert totals(protected)["api_calls"].aggregate.sum == Decimal(2)
    assert totals(protected)["users"].distinct == 1
    assert protected.apply([([ev(1), ev(3)], T0)]) == [[False, True]]  # dedup records survived
    protected.close()
    assert b"acme-eu" not in path.read_bytes()


def test_an_encrypted_ledger_without_its_keyring_refuses_to_open(tmp_path: Path, fake_keyring: Any) -> None:
    path = tmp_path / "l.sqlite3"
    open_ledger(path, KeyringProtected(fake_keyring("eu-west-1"))).close()
    with pytest.raises(LedgerLocked):
        open_ledger(path, Plaintext())


def test_a_row_moved_to_another_tenant_does_not_decrypt(tmp_path: Path, fake_keyring: Any) -> None:
    path = tmp_path / "l.sqlite3"
    ledger = open_ledger(path, KeyringProtected(fake_keyring("eu-west-1")))
    ledger.apply([([ev(1, Decimal(5), tenant="acme-eu"), ev(2, Decimal(1), tenant="bistro-fr")], T0)])
    ledger.close()
    with sqlite3.connect(path) as db:  # an attacker copies acme-eu's row over bistro-fr's
        rows = dict(db.execute("SELECT tenant_key, data FROM aggregates").fetchall())
        acme, bistro = sorted(rows)
        db.execute("UPDATE aggregates SET data = ? WHERE tenant_key = ?", (rows[acme], bistro))
    ledger = open_ledger(path, KeyringProtected(fake_keyring("eu-west-1")))
    errors = 0
    for tenant in ("acme-eu", "bistro-fr"):
        try:
            totals(ledger, tenant)
        except LedgerError:
            errors += 1
    assert errors == 1


def test_dedup_records_are_kept_for_the_retention_then_pruned(tmp_path: Path) -> None:
    clock = [T0]
    ledger = open_ledger(tmp_path / "l.sqlite3", clock=lambda: clock[0])
    ledger.apply([([ev(1)], T0)])
    clock[0] = T0 + 34 * DAY
    ledger.apply([([ev(2, at=clock[0])], clock[0])])
    assert ledger.prune() == 0
    assert ledger.apply([([ev(1, at=clock[0])], clock[0])]) == [[False]]  # 34 days later: still a duplicate
    clock[0] = T0 + 37 * DAY
    ledger.apply([([ev(3, at=clock[0])], clock[0])])
    assert ledger.prune() == 1
    assert ledger.counters["dedup_rows"] == 2


def test_a_batch_across_midnight_keeps_each_dedup_record_on_its_own_messages_day(tmp_path: Path) -> None:
    clock = [T0]
    ledger = open_ledger(tmp_path / "l.sqlite3", clock=lambda: clock[0])
    before, after = T0 - 30, T0 + 30  # two messages stored either side of midnight, one batch
    assert ledger.apply([([ev(1, at=before), ev(2, at=before)], before), ([ev(3), ev(2, at=before)], after)]) \
        == [[True, True], [True, False]]
    assert ledger.apply([([ev(3), ev(1, at=before)], after)]) == [[False, False]]
    clock[0] = T0 + 35 * DAY + 60  # the day before midnight has expired, the day after not yet
    ledger.apply([([ev(4, at=clock[0])], clock[0])])
    assert ledger.prune() == 2
    assert not ledger.is_counted("//svc", "1") and not ledger.is_counted("//svc", "2")
    assert ledger.is_counted("//svc", "3")


def test_pruning_follows_the_watermark_after_an_outage(tmp_path: Path) -> None:
    clock = [T0 + 100 * DAY]  # the daemon comes back 100 days later; the backlog is from day 0
    ledger = open_ledger(tmp_path / "l.sqlite3", clock=lambda: clock[0])
    ledger.apply([([ev(1)], T0)])
    assert ledger.prune() == 0  # day 0 is the newest stream time seen: nothing is old yet


def test_config_keeps_the_dedup_window_longer_than_any_countable_event() -> None:
    with pytest.raises(ValidationError, match="max_event_age"):
        MeteringConfig(dedup_retention=32 * DAY, max_event_age=32 * DAY, future_skew=60)
    with pytest.raises(ValidationError):
        MeteringConfig(dedup_retention=10 * DAY, max_event_age=DAY)
    assert MeteringConfig().dedup_retention >= 32 * DAY


def test_rewrap_moves_every_row_and_keeps_the_totals(tmp_path: Path, fake_keyring: Any) -> None:
    keyring = fake_keyring("eu-west-1")
    ledger = open_ledger(tmp_path / "l.sqlite3", KeyringProtected(keyring))
    ledger.apply([([ev(i, Decimal(i), tenant=f"t{i % 7}", at=T0 + i * HOUR / 4) for i in range(40)], T0)])
    seen: list[str] = []

    def rewrap(ciphertext: str, context: dict[str, str]) -> str:
        seen.append(context["row"])
        return keyring.encrypt(keyring.decrypt(ciphertext, context), context)  # "a newer version"

    with sqlite3.connect(tmp_path / "l.sqlite3") as db:
        rows = db.execute("SELECT COUNT(*) FROM aggregates").fetchone()[0]
    assert ledger.rewrap(rewrap, chunk=3) == rows == len(set(seen))
    assert sum(totals(ledger, f"t{i}")["api_calls"].aggregate.sum for i in range(7)) == Decimal(sum(range(40)))
