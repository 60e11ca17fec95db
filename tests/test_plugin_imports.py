"""What an idle daemon imports: a disabled plugin's modules never, heavy libraries only where used.

Each case runs a real daemon (real nats-server) in a fresh interpreter, so the
test process's own imports cannot hide or fake what the daemon loaded; the
child starts the daemon the way ``meshd run`` does, waits until it is READY,
and prints the modules it holds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from meshd.testing import BUILTIN_PLUGINS, NatsServer, write_federation

CHILD = r"""
import json, sys
import anyio
from meshd.cli import load_hooks
from meshd.daemon import Daemon

path = sys.argv[1]
hooks = load_hooks(["run", "--config", path])
config = hooks.load_config(path)
hooks.disable(config.daemon.plugins.disabled)

async def main():
    daemon = Daemon(config, hooks)
    async with anyio.create_task_group() as tg:
        await tg.start(daemon.run)
        print(json.dumps({"modules": sorted(sys.modules), "plugins": hooks.plugin_names()}), flush=True)
        daemon.stop()

anyio.run(main)
"""


def idle_daemon_modules(config: Path) -> dict[str, list[str]]:
    done = subprocess.run([sys.executable, "-c", CHILD, str(config)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def builtin(seen: dict[str, list[str]]) -> list[str]:
    """The builtin plugins the daemon loaded; installed third-party ones (contrib/kms-*) load beside them."""
    return sorted(p for p in seen["plugins"] if p in BUILTIN_PLUGINS)


def test_a_disabled_plugin_is_never_imported(tmp_path: Path, nats_server: NatsServer) -> None:
    disabled = ["billing", "audit", "partners", "metering"]
    path = write_federation(tmp_path, ["eu-west-1"], nats_server.url)["eu-west-1"]
    data = yaml.safe_load(path.read_text())
    data["plugins"] = {"disabled": disabled}
    data["billing"] = {"anything": "kept as written while the plugin is off"}  # a disabled plugin's section stays valid
    path.write_text(yaml.safe_dump(data))

    seen = idle_daemon_modules(path)

    assert builtin(seen) == sorted(set(BUILTIN_PLUGINS) - set(disabled))
    leaked = [m for m in seen["modules"] if m.split(".")[:2] in [["meshd_plugins", p] for p in disabled]]
    assert leaked == []
    assert "meshd_plugins.keys" in seen["modules"]  # the check can see an enabled plugin's modules


def test_an_idle_daemon_without_apprise_targets_does_not_import_apprise(tmp_path: Path,
                                                                         nats_server: NatsServer) -> None:
    path = write_federation(tmp_path, ["eu-west-1"], nats_server.url)["eu-west-1"]
    assert "apprise" not in path.read_text()

    seen = idle_daemon_modules(path)

    assert builtin(seen) == sorted(BUILTIN_PLUGINS)
    assert "meshd_plugins.alerts" in seen["modules"]
    assert [m for m in seen["modules"] if m == "apprise" or m.startswith("apprise.")] == []


RUN_UNTIL_READY = r"""
import json, sys
from meshd import daemon

set_state = daemon.Daemon._set_state

def report_when_ready(self, state, detail=""):
    set_state(self, state, detail)
    if state == "ready":  # everything a plugin loads at start is loaded by now
        print(json.dumps({"modules": sorted(sys.modules), "plugins": self.hooks.plugin_names()}), flush=True)
        self.stop()

daemon.Daemon._set_state = report_when_ready
from meshd.cli import main
raise SystemExit(main(sys.argv[1:]))
"""

HEAVY = [
    # libraries only some work needs: invoice pages, number formatting, the partner API, notifications,
    # partner API key hashing, the KMS providers' cloud SDKs (installed beside meshd under CI)
    "jinja2", "weasyprint", "babel", "starlette", "uvicorn", "apprise", "argon2", "boto3", "botocore",
    "google.cloud", "azure", "hvac", "kmip",
    # meshd's own modules for commands and reports, not for the daemon
    "meshd.pages", "meshd.tenantcli", "meshd.statusview", "meshd.client", "meshd.demo", "meshd.prometheus",
    "meshd_plugins.sla.page", "meshd_plugins.sla.report", "meshd_plugins.sla.promsource",
    "meshd_plugins.billing.render", "meshd_plugins.billing.output", "meshd_plugins.billing.reports",
    "meshd_plugins.audit.report", "meshd_plugins.audit.oscal", "meshd_plugins.partners.server",
    "meshd_plugins.partners.app",
]


def test_meshd_run_when_ready_holds_no_module_an_idle_daemon_does_not_use(tmp_path: Path,
                                                                          nats_server: NatsServer) -> None:
    path = write_federation(tmp_path, ["eu-west-1"], nats_server.url)["eu-west-1"]
    partners = yaml.safe_load(path.read_text()).get("partners") or {}
    assert not partners.get("enabled")  # no partner API served: no ASGI stack needed

    # `meshd run` itself (its command line included), reporting its modules once READY and then leaving.
    done = subprocess.run([sys.executable, "-c", RUN_UNTIL_READY, "run", "--config", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[0])

    assert builtin(seen) == sorted(BUILTIN_PLUGINS)
    loaded = set(seen["modules"])
    assert [m for m in HEAVY if m in loaded or any(n.startswith(m + ".") for n in loaded)] == []
    assert [m for m in loaded if m.startswith("meshd_plugins.") and m.endswith(".cli")] == []
    # The check sees what the daemon does load: its HTTP parser, a plugin's runtime.
    assert {"h11", "meshd_plugins.alerts.runtime", "meshd_plugins.keys.keyring"} <= loaded
