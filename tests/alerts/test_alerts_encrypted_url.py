"""A receiver URL encrypted for its region with the keys plugin (`meshd secrets encrypt`) is used, never logged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from alerts_receiver import RecordingReceiver

from meshd.testing import BUILTIN_PLUGINS, LocalFederation

pytestmark = [pytest.mark.nats]


def test_an_encrypted_receiver_url_is_decrypted_in_its_region(tmp_path: Path) -> None:
    token = "Tok3nOnlyTheRegionKnows"
    with RecordingReceiver() as rx:
        routes = tmp_path / "alert_routes.yaml"
        routes.write_text(yaml.safe_dump({
            "route": {"receiver": "nowhere", "group_wait": "0s",
                      "routes": [{"matchers": ['alertname="RegionDown"'], "receiver": "chat"}]},
            "receivers": [{"name": "nowhere"}, {"name": "chat", "urls": [{"secret": "chat"}]}]}))
        fed = LocalFederation(tmp_path / "fed", regions=["eu-west-1"], shared_files=[routes], config={
            "plugins": {"disabled": [p for p in BUILTIN_PLUGINS if p not in ("alerts", "keys")]}})
        fed.start(daemons=False)  # the files and the bus; the daemon starts once its secret is in place
        try:
            config = fed.config_path("eu-west-1")
            made = subprocess.run([sys.executable, "-m", "meshd", "secrets", "encrypt", "--config", str(config)],
                                  input=rx.json_url(f"/hook/{token}"), capture_output=True, text=True, timeout=60)
            assert made.returncode == 0, made.stderr
            value = "!encrypted " + made.stdout.split("!encrypted ", 1)[1].split()[0]
            assert token not in value
            config.write_text(config.read_text() + f"alerts:\n  secrets:\n    chat: {value}\n")
            fed.start_daemon("eu-west-1")
            code, body = fed.http("eu-west-1", "/v1/alerts", method="POST", admin=True,
                                  body={"alerts": [{"labels": {"alertname": "RegionDown", "region": "x"}}]})
            assert code == 200, body
            [got] = rx.wait_for(lambda got: got[:1], what="delivery to the decrypted URL")
            assert got.path == f"/hook/{token}"
            status = fed.status("eu-west-1")
            assert token not in str(status) and status["alerts"]["receivers"][0]["problem"] is None
        finally:
            fed.stop()
        assert token not in fed.log_text("eu-west-1")
