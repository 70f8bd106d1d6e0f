"""SIGKILL while a run's status, metrics, samples and events are being written: every reader copes, the
next attempt never glues its first record to a torn line, and the series has each step once."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import run_writer
from harness import REPO, iterations

from distill_gui.core.config import RunConfig
from distill_gui.core.runs import RunDir, read_status_file


def test_sigkill_while_recording_a_run(tmp_path):
    run = RunDir.create(tmp_path, RunConfig(name="killed"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(Path(__file__).parent)])}
    rng = random.Random(99)
    torn = 0
    n = iterations()
    for _ in range(n):
        child = subprocess.Popen([sys.executable, run_writer.__file__, str(run.path)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env)
        try:
            for _ in range(rng.randint(1, 4)):
                assert child.stdout.readline(), child.stderr.read()
            time.sleep(rng.uniform(0, 0.01))
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
            child.stderr.close()
        data, problems, readable = read_status_file(run.status_path)
        assert readable and not problems, problems  # status.json is replaced atomically: never half written
        status = run.status()
        assert status["state"] == "interrupted" and not run.owner_alive()
        steps = [r["step"] for r in run.metrics()]
        assert steps == list(range(1, len(steps) + 1)), "a step is missing or repeated"
        sample_steps = [r["step"] for r in run.samples()]
        assert sample_steps == sorted(set(sample_steps))
        torn += bool(run.file_problems())
    # A torn line stands alone: no line holds the start of a second record (a record glued to a torn one).
    for path in (run.metrics_path, run.samples_path, run.events_path):
        lines = path.read_bytes().split(b"\n")
        assert all(line.count(b'{"event"') <= 1 for line in lines), f"{path.name}: a record glued to a torn line"
        if path != run.events_path:  # rewritten on each resume: a torn line can only be the last
            bad = [i for i, line in enumerate(lines) if line.strip() and not _is_json(line)]
            assert all(i == len(lines) - 1 for i in bad), (path.name, bad, len(lines))
    print(f"\nrun folder kills: {n} iterations, {torn} left a torn line that readers skipped")


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True
