"""The alerts plugin's Prometheus series (all in the daemon's own registry)."""

from __future__ import annotations

from meshd.metrics import Metrics

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600)


class AlertMetrics:
    def __init__(self, metrics: Metrics):
        m = metrics
        self.received = m.counter("alerts_received_total", "Alerts raised or resolved through meshd_alert", ["status"])
        self.rejected = m.counter("alerts_rejected_total", "Malformed alerts dropped, by reason", ["reason"])
        self.active = m.gauge("alerts_active", "Alerts this daemon holds, by state", ["state"])
        self.groups = m.gauge("alerts_groups", "Aggregation groups this daemon holds")
        self.queued = m.counter("alerts_notifications_queued_total",
                                "Notification candidates written to the outbox", ["receiver"])
        self.sent = m.counter("alerts_notifications_sent_total", "Notifications a receiver accepted",
                              ["receiver"])
        self.failed = m.counter("alerts_notifications_failed_total",
                                "Failed delivery attempts, by receiver and reason", ["receiver", "reason"])
        self.dropped = m.counter("alerts_notifications_dropped_total",
                                 "Notifications given up (final error or too old), by receiver and reason",
                                 ["receiver", "reason"])
        self.deduplicated = m.counter("alerts_notifications_deduplicated_total",
                                      "Candidates not sent because the federation already told the receiver",
                                      ["receiver"])
        self.superseded = m.counter("alerts_notifications_superseded_total",
                                    "Candidates replaced by a newer one, or claims another daemon took over",
                                    ["receiver"])
        self.takeovers = m.counter("alerts_takeovers_total",
                                   "Claims of a silent (presumed dead) sender this daemon took over", ["receiver"])
        self.unfenced = m.counter("alerts_unfenced_sends_total",
                                  "Notifications sent without the KV notification log (it was unreachable)",
                                  ["receiver"])
        self.unfenced_merged = m.counter("alerts_unfenced_merged_total",
                                         "Unfenced sends written into the notification log once it was back",
                                         ["receiver"])
        self.latency = m.histogram("alerts_delivery_seconds",
                                   "From the group flush to the receiver's acceptance", ["receiver"],
                                   buckets=LATENCY_BUCKETS)
        self.outbox_depth = m.gauge("alerts_outbox_depth", "Outbox rows not finished yet")
        self.outbox_oldest = m.gauge("alerts_outbox_oldest_pending_seconds",
                                     "Age of the oldest unfinished outbox row (0 when empty)")
        self.silences = m.gauge("alerts_silences_active", "Active silences")
        self.fence = m.gauge("alerts_fence_available", "1 while the KV notification log answers")
        self.errors = m.counter("alerts_internal_errors_total", "Unexpected errors inside the alerts plugin",
                                ["where"])
        self.fence.set(1)
