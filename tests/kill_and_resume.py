"""The crash test every resumable method has: train in a child process, SIGKILL it at a chosen event, resume it
in another process, and compare the weights with an uninterrupted run's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file

DISTILL_GUI = [sys.executable, "-m", "distill_gui"]


def offline_env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1"}


def train_then_kill(command: list[str], config_path: Path, runs_dir: Path, kill_when: Callable[[object], bool]) -> str:
    """Run ``command train CONFIG`` with JSON events; SIGKILL it at the first event ``kill_when`` accepts.

    Returns the run folder. Fails when the child ended some other way (the test would prove nothing).
    """
    from distill_gui.core.events import event_from_json

    child = subprocess.Popen(
        [*command, "train", str(config_path), "--runs-dir", str(runs_dir), "--events", "json"],
        stdout=subprocess.PIPE, stdin=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=offline_env(),
    )
    run_dir = None
    assert child.stdout is not None and child.stdin is not None
    for line in child.stdout:
        event = event_from_json(line)
        run_dir = getattr(event, "run_dir", run_dir)
        if kill_when(event):
            child.send_signal(signal.SIGKILL)
            break
    child.wait(timeout=60)
    child.stdout.close()
    child.stdin.close()
    assert child.returncode == -signal.SIGKILL, f"the child was not killed (exit {child.returncode})"
    assert run_dir is not None, "the child never said where its run folder is"
    return run_dir


def resume(command: list[str], run_dir: str, *extra: str) -> subprocess.CompletedProcess:
    """``command resume RUN_DIR`` in a new process; asserts it finished."""
    result = subprocess.run([*command, "resume", run_dir, *extra], capture_output=True, text=True, env=offline_env(), timeout=600)
    assert result.returncode == 0, result.stderr
    return result


def weights(folder: str | Path) -> dict:
    return load_file(str(Path(folder) / "model.safetensors"))


def assert_same_weights(expected: str | Path, got: str | Path, atol: float = 1e-6) -> None:
    a, b = weights(expected), weights(got)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=atol, msg=key)
