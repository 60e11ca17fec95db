"""Every message the failover plugin builds from a code exists in all five languages and formats cleanly."""

from __future__ import annotations

import pytest

from meshd.i18n import LANGUAGES, Translator
from meshd_plugins.failover import _STATUS_CODES
from meshd_plugins.failover.alerts import decision_alert
from meshd_plugins.failover.audit import PROBLEM_CODES
from meshd_plugins.failover.records import Record

PARAMS = {"region": "eu-west-1", "known": "a, b", "bucket": "meshd_failover", "status": 500, "seq": 3, "line": 3,
          "expected": 2, "previous": 1, "have": 2, "last": 4, "head": "audit.log.head", "reason": "denied",
          "path": "/x", "count": 1, "target": "eu-central-1", "term": 2, "voters": "a, b", "configured": 7,
          "action": "failover", "quorum": 4, "seconds": "60", "yes": 2, "problem": "p", "residencies": "BH",
          "tenants": 2, "needed": 2, "requesters": "us-east-1"}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_coded_messages_exist_and_format(lang: str) -> None:
    t = Translator(lang)
    keys = ([f"failover.error.{c}" for c in _STATUS_CODES] + ["failover.error.http"]
            + [f"failover.audit.problem.{c}" for c in PROBLEM_CODES]
            + [f"failover.alert.tier.{tier}" for tier in ("pair", "list", "rtt", "none")]
            + ["failover.cli.needs_requesters"])
    for key in keys:
        assert t.has(key), f"{lang} lacks {key}"
        text = t(key, **PARAMS)
        assert "{" not in text, f"{lang} {key} did not format: {text}"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_alert_texts_are_translated(lang: str) -> None:
    t = Translator(lang)
    for target, action in (("eu-central-1", "failover"), (None, "failover"), ("eu-west-1", "failback")):
        record = Record("committed", "eu-west-1", 2, action, target, "us-east-1", 1.0,
                        voters=("a", "b", "c", "d"), tier="pair" if target else "none")
        alert = decision_alert(t, record, 7)
        assert "{" not in alert.annotations["summary"] + alert.annotations["description"]
        assert "eu-west-1" in alert.annotations["summary"]
    if lang != "en":
        english = decision_alert(Translator("en"), record, 7).annotations["description"]
        assert alert.annotations["description"] != english
