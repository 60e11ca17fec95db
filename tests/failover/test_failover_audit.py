"""The hash-chained audit log: every edit, drop, reorder or cut is found and named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from meshd.cli import main
from meshd.config import TrustBundle
from meshd.identity import Signer, TrustStore, generate_key, key_id, load_private_key, public_key_b64
from meshd.testing import write_federation
from meshd_plugins.failover.audit import AuditLog, entry_hash, verify


@pytest.fixture
def keys() -> dict[str, Any]:
    mine, other = generate_key(), generate_key()
    bundle = TrustBundle(federation="test", keys={
        r: {"key_id": key_id(k.public_key()), "public_key": public_key_b64(k.public_key())}
        for r, k in (("eu-west-1", mine), ("us-east-1", other))})
    return {"signer": Signer(mine), "other": Signer(other), "trust": TrustStore(bundle)}


def write(tmp_path: Path, keys: dict[str, Any], n: int = 5) -> AuditLog:
    log = AuditLog(tmp_path / "audit.log", "eu-west-1", keys["signer"])
    log.open(keys["trust"])
    for i in range(1, n + 1):
        log.append("vote", {"region": "us-west-2", "term": i, "vote": "yes"})
    return log


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def put(path: Path, rows: list[str]) -> None:
    path.write_text("".join(r + "\n" for r in rows))


def check(path: Path, keys: dict[str, Any]) -> Any:
    return verify(path, trust=keys["trust"], region="eu-west-1")


def test_an_intact_log_verifies(tmp_path: Path, keys: dict[str, Any]) -> None:
    log = write(tmp_path, keys)
    result = check(log.path, keys)
    assert result.ok and len(result.entries) == 5 and result.head_signed_by == "eu-west-1"
    assert [e.data["term"] for e in result.entries] == [1, 2, 3, 4, 5]


def test_an_edited_entry_is_named(tmp_path: Path, keys: dict[str, Any]) -> None:
    log = write(tmp_path, keys)
    rows = lines(log.path)
    rows[2] = rows[2].replace('"vote":"yes"', '"vote":"no"')
    put(log.path, rows)
    problem = check(log.path, keys).problem
    assert (problem.code, problem.seq, problem.line) == ("edited", 3, 3)


def test_a_dropped_entry_is_named(tmp_path: Path, keys: dict[str, Any]) -> None:
    log = write(tmp_path, keys)
    rows = lines(log.path)
    del rows[2]
    put(log.path, rows)
    problem = check(log.path, keys).problem
    assert (problem.code, problem.params["expected"], problem.seq) == ("dropped", 3, 4)


def test_reordered_entries_are_named(tmp_path: Path, keys: dict[str, Any]) -> None:
    log = write(tmp_path, keys)
    rows = lines(log.path)
    rows[1], rows[2] = rows[2], rows[1]
    put(log.path, rows)
    problem = check(log.path, keys).problem
    assert (problem.code, problem.seq, problem.params["expected"]) == ("reordered", 3, 2)


def test_entries_cut_from_the_end_are_found_through_the_signed_head(tmp_path: Path, keys: dict[str, Any]) -> None:
    log = write(tmp_path, keys)
    put(log.path, lines(log.path)[:3])
    problem = check(log.path, keys).problem
    assert (problem.code, problem.params) == ("truncated", {"seq": 5, "have": 3})


def test_a_rewritten_chain_does_not_match_the_signed_head(tmp_path: Path, keys: dict[str, Any]) -> None:
    log = write(tmp_path, keys)
    rows = [json.loads(r) for r in lines(log.path)]
    # Whoever edits entry 2 and recomputes every hash after it still lacks the region's key.
    rows[1]["data"]["vote"] = "no"
    prev = rows[0]["hash"]
    for row in rows[1:]:
        row["prev"] = prev
        row["hash"] = prev = entry_hash(row["seq"], row["ts"], row["kind"], row["data"], row["prev"])
    put(log.path, [json.dumps(r) for r in rows])
    problem = check(log.path, keys).problem
    assert (problem.code, problem.seq) == ("head_mismatch", 5)


def test_a_head_signed_by_another_key_is_rejected(tmp_path: Path, keys: dict[str, Any]) -> None:
    write(tmp_path, keys)
    forger = AuditLog(tmp_path / "other.log", "eu-west-1", keys["other"])
    forger.open()
    forger.append("vote", {})
    (tmp_path / "audit.log.head").write_text((tmp_path / "other.log.head").read_text())
    assert check(tmp_path / "audit.log", keys).problem.code == "head_signature"


def test_entries_appended_past_the_head_are_rejected(tmp_path: Path, keys: dict[str, Any]) -> None:
    log = write(tmp_path, keys, n=2)
    head = (tmp_path / "audit.log.head").read_text()
    log.append("vote", {"term": 3})
    log.append("vote", {"term": 4})
    (tmp_path / "audit.log.head").write_text(head)
    problem = check(log.path, keys).problem
    assert (problem.code, problem.params) == ("unsigned_tail", {"seq": 3, "last": 4})


def test_a_crash_between_entry_and_head_is_not_tampering_and_is_repaired(tmp_path: Path,
                                                                          keys: dict[str, Any]) -> None:
    log = write(tmp_path, keys, n=3)
    head = (tmp_path / "audit.log.head").read_text()
    log.append("vote", {"term": 4})
    (tmp_path / "audit.log.head").write_text(head)  # the crash came before the head was rewritten
    assert check(log.path, keys).ok
    again = AuditLog(log.path, "eu-west-1", keys["signer"])
    again.open(keys["trust"])
    assert json.loads((tmp_path / "audit.log.head").read_text())["seq"] == 4


def test_a_torn_last_line_is_cut_off_and_the_chain_goes_on(tmp_path: Path, keys: dict[str, Any]) -> None:
    log = write(tmp_path, keys, n=3)
    with open(log.path, "ab") as f:
        f.write(b'{"seq": 4, "ts": 1.0, "ki')
    result = check(log.path, keys)
    assert result.ok and result.torn_tail and len(result.entries) == 3
    again = AuditLog(log.path, "eu-west-1", keys["signer"])
    again.open(keys["trust"])
    again.append("vote", {"term": 4})
    result = check(log.path, keys)
    assert result.ok and not result.torn_tail and [e.seq for e in result.entries] == [1, 2, 3, 4]


def test_opening_a_tampered_log_moves_it_aside_and_starts_a_new_chain(tmp_path: Path, keys: dict[str, Any]) -> None:
    log = write(tmp_path, keys)
    put(log.path, lines(log.path)[:2])
    again = AuditLog(log.path, "eu-west-1", keys["signer"])
    assert again.open(keys["trust"]).problem.code == "truncated"
    [moved] = list(tmp_path.glob("audit.log.broken-*[0-9]"))
    assert len(lines(moved)) == 2
    result = check(log.path, keys)
    assert result.ok and [e.kind for e in result.entries] == ["reset"]
    assert result.entries[0].data["moved_to"] == moved.name


def test_the_cli_names_the_bad_entry_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configs = write_federation(tmp_path, ["eu-west-1", "us-east-1"], "nats://127.0.0.1:4222")
    config = configs["eu-west-1"]
    state = tmp_path / "federation" / "state" / "eu-west-1" / "failover"
    signer = Signer(load_private_key(tmp_path / "federation" / "keys" / "eu-west-1.key"))
    log = AuditLog(state / "audit.log", "eu-west-1", signer)
    log.open()
    for i in range(4):
        log.append("vote", {"term": i + 1})
    assert main(["audit-log", "verify", "--config", str(config)]) == 0
    assert "4" in capsys.readouterr().out
    rows = lines(log.path)
    rows[1] = rows[1].replace('"term":2', '"term":7')
    put(log.path, rows)
    assert main(["--lang", "en", "audit-log", "verify", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "entry 2 (line 2) was edited" in err
    assert main(["--lang", "fr", "audit-log", "verify", "--config", str(config)]) == 2
    assert "l'entrée 2 (ligne 2) a été modifiée" in capsys.readouterr().err
    assert main(["audit-log", "verify", "--config", str(config), "--json"]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["problem"]["code"] == "edited" and doc["problem"]["entry"] == 2
    assert main(["audit-log", "verify", "--config", str(config), "--file", str(tmp_path / "none.log")]) == 1
