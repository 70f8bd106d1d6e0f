"""Running distill-gui from outside, as a user or a crash would: the CLI in a subprocess, iteration counts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def iterations(default: int = 24) -> int:
    """Kill iterations: ``DISTILL_GUI_RELIABILITY_ITERATIONS`` or ``default``."""
    return max(1, int(os.environ.get("DISTILL_GUI_RELIABILITY_ITERATIONS", default)))


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python -m distill_gui ARGS`` as a user would, offline, and capture its output."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    env.pop("DISTILL_GUI_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "distill_gui", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=timeout)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The single error line of a CLI run that failed on bad input; asserts there is nothing else."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, f"exit {result.returncode}: {result.stderr[-2000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("distill-gui: error: "), result.stderr[-2000:]
    return lines[0]
