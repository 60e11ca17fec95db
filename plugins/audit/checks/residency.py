"""Data residency: failover targets, live routing decisions and where JetStream keeps the data."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from meshd.auditcheck import AuditCheck, CheckResult, Severity

from .facts import failed, jurisdiction_of, jurisdictions, nats_client, not_applicable, passed, plugin

if TYPE_CHECKING:
    from meshd.daemon import Daemon

SAMPLE_TENANTS = 200
"""Tenants routed per check: enough to cover every residency class, bounded for a large directory."""
CUSTOMER_STREAM = re.compile(r"^KV_meshd_customers_([A-Z]{2})$")
USAGE_STREAM = re.compile(r"^meshd_usage_(?P<federation>[^_]+)_(?P<region>.+)$")


def dr_targets(daemon: Daemon) -> CheckResult:
    failover = plugin(daemon, "failover")
    if failover is None:
        return not_applicable("the failover plugin is not loaded")
    from meshd_plugins.failover.config import dr_config_path
    from meshd_plugins.failover.drconfig import load_dr_config

    engine = getattr(failover, "engine", None)
    live = getattr(engine, "dr", None)
    path = Path(dr_config_path(daemon.config))
    on_disk, issues = load_dr_config(path, daemon.config.region_map) if path.is_file() else (None, [])
    j = jurisdictions(daemon)
    crossings: list[str] = []
    pairs: dict[str, list[dict[str, Any]]] = {}
    for source, dr in (("running", live), ("file", on_disk)):
        for region, entry in sorted((dr.regions if dr is not None else {}).items()):
            for target in ([entry.pair] if entry.pair else []) + list(entry.targets):
                pairs.setdefault(region, [])
                if not any(p["target"] == target for p in pairs[region]):
                    pairs[region].append({"target": target, "from": j.get(region), "to": j.get(target)})
                if j.get(target) != j.get(region):
                    crossings.append(f"{region} ({j.get(region)}) -> {target} ({j.get(target)}) in the {source} "
                                     "DR config")
    crossings += [f"{path}: {issue.message}" for issue in issues if "jurisdiction" in issue.message]
    evidence = {"dr_config": str(path), "targets": pairs, "file_issues": [i.message for i in issues]}
    if crossings:
        return failed("DR targets outside their jurisdiction: " + "; ".join(dict.fromkeys(crossings)), **evidence)
    count = sum(len(v) for v in pairs.values())
    return passed(f"{count} DR targets, every one inside its region's jurisdiction", **evidence)


def routes(daemon: Daemon) -> CheckResult:
    routing = plugin(daemon, "routing")
    engine = getattr(routing, "engine", None)
    if routing is None or engine is None:
        return not_applicable("the routing plugin is not loaded")
    from meshd_plugins.routing.engine import RoutingError

    directory = daemon.config.tenants
    if directory is None:
        return not_applicable("no tenant directory: no residency to keep")
    tenants = directory.tenants
    sample = sorted(tenants)[:SAMPLE_TENANTS]
    locations = sorted(daemon.config.region_map.regions)
    leaks: list[dict[str, Any]] = []
    counts = {"routed": 0, "refused": 0}
    for tenant_id in sample:
        residency = tenants[tenant_id].residency
        for location in locations:
            try:
                result = engine.route(location, tenant_id)
            except RoutingError:  # refusing (no eligible region, a sovereignty conflict) keeps the data in place
                counts["refused"] += 1
                continue
            counts["routed"] += 1
            if result.jurisdiction != residency or jurisdiction_of(daemon, result.region) != residency:
                leaks.append({"tenant": tenant_id, "residency": residency, "client": location,
                              "region": result.region, "jurisdiction": result.jurisdiction})
    evidence = {"tenants_sampled": len(sample), "tenants_total": len(tenants), "client_locations": locations,
                **counts, "outside_residency": leaks[:50]}
    if leaks:
        first = leaks[0]
        return failed(f"{len(leaks)} routes leave the tenant's residency, e.g. tenant {first['tenant']} "
                      f"({first['residency']}) from {first['client']} to {first['region']} "
                      f"({first['jurisdiction']})", **evidence)
    return passed(f"{counts['routed']} sampled routes of {len(sample)} tenants all stay in the tenant's residency",
                  **evidence)


def stream_jurisdiction(daemon: Daemon, name: str) -> str | None:
    """The jurisdiction whose data a stream holds, from its name; None for federation-wide streams."""
    m = CUSTOMER_STREAM.match(name)
    if m:
        return m.group(1)
    m = USAGE_STREAM.match(name)
    if m and m.group("federation") == daemon.federation:
        return jurisdiction_of(daemon, m.group("region"))
    return None


async def streams(daemon: Daemon) -> list[Any]:
    nc = nats_client(daemon)
    with anyio.fail_after(4):
        return list(await nc.jsm().streams_info())


def _placement_tags(info: Any) -> list[str]:
    placement = getattr(info.config, "placement", None)
    return list(getattr(placement, "tags", None) or [])


async def placement(daemon: Daemon) -> CheckResult:
    if nats_client(daemon) is None:
        return not_applicable("the daemon's transport is not NATS")
    wanted: dict[str, list[str]] = {}
    tenants_cfg = daemon.config.daemon.tenants
    if tenants_cfg is not None and not isinstance(tenants_cfg, Path):
        wanted = {j: list(tags) for j, tags in tenants_cfg.placement.items()}
    problems: list[str] = []
    facts: list[dict[str, Any]] = []
    for info in await streams(daemon):
        name = info.config.name
        home = stream_jurisdiction(daemon, name)
        if home is None:
            continue
        tags = _placement_tags(info)
        origins = ([info.config.mirror] if info.config.mirror else []) + list(info.config.sources or [])
        fact = {"stream": name, "jurisdiction": home, "placement_tags": tags,
                "cluster": getattr(info.cluster, "name", None) if info.cluster else None,
                "mirror": info.config.mirror.name if info.config.mirror else None,
                "sources": [s.name for s in info.config.sources or []]}
        facts.append(fact)
        if home in wanted and not set(wanted[home]) <= set(tags):
            problems.append(f"stream {name} ({home}) is placed with tags {tags or 'none'}, not {wanted[home]}")
        for origin in origins:
            theirs = stream_jurisdiction(daemon, origin.name)
            external = getattr(origin, "external", None)
            if theirs is not None and theirs != home:
                problems.append(f"stream {name} ({home}) copies {origin.name} ({theirs}) across jurisdictions")
            elif external is not None:
                problems.append(f"stream {name} ({home}) copies {origin.name} from another JetStream domain")
    evidence = {"streams": facts, "placement_config": wanted}
    if problems:
        return failed("; ".join(problems), **evidence)
    if not facts:
        return not_applicable("no usage stream or customer bucket on this bus", **evidence)
    return passed(f"{len(facts)} jurisdiction streams placed in their jurisdiction, no mirror or source crosses one",
                  **evidence)


CHECKS = [
    AuditCheck("residency.dr_targets", "Every DR target is inside its region's jurisdiction", Severity.HIGH,
               dr_targets),
    AuditCheck("residency.routes", "Routing never sends a tenant outside its residency", Severity.HIGH, routes),
    AuditCheck("residency.placement", "Usage streams and customer buckets stay in their jurisdiction",
               Severity.HIGH, placement),
]
