"""How a serving process sets up Python's cyclic garbage collector.

With the default thresholds (700, 10, 10) a server holding thousands of live sockets, each
a few hundred objects that live for hours, keeps promoting short-lived objects (a message
in flight, a task awaiting the database) into the oldest generation, and every time that
grows by a quarter the collector walks the whole heap: with 5,000 viewers connected,
865,000 objects and 0.6 s in which no socket is served (bench/README.md, "Live fan-out").
A young generation of tens of thousands of objects lets nearly all of them die before a
collection sees them, and the objects the process made before serving (modules, the app,
its routes) are moved out of the collector's sight.
"""

from __future__ import annotations

import gc
from typing import Final

COLLECTOR_THRESHOLDS: Final = (20_000, 10, 10)
"""Allocations before a young collection; young collections before a middle one; middle
ones before the collector considers the oldest generation."""


def tune_collector() -> None:
    """Call once the app is built, before serving."""
    gc.set_threshold(*COLLECTOR_THRESHOLDS)
    gc.freeze()
