"""A child process that records a run's events as training does, from the step after the last one on
disk, until it is killed from outside. Samples are large so that some kills land inside a write."""

from __future__ import annotations

import sys
from pathlib import Path

from distill_gui.core.events import RunStarted, Sample, SamplesGenerated, StepLogged
from distill_gui.core.runs import RunDir, RunRecorder


def main(path: Path) -> None:
    run = RunDir(path)
    with run.lock():
        steps = [r["step"] for r in run.metrics()]
        start = max(steps, default=0)
        record = RunRecorder(run)
        record(RunStarted(run_dir=str(path), total_steps=10**6, start_step=start))
        step = start
        while True:
            step += 1
            record(StepLogged(step=step, total_steps=10**6, loss=1.0 / step))
            record(SamplesGenerated(step=step, samples=(Sample(prompt="p" * 20_000, student=str(step) * 5_000),)))
            sys.stdout.write(f"{step}\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
