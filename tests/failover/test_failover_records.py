"""Decision records prove their quorum: anything short, forged or crossing a jurisdiction is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from meshd.config import RegionMap, TrustBundle, load_model_file
from meshd.envelope import Sealer
from meshd.identity import Signer, TrustStore, load_private_key
from meshd.testing import write_federation
from meshd_plugins.failover.ledger import RegionLedger
from meshd_plugins.failover.records import (
    InvalidRecord,
    Proof,
    Record,
    Vote,
    decode_record,
    encode_record,
    open_vote,
    record_body,
)

SEVEN = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ca-central-1", "me-south-1", "ap-southeast-1"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("records")
    write_federation(tmp, SEVEN, "nats://127.0.0.1:4222")
    fed = tmp / "federation"
    trust = TrustStore(load_model_file(fed / "trust.yaml", TrustBundle))
    sealers = {r: Sealer("test", r, Signer(load_private_key(fed / "keys" / f"{r}.key")), 1) for r in SEVEN}
    region_map = load_model_file(fed / "region_map.yaml", RegionMap)
    return {"trust": trust, "sealers": sealers, "jur": {r: region_map.regions[r].jurisdiction for r in SEVEN}}


def vote(world: dict[str, Any], voter: str, term: int = 1, action: str = "failover", yes: bool = True,
         region: str = "eu-west-1") -> Vote:
    v = Vote(voter, region, term, action, yes, "dead", False, 100.0)
    data, headers = world["sealers"][voter].seal("vote", v.body())
    return open_vote(Proof.from_message(data, headers), world["trust"], "test")


def record(world: dict[str, Any], votes: list[Vote], *, committer: str = "us-east-1",
           target: str | None = "eu-central-1", quorum: int = 4, term: int = 1) -> bytes:
    rec = Record("committed", "eu-west-1", term, "failover", target, committer, 100.0, quorum=quorum)
    data, headers = world["sealers"][committer].seal("decision", record_body(rec, votes, 7))
    return encode_record(data, headers)


def decode(world: dict[str, Any], value: bytes, term: int = 1) -> Record:
    return decode_record(value, world["trust"], "test", world["jur"], "eu-west-1", term)


def test_a_record_with_four_valid_votes_is_accepted(world: dict[str, Any]) -> None:
    votes = [vote(world, r) for r in ("us-east-1", "us-west-2", "ca-central-1", "me-south-1")]
    got = decode(world, record(world, votes))
    assert got.committed and got.voters == ("ca-central-1", "me-south-1", "us-east-1", "us-west-2")
    assert got.committed_by == "us-east-1" and len(got.digest) == 64


@pytest.mark.parametrize("case", ["three_votes", "same_voter_four_times", "vote_for_other_term", "no_vote",
                                  "vote_for_failback", "low_quorum", "cross_jurisdiction", "wrong_slot",
                                  "bad_committer_signature", "bad_vote_signature", "garbage"])
def test_a_bad_record_is_refused(world: dict[str, Any], case: str) -> None:
    four = ["us-east-1", "us-west-2", "ca-central-1", "me-south-1"]
    term = 1
    if case == "three_votes":
        value = record(world, [vote(world, r) for r in four[:3]])
    elif case == "same_voter_four_times":
        value = record(world, [vote(world, "us-east-1") for _ in range(4)])
    elif case == "vote_for_other_term":
        value = record(world, [vote(world, r) for r in four[:3]] + [vote(world, four[3], term=2)])
    elif case == "no_vote":
        value = record(world, [vote(world, r) for r in four[:3]] + [vote(world, four[3], yes=False)])
    elif case == "vote_for_failback":
        value = record(world, [vote(world, r) for r in four[:3]] + [vote(world, four[3], action="failback")])
    elif case == "low_quorum":
        value = record(world, [vote(world, r) for r in four[:3]], quorum=3)
    elif case == "cross_jurisdiction":
        value = record(world, [vote(world, r) for r in four], target="us-east-1")
    elif case == "wrong_slot":
        value, term = record(world, [vote(world, r) for r in four]), 2
    elif case == "bad_committer_signature":
        obj = json.loads(record(world, [vote(world, r) for r in four]))
        obj["s"] = obj["s"][:-4] + ("AAAA" if not obj["s"].endswith("AAAA") else "BBBB")
        value = json.dumps(obj).encode()
    elif case == "bad_vote_signature":
        votes = [vote(world, r) for r in four]
        bad = votes[0].proof
        votes[0] = Vote(**{**votes[0].__dict__, "proof": Proof(bad.payload.replace(b'"dead"', b'"DEAD"'), bad.sig,
                                                               bad.kid)})
        value = record(world, votes)
    else:
        value = b"\x00not json"
    with pytest.raises(InvalidRecord):
        decode(world, value, term)


def test_a_ledger_counts_one_vote_per_voter_and_only_for_open_slots(world: dict[str, Any]) -> None:
    ledger = RegionLedger("eu-west-1")
    assert ledger.add_vote(vote(world, "us-east-1"), 0.0)
    assert not ledger.add_vote(vote(world, "us-east-1"), 0.0)  # the same vote again
    assert not ledger.add_vote(vote(world, "us-east-1", yes=False), 0.0)  # a different second vote
    assert [v.yes for v in ledger.tallies[1].values()] == [True]
    ledger.fill(1, None)
    assert ledger.tallies == {} and not ledger.add_vote(vote(world, "us-west-2"), 0.0)
    assert ledger.next_term == 2 and ledger.next_action() == "failover"
    with pytest.raises(ValueError):
        ledger.fill(5, None)
