"""The reliability suite: the run folder and configs attacked from outside (kills, damage, hostile input).

Every test here is marked ``reliability`` and runs by default; ``DISTILL_GUI_RELIABILITY_ITERATIONS``
raises the number of kill iterations (24 by default).
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.reliability)
