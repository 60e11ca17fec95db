"""An example third-party meshd plugin.

It adds a ``greeter`` config section, greets the federation once at start-up
over the signed bus, counts the greetings and membership changes it sees,
and shows them in ``/status``. Copy it as the start of your own plugin.
"""

from __future__ import annotations

from typing import Any

import meshd
from meshd import hookimpl


class GreeterConfig(meshd.StrictModel):
    greeting: str = "hello"


class GreeterPlugin:
    def __init__(self) -> None:
        # One instance per daemon: state lives here, never in module globals.
        self.greetings_seen: dict[str, str] = {}
        self.member_changes = 0

    @hookimpl
    def meshd_config_models(self) -> dict[str, type[meshd.StrictModel]]:
        return {"greeter": GreeterConfig}

    @hookimpl
    async def meshd_startup(self, daemon: meshd.Daemon) -> None:
        async def on_greeting(envelope: meshd.Envelope, _message: Any) -> None:
            self.greetings_seen[envelope.sender] = str(envelope.body.get("text", ""))

        await daemon.bus.subscribe("greeting", on_greeting)
        await daemon.bus.publish("greeting", "hello", {"text": daemon.plugin_config("greeter").greeting})

    @hookimpl
    def meshd_member_changed(self, daemon: meshd.Daemon, member: meshd.Member) -> None:
        self.member_changes += 1
        daemon.log.info("greeter: %s is now %s", member.region, member.state.value)

    @hookimpl
    def meshd_status(self) -> dict[str, Any]:
        return {"greeter": {"greetings_seen": self.greetings_seen, "member_changes": self.member_changes}}
