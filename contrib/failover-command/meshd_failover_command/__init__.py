"""A failover action that runs a command: the decision as JSON on stdin, under a timeout.

Install it beside meshd (``pip install contrib/failover-command``) and give
each region's config a section::

    failover_command:
      command: ["/usr/local/bin/update-dns", "--zone", "api.example.com"]
      timeout: 30s
      actions: [failover, failback]

Every committed decision (``meshd_failover_committed``) runs the command
once per daemon, in decision order, with this on stdin::

    {"region": "eu-west-1", "term": 3, "action": "failover", "target": "eu-central-1",
     "voters": [...], "committed_at": 1764147600.2, "committed_by": "us-east-1",
     "federation": "prod", "observer": "us-east-1", "replay": false, ...}

and MESHD_FEDERATION, MESHD_REGION (the daemon running it), MESHD_ACTION,
MESHD_DECISION_REGION, MESHD_TARGET and MESHD_TERM in its environment. The
command must be idempotent: every region runs it, and a daemon restarted
mid-run runs it again.

With ``fence`` / ``unfence`` in ``actions`` it also runs when this region
fences itself or lifts its fence (``meshd_region_fenced``, docs/fencing.md),
on this region's daemon only, with ``{"action": "fence", "region", "reason",
"federation", "observer"}`` on stdin and MESHD_ACTION, MESHD_REGION,
MESHD_FEDERATION and MESHD_REASON in its environment: say, to take the
region out of a load balancer while it cannot tell whether it was failed over. A command that outlives ``timeout`` is killed with
its whole process group; a failure is logged and counted
(``meshd_failover_command_runs_total{result}``), never fatal. Decisions
replayed when a daemon starts are skipped unless ``on_replay: true``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

import meshd
from meshd import hookimpl
from meshd.config import ConfigIssue, LoadedConfig

STDERR_TAIL = 500


class CommandConfig(meshd.StrictModel):
    """The ``failover_command:`` section; no ``command`` means the plugin does nothing."""

    command: list[str] = Field(default_factory=list)
    timeout: meshd.Duration = Field(default=30.0, gt=0)
    actions: list[Literal["failover", "failback", "fence", "unfence"]] = Field(
        default_factory=lambda: ["failover", "failback"])
    """Decisions to act on, and (opt-in) this region's own fence going up or down."""
    on_replay: bool = False
    """Also run for decisions read at start (already acted on before, if the command was configured then)."""


def _run(argv: list[str], payload: bytes, env: dict[str, str], timeout: float) -> tuple[str, int | None, str, float]:
    """Run ``argv`` with ``payload`` on stdin: (result, exit code, stderr tail, seconds). Blocking."""
    began = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=env, start_new_session=True)
    except OSError as exc:
        return "failed", None, f"cannot start: {exc.strerror or exc}", 0.0
    try:
        _, err = proc.communicate(payload, timeout=timeout)
    except subprocess.TimeoutExpired:
        # The command may have started children (a shell script): end the whole group.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _, err = proc.communicate()
        return "timeout", None, err.decode(errors="replace")[-STDERR_TAIL:], time.monotonic() - began
    result = "ok" if proc.returncode == 0 else "failed"
    return result, proc.returncode, err.decode(errors="replace")[-STDERR_TAIL:], time.monotonic() - began


class CommandActionPlugin:
    """Runs the configured command for every committed failover decision."""

    def __init__(self) -> None:
        self.runs: list[dict[str, Any]] = []

    @hookimpl
    def meshd_config_models(self) -> dict[str, type[meshd.StrictModel]]:
        return {"failover_command": CommandConfig}

    @hookimpl
    def meshd_validate_config(self, config: LoadedConfig) -> list[ConfigIssue]:
        cfg: CommandConfig = config.plugin("failover_command")
        if not cfg.command:
            return []
        program = cfg.command[0]
        found = shutil.which(program) if os.sep not in program else (program if os.access(program, os.X_OK) else None)
        if found is None:
            keypath = ("failover_command", "command", 0)
            return [ConfigIssue(config.path, keypath, f"{program}: not an executable file (or not on PATH)",
                                config.line_of(keypath))]
        return []

    @hookimpl
    async def meshd_failover_committed(self, daemon: meshd.Daemon, decision: meshd.Decision) -> None:
        cfg: CommandConfig = daemon.plugin_config("failover_command")
        replay = bool(decision.extra.get("replay"))
        if not cfg.command or decision.action not in cfg.actions or (replay and not cfg.on_replay):
            return
        body = {**decision.to_json(), "federation": daemon.federation, "observer": daemon.region}
        env = {"MESHD_ACTION": decision.action, "MESHD_DECISION_REGION": decision.region,
               "MESHD_TARGET": decision.target or "", "MESHD_TERM": str(decision.term)}
        await self._execute(daemon, cfg, body, env, {"region": decision.region, "term": decision.term},
                            f"{decision.action} of {decision.region} (term {decision.term})")

    @hookimpl
    async def meshd_region_fenced(self, daemon: meshd.Daemon, fenced: bool, reason: str) -> None:
        cfg: CommandConfig = daemon.plugin_config("failover_command")
        action = "fence" if fenced else "unfence"
        if not cfg.command or action not in cfg.actions:
            return
        body = {"action": action, "region": daemon.region, "reason": reason, "federation": daemon.federation,
                "observer": daemon.region}
        await self._execute(daemon, cfg, body, {"MESHD_ACTION": action, "MESHD_REASON": reason},
                            {"region": daemon.region, "action": action}, f"{action} of {daemon.region} ({reason})")

    async def _execute(self, daemon: meshd.Daemon, cfg: CommandConfig, body: dict[str, Any], env: dict[str, str],
                       record: dict[str, Any], what: str) -> None:
        """Run the command once with ``body`` on stdin; count, record and log the outcome."""
        import anyio

        log = daemon.log.getChild("failover-command")
        env = {**os.environ, "MESHD_FEDERATION": daemon.federation, "MESHD_REGION": daemon.region, **env}
        payload = json.dumps(body, separators=(",", ":")).encode()
        result, code, err, took = await anyio.to_thread.run_sync(_run, list(cfg.command), payload, env, cfg.timeout)
        daemon.metrics.counter("failover_command_runs_total", "Runs of the failover command, by result",
                               ["result"]).labels(result).inc()
        self.runs.append({**record, "result": result, "exit": code, "seconds": round(took, 3)})
        name = Path(cfg.command[0]).name
        if result == "ok":
            log.info("%s ran for %s in %.2fs", name, what, took)
        elif result == "timeout":
            log.error("%s for %s was killed after %gs: %s", name, what, cfg.timeout, err.strip() or "no output")
        else:
            log.error("%s for %s failed (exit %s): %s", name, what, code, err.strip() or "no output")

    @hookimpl
    def meshd_status(self) -> dict[str, Any]:
        return {"failover_command": {"runs": self.runs[-20:]}}
