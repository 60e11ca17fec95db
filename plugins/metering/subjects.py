"""NATS subjects, stream names and the permissions of a region's usage publishers.

Usage follows the bus's ``meshd.<federation>.<kind>.<region>`` scheme, so a
NATS user can be confined to one region with two subject patterns:

- ``meshd.<fed>.usage.<region>[.<anything>]``: plain-JSON usage events from
  the region's services, captured by the region's JetStream stream;
- ``meshd.<fed>.usage-receipt.<region>.<token>``: signed receipts the daemon
  sends back after the ledger commit (what was counted, what was rejected);
- ``meshd.<fed>.usage-query.<asker>.<region>``: signed daemon-to-daemon
  totals requests (the bus's own kind);
- ``meshd.<fed>.usage-b.<region>.<bucket>``: usage events already sorted by
  tenant bucket (0-255), so that each ledger partition's consumer takes only
  its own buckets (see :func:`bucket_of`).

Partitioning: a tenant's bucket is the first byte of the SHA-256 of its id
(UTF-8), its partition ``bucket % partitions``. Subjects name the bucket, not
the partition, so changing the partition count changes only which consumer
filters which buckets, never where a publisher sends an event.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

USAGE_KIND = "usage"
RECEIPT_KIND = "usage-receipt"
QUERY_KIND = "usage-query"
RECEIPT_HEADER = "Meshd-Receipt"
"""A publisher sets this header to a token of its own to get receipts on the token's subject."""
MSG_ID_HEADER = "Nats-Msg-Id"
RECEIPT_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
BUCKET_KIND = "usage-b"
BUCKETS = 256
"""Fixed: the partition count may be changed up to this many without touching a publisher."""


def usage_subject(federation: str, region: str) -> str:
    return f"meshd.{federation}.{USAGE_KIND}.{region}"


def usage_subjects(federation: str, region: str) -> list[str]:
    """What the region's stream captures: the bare subject and anything below it (a service name...)."""
    base = usage_subject(federation, region)
    return [base, f"{base}.>", f"meshd.{federation}.{BUCKET_KIND}.{region}.*"]


def unsorted_subjects(federation: str, region: str) -> list[str]:
    """The subjects a publisher that does not sort by bucket uses (what the router consumes)."""
    base = usage_subject(federation, region)
    return [base, f"{base}.>"]


def receipt_subject(federation: str, region: str, token: str) -> str:
    return f"meshd.{federation}.{RECEIPT_KIND}.{region}.{token}"


def stream_name(federation: str, region: str) -> str:
    return f"meshd_usage_{federation}_{region}"


def service_inbox_prefix(region: str) -> str:
    """Where a region's services receive JetStream acks (their users may subscribe only there)."""
    return f"_INBOX.usage.{region}"


CONSUMER = "ledger"
"""The consumer of the one-partition layout: no filter, everything in the stream."""
ROUTER = "router"
"""With several partitions: takes what arrived on unsorted subjects and forwards it to its buckets."""


def bucket_of(tenant: str) -> int:
    return hashlib.sha256(tenant.encode()).digest()[0]


def partition_of(tenant: str, partitions: int) -> int:
    return bucket_of(tenant) % partitions


def bucket_subject(federation: str, region: str, bucket: int) -> str:
    return f"meshd.{federation}.{BUCKET_KIND}.{region}.{bucket}"


def partition_consumer(partition: int, partitions: int) -> str:
    """Named after the layout too, so a consumer of an earlier partition count is recognized and removed."""
    return CONSUMER if partitions == 1 else f"{CONSUMER}-p{partition}of{partitions}"


def partition_filters(federation: str, region: str, partition: int, partitions: int) -> list[str]:
    """The bucket subjects partition ``partition`` consumes (nothing to filter with one partition)."""
    if partitions == 1:
        return []
    return [bucket_subject(federation, region, b) for b in range(partition, BUCKETS, partitions)]


def usage_publisher_permissions(federation: str, region: str) -> dict[str, Any]:
    """NATS permissions for the user of one region's services: publish usage there, read its receipts.

    Pass it to :func:`meshd.natsserver.authorization_block` (``extra_users``)
    or write it into the nats-server config by hand (see docs/metering.md).
    """
    return {
        "publish": {"allow": usage_subjects(federation, region)},
        "subscribe": {"allow": [f"meshd.{federation}.{RECEIPT_KIND}.{region}.>",
                                f"{service_inbox_prefix(region)}.>"]},
    }
