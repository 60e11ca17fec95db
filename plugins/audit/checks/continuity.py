"""Business continuity: replicas and bus nodes, DR pairs, failover drills."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from meshd.auditcheck import AuditCheck, CheckResult, Severity

from .facts import failed, jurisdictions, nats_client, not_applicable, passed, plugin, section
from .residency import streams

if TYPE_CHECKING:
    from meshd.daemon import Daemon

MIN_REPLICAS = 3
"""A RAFT group of 3 keeps its quorum when one node (one region) is lost; 2 does not."""
DEFAULT_DRILL_MAX_AGE = 90 * 86400.0
"""A quarter: the usual cadence auditors expect for a tested recovery plan."""
MESHD_STREAMS = ("KV_meshd", "meshd_")


NODE_NAME_SEPARATORS = "-._"


def node_region(node: str, regions: list[str], declared: dict[str, str]) -> str | None:
    """The region a NATS node serves: declared in ``audit.nats_node_regions``, or named in the node's name.

    Stream info names a stream's peers by ``server_name`` only (a client sees
    no server tags), so the node names carry the region, e.g. ``eu-west-1`` or
    ``nats-eu-west-1-a``; the longest region found wins (``eu-west-10`` is not
    ``eu-west-1``).
    """
    if node in declared:
        return declared[node]
    found = None
    for region in regions:
        at = node.find(region)
        while at >= 0:
            end = at + len(region)
            if ((at == 0 or node[at - 1] in NODE_NAME_SEPARATORS)
                    and (end == len(node) or node[end] in NODE_NAME_SEPARATORS)):
                if found is None or len(region) > len(found):
                    found = region
                break
            at = node.find(region, at + 1)
    return found


async def replicas(daemon: Daemon) -> CheckResult:
    nc = nats_client(daemon)
    if nc is None:
        return not_applicable("the daemon's transport is not NATS")
    audit = section(daemon, "audit")
    declared = dict(getattr(audit, "nats_node_regions", None) or {})
    regions = sorted(daemon.config.region_map.regions)
    facts: list[dict[str, Any]] = []
    nodes: set[str] = set()
    short: list[str] = []
    one_region: list[str] = []
    unplaced: set[str] = set()
    for info in await streams(daemon):
        name = info.config.name
        if not name.startswith(MESHD_STREAMS):
            continue
        cluster = info.cluster
        peers = [cluster.leader] if cluster is not None and cluster.leader else []
        peers += [p.name for p in (cluster.replicas or [])] if cluster is not None else []
        nodes.update(peers)
        count = info.config.num_replicas or 1
        placed = {peer: node_region(peer, regions, declared) for peer in peers}
        unplaced.update(peer for peer, region in placed.items() if region is None)
        spread = sorted({r for r in placed.values() if r is not None})
        facts.append({"stream": name, "replicas": count, "peers": peers, "peer_regions": placed,
                      "regions": spread, "cluster": cluster.name if cluster is not None else None})
        if count < MIN_REPLICAS:
            short.append(f"{name} ({count})")
        elif len(spread) == 1 and all(placed.values()):
            one_region.append(f"{name} ({spread[0]})")
    server = dict(getattr(nc, "_server_info", None) or {})
    nodes.add(server.get("server_name") or server.get("server_id") or "?")
    # The cluster advertises every node's client URL (this one's included); streams name their peers.
    advertised = len(server.get("connect_urls") or [])
    count = max(len(nodes), advertised)
    evidence = {"streams": facts, "nats_nodes": sorted(nodes), "min_replicas": MIN_REPLICAS,
                "connect_urls": advertised, "node_count": count,
                "node_regions": {n: node_region(n, regions, declared) for n in sorted(nodes)}}
    problems = []
    if count < MIN_REPLICAS:
        problems.append(f"{count} NATS node(s) ({', '.join(sorted(nodes))}): losing one region can lose the bus")
    if short:
        problems.append(f"streams with fewer than {MIN_REPLICAS} replicas: {', '.join(short)}")
    if one_region:
        problems.append(f"every replica in one region, lost with it: {', '.join(one_region)}")
    if unplaced:
        problems.append(f"the region of NATS node(s) {', '.join(sorted(unplaced))} is unknown (name each node after "
                        "its region, or map it in audit.nats_node_regions)")
    if problems:
        return failed("; ".join(problems), **evidence)
    return passed(f"{len(facts)} streams with at least {MIN_REPLICAS} replicas spread over regions, on {count} "
                  "NATS nodes", **evidence)


def dr_pairs(daemon: Daemon) -> CheckResult:
    failover = plugin(daemon, "failover")
    if failover is None:
        return not_applicable("the failover plugin is not loaded")
    dr = getattr(getattr(failover, "engine", None), "dr", None)
    j = jurisdictions(daemon)
    by_jurisdiction: dict[str, list[str]] = {}
    for region, code in sorted(j.items()):
        by_jurisdiction.setdefault(code, []).append(region)
    missing: list[str] = []
    pairs: dict[str, str | None] = {}
    for region, code in sorted(j.items()):
        if len(by_jurisdiction[code]) < 2:
            continue
        entry = dr.regions.get(region) if dr is not None else None
        inside = [t for t in (dr.order(region) if dr is not None else []) if j.get(t) == code]
        pairs[region] = entry.pair if entry is not None and entry.pair else (inside[0] if inside else None)
        if not inside:
            missing.append(f"{region} ({code})")
    alone = sorted(regions[0] for regions in by_jurisdiction.values() if len(regions) == 1)
    evidence = {"pairs": pairs, "jurisdictions": by_jurisdiction, "alone_in_jurisdiction": alone}
    if missing:
        return failed(f"no DR pair inside the jurisdiction for {', '.join(missing)}", **evidence)
    if not pairs:
        return not_applicable("no jurisdiction has two regions", **evidence)
    return passed(f"{len(pairs)} regions each have a DR pair in their jurisdiction", **evidence)


def drill_max_age(daemon: Daemon) -> float:
    audit = section(daemon, "audit")
    value = getattr(audit, "failover_drill_max_age", None)
    return float(value) if value else DEFAULT_DRILL_MAX_AGE


def _last_drill(path: Path) -> tuple[float | None, int]:
    from meshd_plugins.failover.audit import verify

    result = verify(path)
    drills = [e for e in result.entries if e.kind == "request" and e.data.get("action") == "failover"]
    return (drills[-1].ts if drills else None), len(drills)


async def failover_drill(daemon: Daemon) -> CheckResult:
    if plugin(daemon, "failover") is None:
        return not_applicable("the failover plugin is not loaded")
    path = Path(daemon.state_dir) / "failover" / "audit.log"
    max_age = drill_max_age(daemon)
    last, count = await anyio.to_thread.run_sync(_last_drill, path) if path.exists() else (None, 0)
    now = time.time()
    evidence = {"audit_log": str(path), "drills_recorded": count, "last_drill_at": last,
                "last_drill_age_s": round(now - last, 3) if last else None, "max_age_s": max_age}
    if last is None:
        return failed(f"no failover drill in {path} (an operator-requested failover, `meshd failover REGION`)",
                      **evidence)
    if now - last > max_age:
        return failed(f"the last failover drill was {int((now - last) // 86400)} days ago "
                      f"(at most {int(max_age // 86400)} days)", **evidence)
    return passed(f"the last failover drill was {int((now - last) // 86400)} days ago", **evidence)


CHECKS = [
    AuditCheck("continuity.replicas", "Bus nodes and stream replicas survive the loss of one region", Severity.HIGH,
               replicas),
    AuditCheck("continuity.dr_pairs", "Every region with a same-jurisdiction peer has a DR pair", Severity.MEDIUM,
               dr_pairs),
    AuditCheck("continuity.failover_drill", "A failover drill was run recently", Severity.MEDIUM, failover_drill),
]
