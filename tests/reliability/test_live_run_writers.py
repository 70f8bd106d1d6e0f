"""A live run's folder against a second writer, and every signal that should stop a run cleanly.

Real `distill-gui train` processes on a tiny pair: a `resume` while the run trains is refused (exit 2,
naming the process) and the run goes on to finish; two `resume`s of one stopped run at once: one
resumes, the other is refused; SIGINT, SIGTERM and SIGHUP each stop a run with a checkpoint
(resumable), and a second signal leaves it interrupted at its step.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from distill_gui.core.runs import RunDir

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def _config(tmp_path, tiny_pair, tiny_data, steps):
    teacher, student = tiny_pair
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps({
        "teacher": {"path": str(teacher)}, "student": {"path": str(student)}, "data": {"train": str(tiny_data)},
        "method": {"kind": "kd"},
        "training": {"max_steps": steps, "batch_size": 2, "save_steps": 2, "precision": "fp32", "logging_steps": 1},
    }))
    return path


def _start(config, runs):
    return subprocess.Popen([sys.executable, "-m", "distill_gui", "train", str(config), "--runs-dir", str(runs), "--events", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def _wait_for_step(child, step):
    """The run folder, once the run has logged ``step`` (the child is killed if it ended first)."""
    run_dir = None
    for line in child.stdout:
        event = json.loads(line)
        run_dir = event.get("run_dir", run_dir)
        if event["event"] == "StepLogged" and event["step"] >= step:
            return RunDir(run_dir)
    raise AssertionError(f"the run ended before step {step}: {child.stderr.read()[-2000:]}")


def _finish(child, timeout=600):
    """Wait for the child, reading and closing its pipes; returns its exit code."""
    child.communicate(timeout=timeout)
    return child.returncode


def _resume(run):
    return subprocess.run([sys.executable, "-m", "distill_gui", "resume", str(run.path)], capture_output=True, text=True,
                          env=ENV, timeout=600)


@pytest.mark.slow
def test_resume_of_a_live_run_is_refused_and_the_run_goes_on(tmp_path, tiny_pair, tiny_data):
    child = _start(_config(tmp_path, tiny_pair, tiny_data, 100_000), tmp_path / "runs")  # still training when the resume comes
    try:
        run = _wait_for_step(child, 2)
        refused = _resume(run)
        assert refused.returncode == 2, refused.stderr
        assert "in use by process" in refused.stderr and "Traceback" not in refused.stderr
        assert run.status()["state"] == "running"
        step = run.status()["step"]
        child.send_signal(signal.SIGTERM)
        assert _finish(child) == 3  # it went on training, then stopped on request with a checkpoint
        assert run.status()["state"] == "stopped" and run.status()["step"] >= step
    finally:
        if child.poll() is None:
            child.kill()
            _finish(child)


@pytest.mark.slow
def test_two_resumes_at_once_one_wins(tmp_path, tiny_pair, tiny_data):
    child = _start(_config(tmp_path, tiny_pair, tiny_data, 12), tmp_path / "runs")
    run = _wait_for_step(child, 3)
    child.send_signal(signal.SIGINT)
    _finish(child)
    assert run.status()["state"] == "stopped"
    both = [subprocess.Popen([sys.executable, "-m", "distill_gui", "resume", str(run.path)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, env=ENV) for _ in range(2)]
    results = sorted((p.wait(timeout=600), p.communicate()[1]) for p in both)
    assert [code for code, _ in results] == [0, 2], results
    assert "in use by process" in results[1][1]
    assert run.status()["state"] == "finished"


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])  # SIGINT: test_two_resumes_at_once_one_wins
def test_a_signal_stops_the_run_with_a_checkpoint(tmp_path, tiny_pair, tiny_data, sig):
    child = _start(_config(tmp_path, tiny_pair, tiny_data, 400), tmp_path / "runs")
    run = _wait_for_step(child, 2)
    child.send_signal(getattr(signal, sig))
    assert _finish(child) == 3  # EXIT_STOPPED
    status = run.status()
    assert status["state"] == "stopped" and run.latest_checkpoint() is not None and run.can_resume()


@pytest.mark.slow
def test_a_second_signal_leaves_the_run_interrupted_at_its_step(tmp_path, tiny_pair, tiny_data):
    child = _start(_config(tmp_path, tiny_pair, tiny_data, 400), tmp_path / "runs")
    run = _wait_for_step(child, 2)
    child.send_signal(signal.SIGINT)
    time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    _finish(child)
    status = run.status()
    assert status["state"] in ("interrupted", "stopped"), status  # stopped when the first one won the race
    assert isinstance(status.get("step"), int) and status["step"] >= 2
    assert run.can_resume()
