"""Real daemons with the partners plugin on a real nats-server, and HTTP clients for their partner API.

Two regions run (eu-west-1, eu-central-1) on the JetStream KV tenant
registry; us-east-1 is in the region map but has no daemon, so it is never
alive. Partners ``acme`` and ``globex``
each get a key of every role.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from meshd.natsserver import free_port
from meshd.testing import running_daemons, until, write_federation

REGIONS = ["eu-west-1", "eu-central-1", "us-east-1"]
RUNNING = ["eu-west-1", "eu-central-1"]
OTHER_PLUGINS = ["health", "failover", "routing", "alerts", "keys", "metering", "billing", "fencing"]
PLANS = ["starter", "pro"]


@dataclass
class Federation:
    daemons: dict[str, Any]
    configs: dict[str, Path]
    keys: dict[tuple[str, str], str] = field(default_factory=dict)
    """(partner, role) -> the whole API key."""

    def runtime(self, region: str) -> Any:
        return self.daemons[region].hooks.pm.get_plugin("partners").runtime

    def url(self, region: str) -> str:
        return f"http://127.0.0.1:{self.runtime(region).port}"

    def client(self, region: str = "eu-west-1", partner: str = "acme", role: str = "admin",
               **headers: str) -> httpx.AsyncClient:
        auth = {"Authorization": f"Bearer {self.keys[(partner, role)]}", "Meshd-Partner": partner}
        return httpx.AsyncClient(base_url=self.url(region), headers={**auth, **headers}, timeout=10)


def partner_configs(tmp_path: Path, nats_url: str, patch: dict[str, Any] | None = None) -> dict[str, Path]:
    base = {"partners": {"enabled": True, "port": 0, "plans": PLANS}, "tenants": {"registry": "kv"}}
    paths = write_federation(tmp_path, REGIONS, nats_url, patch={**base, **(patch or {})})
    for region in RUNNING:  # a known admin port, for the CLI to find the daemon
        data = yaml.safe_load(paths[region].read_text())
        data["http"] = {"port": free_port()}
        paths[region].write_text(yaml.safe_dump(data, sort_keys=False))
    return {r: paths[r] for r in RUNNING}


@pytest.fixture
async def federation(tmp_path: Path, nats_server: Any) -> AsyncIterator[Federation]:
    configs = partner_configs(tmp_path, nats_server.url)
    async with running_daemons(configs, blocked=OTHER_PLUGINS) as daemons:
        fed = Federation(daemons, configs)
        store = fed.runtime("eu-west-1").store
        for partner in ("acme", "globex"):
            await store.add_partner(partner.title(), partner)
            for role in ("admin", "deployer", "read"):
                _, key = await store.create_key(partner, role)
                fed.keys[(partner, role)] = key
        for region in RUNNING:
            await until(lambda: len(fed.runtime(region).store.keys) == 6, 10, f"{region} sees every key")
        await until(lambda: fed.runtime("eu-west-1").alive("eu-central-1"), 20, "eu-central-1 alive")
        yield fed
