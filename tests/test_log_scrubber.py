"""The log scrubber masks secrets, and only secrets, with every sample file in etc/.

Masking is by substring, so registering a word (a URL's user name such as the
sample ``mailto://alerts:PASSWORD@...``) would turn every logger name, KV
bucket and subject holding it into ``***``.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from meshd import logs
from meshd.logs import register_secret, scrub
from meshd.natsserver import free_port
from meshd.plugins import Hooks
from meshd.testing import LocalFederation
from meshd_plugins.alerts.routes import load_routes
from meshd_plugins.alerts.targets import parse_target

ETC = Path(__file__).resolve().parent.parent / "etc"
SAMPLES = sorted(ETC.glob("*.yaml"))
REGIONS = ["eu-west-1", "us-east-1"]


@pytest.fixture
def scrubber(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """A fresh set of registered secrets for this test (the real one is process-wide)."""
    fresh: set[str] = set()
    monkeypatch.setattr(logs, "_secrets", fresh)
    yield fresh


def register_like_the_daemon(routes_file: Path) -> None:
    """What the alerts plugin registers for a routing file: each URL and its secret parts."""
    for receiver in load_routes(routes_file, check_urls=False).receivers.values():
        for url in receiver.urls:
            register_secret(str(url))
            for part in parse_target(str(url)).secret_parts:
                register_secret(part)


def test_the_sample_files_keep_every_word_but_their_secrets(scrubber: set[str]) -> None:
    assert {p.name for p in SAMPLES} >= {"meshd.yaml", "alert_routes.yaml", "region_map.yaml"}
    register_like_the_daemon(ETC / "alert_routes.yaml")
    for server in yaml.safe_load((ETC / "meshd.yaml").read_text())["nats"]["servers"]:
        register_secret(server)
    assert "PASSWORD" in scrubber
    words = {w for w in scrubber if re.fullmatch(r"[a-z]+", w)}
    assert not words, f"ordinary words registered as secrets: {words}"
    for path in SAMPLES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "://" in line and any(s in line for s in scrubber):
                continue  # a receiver URL: checked below
            assert scrub(line) == line, f"{path.name}:{number} changed by the scrubber: {scrub(line)!r}"
    mail = scrub("mailto://alerts:PASSWORD@mail.example.com?to=oncall@example.com")
    assert "PASSWORD" not in mail
    for region in ("eu-west-1", "us-east-1", "ap-southeast-1"):
        for name in (f"meshd.{region}.alerts.delivery", "KV meshd_alerts_nflog", f"meshd.acme.alerts.{region}"):
            assert scrub(name) == name


@pytest.mark.parametrize(("url", "secret", "kept"), [
    ("mailto://alerts:Vq7-smtp-Pa55word@mail.example.com?to=oncall@example.com", "Vq7-smtp-Pa55word",
     ["alerts", "oncall@example.com", "mail.example.com"]),
    ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#ops", "TIiajkdnlazkcOXrIdevi7FQ", ["#ops"]),
    ("pagerduty://R0utingKey0123456789@ApiKey0123456/db", "R0utingKey0123456789", ["db"]),
    ("ntfy://operator:Secretpw1x@ntfy.example.com/alerts?token=tk_Abcdefgh12345", "tk_Abcdefgh12345",
     ["operator", "alerts", "ntfy.example.com"]),
    ("ntfy://operator:Secretpw1x@ntfy.example.com/alerts", "Secretpw1x", ["operator", "alerts"]),
    ("jsons://hooks.example.com/alerts/0f1c6c0e-9a8b-4c1d-bc7e-2f4e5d6a7b8c", "0f1c6c0e-9a8b-4c1d-bc7e-2f4e5d6a7b8c",
     ["hooks", "alerts"]),
    ("discord://1234567890/WebhookTokenAbc123", "WebhookTokenAbc123", []),
])
def test_only_the_secret_parts_of_a_url_are_registered(scrubber: set[str], url: str, secret: str,
                                                       kept: list[str]) -> None:
    for part in parse_target(url).secret_parts:
        register_secret(part)
    line = f"delivery via {secret} failed; {' '.join(kept)}"
    assert scrub(line) == f"delivery via *** failed; {' '.join(kept)}"
    assert "***" not in scrub(f"meshd.eu-west-1.{'.'.join(kept) or 'x'}.delivery")


def test_short_values_are_never_registered(scrubber: set[str]) -> None:
    for value in ("alerts", "ops", "hunter2", "", None):
        register_secret(value)
    assert scrubber == set()
    assert scrub("meshd.eu-west-1.alerts.delivery") == "meshd.eu-west-1.alerts.delivery"


@pytest.mark.nats
def test_a_fresh_federation_logs_no_masked_words_and_no_secret(tmp_path: Path) -> None:
    """Real daemons from `meshd init` with every sample file: '***' only where a secret was."""
    shared = [ETC / name for name in Hooks.load().federation_files() if (ETC / name).is_file()]
    assert "alert_routes.yaml" in {p.name for p in shared}
    token = f"Zq8-{secrets.token_hex(12)}"
    # A probe that prints a secret it got through its environment: the scrubber must catch it.
    leaky = {"name": "leaky", "kind": "command", "interval": "1s", "timeout": "5s",
             "command": ["sh", "-c", 'echo "answer from $PROBE_TOKEN"; exit 2'], "env": {"PROBE_TOKEN": token}}
    fed = LocalFederation(tmp_path, shared_files=shared, config={"health": {"probes": [leaky]}})
    try:
        # The sample's mail receiver with a real password, and its heartbeat receiver on a closed
        # loopback port: the dead man's switch fails there, and the delivery worker logs it.
        routes = fed.dir / "alert_routes.yaml"
        mail_password = f"Mp4-{secrets.token_hex(10)}"
        text = routes.read_text().replace("alerts:PASSWORD@mail.example.com",
                                          f"alerts:{mail_password}@mail.example.com")
        text = text.replace("jsons://hc-ping.com/", f"json://127.0.0.1:{free_port()}/")
        assert mail_password in text and "hc-ping.com" not in text
        routes.write_text(text)
        # Every region of the sample region map (the sample DR pairs need them), two of them running.
        fed.start(daemons=False)
        for region in REGIONS:
            fed.start_daemon(region, wait=False)

        def logged() -> dict[str, list[dict]]:
            out = {}
            for region in REGIONS:
                out[region] = [json.loads(line) for line in fed.log_text(region).splitlines()
                               if line.startswith("{")]
            return out

        def ready() -> dict[str, list[dict]] | None:
            # The probe's state change quotes its output; the delivery worker logs the failed heartbeat.
            got = logged()
            for lines in got.values():
                if not any(r["msg"].startswith("probe leaky: ") for r in lines):
                    return None
                if not any(r["logger"].endswith(".delivery") for r in lines):
                    return None
            return got

        got = fed.wait_for(ready, timeout=60, what="the leaky probe's and the delivery worker's log lines")
        nats_passwords = [(fed.dir / "secrets" / f"{r}.nats-password").read_text().strip() for r in REGIONS]
        for region, lines in got.items():
            raw = fed.log_text(region)
            for secret in (token, mail_password, *nats_passwords):
                assert secret not in raw
            assert {r["logger"] for r in lines if r["logger"].endswith(".delivery")} == \
                {f"meshd.{region}.alerts.delivery"}
            masked = [r for r in lines if "***" in json.dumps(r)]
            assert masked, "the probe's output should have been masked"
            for record in masked:
                assert record["logger"] == f"meshd.{region}.health", record
                assert "answer from ***" in json.dumps(record), record
                assert re.search(r"\w\*\*\*|\*\*\*\w", json.dumps(record).replace("from ***", "")) is None
    finally:
        fed.stop()


def test_nats_credentials_from_files_and_urls_are_registered(scrubber: set[str], tmp_path: Path) -> None:
    from meshd.config import NatsConfig
    from meshd.transport import nats_connect_options

    (tmp_path / "pw").write_text("Fq2-nats-password-from-file\n")
    by_file = NatsConfig(servers=["nats://127.0.0.1:4222"], user="eu-west-1", password_file=tmp_path / "pw")
    assert nats_connect_options(by_file, lambda v: v)["password"] == "Fq2-nats-password-from-file"
    in_url = NatsConfig(servers=["nats://eu-west-1:Hx7-nats-password-in-url@nats-1.internal:4222"])
    nats_connect_options(in_url, lambda v: v)
    assert scrubber == {"Fq2-nats-password-from-file", "Hx7-nats-password-in-url"}
    assert scrub("nats://eu-west-1:Hx7-nats-password-in-url@nats-1.internal:4222") == \
        "nats://eu-west-1:***@nats-1.internal:4222"
