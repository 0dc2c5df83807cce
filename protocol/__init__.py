"""Touchline's sync protocol: wire types, clocks and the pure merge rules.

Importable without the server: the Python client, the migration tool and the server share it.
Nothing in this package does I/O.
"""

from protocol.hlc import Hlc, HybridClock, stamp
from protocol.merge import FieldConflict, FieldVersion, RecordState, Write
from protocol.replica import Replica
from protocol.vector_clock import Causality, VersionVector
from protocol.wire import (
    Change,
    ConflictRecord,
    LoggedChange,
    PullRequest,
    PullResponse,
    PushRequest,
    PushResponse,
)

__all__ = [
    "Causality",
    "Change",
    "ConflictRecord",
    "FieldConflict",
    "FieldVersion",
    "Hlc",
    "HybridClock",
    "LoggedChange",
    "PullRequest",
    "PullResponse",
    "PushRequest",
    "PushResponse",
    "RecordState",
    "Replica",
    "VersionVector",
    "Write",
    "stamp",
]
