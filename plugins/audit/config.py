"""The ``audit:`` section of a region's daemon config."""

from __future__ import annotations

from pydantic import Field

from meshd.auditcheck import Severity
from meshd.config import RelPath, StrictModel
from meshd.durations import Duration


class AuditConfig(StrictModel):
    """When this region audits itself, what makes the CLI fail, and where the framework mappings are."""

    enabled: bool = True
    """Answer audit requests and run the scheduled audit; false: this region answers that it is disabled."""
    schedule: Duration = Field(default=86_400.0, gt=0)
    """How often the region audits itself and raises ``ComplianceControlFailing`` for a control that stopped passing."""
    first_audit_after: Duration = Field(default=300.0, ge=0)
    """How long after start the first scheduled audit runs: a starting region lets its peers, keyrings and
    membership settle first, and a restart does not add a full audit (extra NATS connections, probes) to
    start-up."""
    fail_on_alert: Severity = Severity.HIGH
    """The least severity of a failed check that makes a scheduled audit raise an alert."""
    check_timeout: Duration = Field(default=5.0, gt=0)
    """The time box of one check; one that runs longer is recorded as ``error``."""
    failover_drill_max_age: Duration = Field(default=90 * 86_400.0, gt=0)
    """The oldest a failover drill may be before ``continuity.failover_drill`` fails."""
    nats_node_regions: dict[str, str] = Field(default_factory=dict)
    """The region of each NATS node, by ``server_name``, for nodes whose name does not contain their region
    (``continuity.replicas`` reads a stream's replicas by server name)."""
    systemd_unit: RelPath | None = None
    """The unit file ``host.systemd_exposure`` rates offline when systemd does not manage the daemon; default: an
    installed ``meshd@.service`` (/etc/systemd/system, /usr/lib/systemd/system)."""
    frameworks_dir: RelPath | None = None
    """A directory of framework mappings (``<framework>.yaml``); default: the ones shipped in etc/compliance."""
