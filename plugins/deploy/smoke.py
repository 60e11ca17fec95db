"""``meshd smoke --region R``: run a region's health probes once, now, and fail if any is critical.

The same probes the health plugin runs (its settings, kinds and deadlines),
each checked once without hysteresis: a smoke test asks "does it work right
now", not "has it been failing for a while". The pipeline runs it for each
region at the end of its stage; CI runs it between stages.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from meshd.config import LoadedConfig
from meshd.metrics import Metrics
from meshd.yamlsource import EncryptedValue

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True)
class SmokeResult:
    probe: str
    kind: str
    level: str
    value: float | None
    error: str | None

    @property
    def failed(self) -> bool:
        return self.level == "critical"

    def as_dict(self) -> dict[str, Any]:
        return {"probe": self.probe, "kind": self.kind, "level": self.level, "value": self.value,
                "error": self.error, "failed": self.failed}


async def smoke(config: LoadedConfig, hooks: Any, only: set[str] | None = None) -> list[SmokeResult]:
    """Each probe of ``config`` (or those named in ``only``) checked once, concurrently, under its own timeout."""
    from meshd_plugins.health.engine import ProbeRunner, UnavailableProbe
    from meshd_plugins.health.exposition import HealthMetrics
    from meshd_plugins.health.probes import ProbeContext
    from meshd_plugins.health.settings import resolve_probes

    def secret(value: str) -> str:
        if isinstance(value, EncryptedValue):
            plain = hooks.decrypt_secret(config, str(value))
            if plain is None:
                raise ValueError("an !encrypted probe setting cannot be decrypted here")
            return str(plain)
        return value

    resolved, _ = resolve_probes(config, hooks.probe_kinds(), unavailable=UnavailableProbe)
    resolved = [r for r in resolved if only is None or r.settings.name in only]
    context = ProbeContext(region=config.region, state_dir=config.daemon.state_dir, secret=secret,
                           limiter=anyio.CapacityLimiter(max(1, min(32, len(resolved)))))
    metrics = HealthMetrics(Metrics())
    log = logging.getLogger(f"meshd.{config.region}.smoke")
    runners = [ProbeRunner(r, context, metrics, log) for r in resolved]
    results: list[SmokeResult | None] = [None] * len(runners)

    async def one(i: int, runner: ProbeRunner) -> None:
        result, _, _ = await runner.check_once()
        results[i] = SmokeResult(runner.name, runner.kind, result.level.label, result.value, result.error)

    try:
        async with anyio.create_task_group() as tg:
            for i, runner in enumerate(runners):
                tg.start_soon(one, i, runner)
    finally:
        for runner in runners:
            await runner.close()
    return [r for r in results if r is not None]


def add_smoke(subparsers: Any, t: Any) -> None:
    p = subparsers.add_parser("smoke", help=t("deploy.smoke.help"), description=t("deploy.smoke.description"))
    p.add_argument("--region", required=True, help=t("deploy.smoke.region"))
    p.add_argument("--json", action="store_true", help=t("deploy.cli.json"))
    p.add_argument("--config", help=t("cli.opt.config"))
    p.set_defaults(handler=cmd_smoke)


def region_config(ctx: Any, given: str | None, region: str) -> LoadedConfig | None:
    """``region``'s config: the one given, or ``<region>.yaml`` beside it (a federation directory)."""
    config: LoadedConfig = ctx.load_config(given)
    if config.region == region:
        return config
    sibling = Path(config.path).parent / f"{region}.yaml"
    if region not in config.region_map.regions:
        ctx.error(ctx.t("deploy.smoke.unknown_region", region=region, regions=", ".join(config.region_map.regions)))
        return None
    if not sibling.exists():
        ctx.error(ctx.t("deploy.smoke.no_config", region=region, path=sibling))
        return None
    other: LoadedConfig = ctx.load_config(str(sibling))
    return other


def cmd_smoke(args: argparse.Namespace, ctx: Any) -> int:
    config = region_config(ctx, args.config, args.region)
    if config is None:
        return EXIT_USAGE
    results = anyio.run(smoke, config, ctx.hooks)
    failed = [r for r in results if r.failed]
    if args.json:
        ctx.print(json.dumps({"region": config.region, "ok": not failed,
                              "probes": [r.as_dict() for r in results]}, indent=2))
    else:
        for r in results:
            ctx.print(ctx.t("deploy.smoke.line", probe=r.probe, kind=r.kind, level=ctx.t(f"deploy.smoke.{r.level}"),
                            error=r.error or ""))
        key = "deploy.smoke.failed" if failed else "deploy.smoke.passed"
        ctx.print(ctx.t(key, region=config.region, count=len(results), failed=len(failed)))
    return EXIT_FAILURE if failed else EXIT_OK
