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
