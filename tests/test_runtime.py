"""The serving process's garbage collector: young collections rare enough that live sockets'
short-lived objects die before one, and what existed before serving out of its sight."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from sync_server.runtime import COLLECTOR_THRESHOLDS, tune_collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
def test_serving_sets_the_collectors_thresholds_and_freezes_what_exists() -> None:
    assert gc.get_threshold() != COLLECTOR_THRESHOLDS
    tune_collector()
    assert gc.get_threshold() == COLLECTOR_THRESHOLDS == (20_000, 10, 10)
    assert gc.get_freeze_count() > 10_000  # the modules, the app: thousands of objects
