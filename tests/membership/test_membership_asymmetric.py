"""An asymmetric network: one daemon reaches only some peers, and nobody declares it dead.

NATS permissions break the links eu-west-1 <-> us-east-1 and eu-west-1 <->
us-west-2 (every message one addresses to the other is refused by the
server), while eu-central-1 still reaches everyone: the probes that fail
directly succeed through it (SWIM's indirect probe), so no one condemns
eu-west-1 and eu-west-1 condemns no one.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.nats

REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1"]
CUT_OFF = ["us-east-1", "us-west-2"]


def test_partial_reachability_is_not_death(membership_federation) -> None:
    fed, views = membership_federation(REGIONS, broken_links=[("eu-west-1", r) for r in CUT_OFF])

    def indirect(observer: str) -> float:
        return fed.metric(observer, "meshd_membership_probes_total", result="indirect_ack")

    # Wait until each cut-off peer has needed the indirect path several times (the test could fail).
    fed.wait_for(lambda: all(indirect(o) >= 3 for o in CUT_OFF) and indirect("eu-west-1") >= 3, 60,
                 what="several probes answered only through a helper")
    for observer in REGIONS:
        for region in REGIONS:
            if region != observer:
                assert views.deaths(observer, region) == 0, f"{observer} declared {region} dead"
    assert views.converged()
