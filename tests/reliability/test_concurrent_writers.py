"""Several processes claim one run folder at the same instant: exactly one holds it, the others are
refused with a message naming the holder."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from harness import REPO, iterations

from distill_gui.core.config import RunConfig
from distill_gui.core.runs import RunDir

CLAIM = """
import sys, time
from distill_gui.core.runs import RunDir, RunLockedError
run = RunDir(sys.argv[1])
go = float(sys.argv[2])
time.sleep(max(0.0, go - time.time()))
try:
    with run.lock(timeout=0.3):
        print("won", flush=True)
        time.sleep(3.0)
except RunLockedError as exc:
    print("refused", exc, flush=True)
"""


def test_concurrent_claims_on_one_run_folder(tmp_path):
    run = RunDir.create(tmp_path, RunConfig(name="contested"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rounds = max(3, iterations() // 8)
    for _ in range(rounds):
        go = time.time() + 1.5  # every claimant starts at the same instant (after its imports)
        claimants = [subprocess.Popen([sys.executable, "-c", CLAIM, str(run.path), str(go)], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=env) for _ in range(4)]
        outputs = []
        for child in claimants:
            out, err = child.communicate(timeout=60)
            assert child.returncode == 0, err
            outputs.append((child.pid, out.strip()))
        winners = [pid for pid, out in outputs if out == "won"]
        assert len(winners) == 1, outputs
        for pid, out in outputs:
            if pid != winners[0]:
                assert out.startswith("refused") and f"in use by process {winners[0]} " in out, out
        assert not run.owner_alive() and not run.owner_path.exists()
