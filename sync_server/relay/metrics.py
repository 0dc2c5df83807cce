"""The relay's Prometheus metrics, one registry per app (tests build many apps in a process).

Counting is batched where the fan-out is hot: one increment per frame batch a connection
writes, not one per frame.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from sync_server.metrics import SyncMetrics

__all__ = ["CONTENT_TYPE_LATEST", "RelayMetrics"]

# Merge-to-send latency: from the commit that merged a change to the moment its frame was
# handed to a connection's transport, on this instance.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class RelayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.connections = Gauge(
            "touchline_relay_connections",
            "Open live connections by kind (coach, viewer) and transport (ws, sse).",
            ["kind", "transport"],
            registry=self.registry,
        )
        self.messages_sent = Counter(
            "touchline_relay_messages_sent",
            "Messages written to live connections, by kind of connection.",
            ["kind"],
            registry=self.registry,
        )
        self.queue_drops = Counter(
            "touchline_relay_queue_drops",
            "Connections dropped because their outbox filled up (told to resync).",
            ["kind"],
            registry=self.registry,
        )
        self.merge_to_send = Histogram(
            "touchline_relay_merge_to_send_seconds",
            "Time from a change's commit to its message being sent to a connection.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.bus_publish_failures = Counter(
            "touchline_relay_bus_publish_failures",
            "Announcements the bus could not publish (other instances catch up later).",
            registry=self.registry,
        )
        self.bus_gaps = Counter(
            "touchline_relay_bus_gaps",
            "Times the bus reconnected and every channel re-read the change log.",
            registry=self.registry,
        )
        self.log_reads = Counter(
            "touchline_relay_log_reads",
            "Times a match's new changes were read back from the change log (a commit on "
            "another instance, or one this instance could not relay from memory).",
            registry=self.registry,
        )
        self.refresh_errors = Counter(
            "touchline_relay_refresh_errors",
            "Failed reads of the change log while relaying (retried).",
            registry=self.registry,
        )
        # Sync traffic, conflicts, the log and the pool, in the same registry.
        self.sync = SyncMetrics(self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
