"""Pause/resume/stop requests through the run folder: the one control channel to a training process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from distill_gui.core.run_requests import RequestError, RequestWatcher, control_path, request
from distill_gui.core.training import RunControl


def test_new_requests_are_applied_once_and_old_ones_ignored(tmp_path):
    request(tmp_path, "stop")  # meant for an earlier process
    control = RunControl()
    watcher = RequestWatcher(tmp_path, control)
    assert watcher.check() is None and not control.stop_requested
    request(tmp_path, "pause")
    assert watcher.check() == "pause" and control.paused
    assert watcher.check() is None  # applied once
    request(tmp_path, "resume")
    request(tmp_path, "stop")  # two requests between polls: the latest counts
    assert watcher.check() == "stop" and control.stop_requested


def test_bad_requests_and_damaged_files(tmp_path):
    with pytest.raises(RequestError, match="not a request"):
        request(tmp_path, "explode")
    control_path(tmp_path).write_bytes(b"\xff\x00 not json")
    watcher = RequestWatcher(tmp_path, RunControl())
    assert watcher.check() is None
    assert request(tmp_path, "stop") == 1  # a damaged file restarts the numbering
    assert watcher.check() == "stop"


def test_the_watcher_thread_applies_requests(tmp_path):
    control = RunControl()
    with RequestWatcher(tmp_path, control, poll_s=0.01):
        request(tmp_path, "pause")
        for _ in range(200):
            if control.paused:
                break
            import time

            time.sleep(0.01)
    assert control.paused


def test_cli_stop_needs_a_live_run(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.yaml").write_text("name: x\n")
    result = subprocess.run([sys.executable, "-m", "distill_gui", "stop", str(folder)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "no process is training this run" in result.stderr
