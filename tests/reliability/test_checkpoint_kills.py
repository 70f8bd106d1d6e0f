"""SIGKILL at random points of checkpoint writes, rotations and replacements: nothing half-written is offered."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import checkpoint_writer
from harness import REPO, iterations

from distill_gui.core import checkpoints as ckpt


def _start(folder: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(Path(__file__).parent)])}
    return subprocess.Popen([sys.executable, str(Path(checkpoint_writer.__file__)), str(folder)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _check_folder(folder: Path) -> None:
    """Every folder under a checkpoint name is complete, intact, and holds its own step's files."""
    for child in folder.iterdir():
        if ckpt.STEP_PATTERN.match(child.name) or child.name == ckpt.FINAL_NAME:
            assert ckpt.is_complete(child), f"{child.name} is offered without its COMPLETE marker"
            assert ckpt.damage(child) is None, ckpt.damage(child)
            step = ckpt.read_marker(child)["step"]
            if child.name != ckpt.FINAL_NAME:
                assert child.name == ckpt.step_dir_name(step)
            for name in checkpoint_writer.FILES:
                assert (child / name).read_bytes() == checkpoint_writer.content(step, name), f"{child.name}/{name} is another step's"


def test_sigkill_inside_checkpoint_writes_rotations_and_replacements(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    rng = random.Random(1234)
    struck: Counter[str] = Counter()
    final_seen = False
    n = iterations()
    for _ in range(n):
        child = _start(folder)
        try:
            phases = rng.randint(1, 6)  # let it get this many phases in, then strike at a random instant
            last = ""
            for _ in range(phases):
                line = child.stdout.readline()
                if not line:
                    break
                last = line.split()[0]
                final_seen = final_seen or last == "done"
            time.sleep(rng.uniform(0, 0.03))
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
            rest = child.stdout.read()
            if rest.split():
                last = rest.split()[-2]  # the phase it was in when the signal landed
                final_seen = final_seen or "done" in rest.split()
            struck[last] += 1
            assert child.returncode == -signal.SIGKILL, child.stderr.read()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
            child.stderr.close()
        _check_folder(folder)
        found = ckpt.complete_step_checkpoints(folder)
        if found:
            path, skipped = ckpt.latest_intact_checkpoint(folder)
            assert path == found[-1][1] and skipped == []
        # What resume does first: sweep leftovers; a kill between moving final aside and renaming the new one
        # into place must not lose it.
        ckpt.sweep_partials(folder)
        assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]
        if final_seen:
            assert ckpt.is_complete(folder / ckpt.FINAL_NAME) and ckpt.damage(folder / ckpt.FINAL_NAME) is None
        _check_folder(folder)
    assert sum(struck.values()) == n
    assert struck["write"] + struck["rotate"] + struck["final"] >= n // 2, struck  # most kills land inside the work
    print(f"\ncheckpoint kills: {n} iterations, struck in {dict(struck)}")
