"""A stand-in for ``distill-gui train/resume --events json`` that trains nothing, for fast GUI tests.

It speaks the same contract as the real child: it holds the run folder's lock, records every event
into the folder with the core's RunRecorder (RunCreated first, a final RunFinished/RunStopped/RunFailed
last), prints them on stdout too, writes log lines on stderr, and takes pause/resume/stop requests
through the folder (core.run_requests) and stop on SIGINT/SIGTERM.

Environment knobs: FAKE_STEP_S (seconds a step, default 0.02), FAKE_CRASH_AT (exit abruptly with
code 3 at that step), FAKE_KILL_AT (SIGKILL itself at that step).
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from distill_gui.core import checkpoints as ckpt
from distill_gui.core.config import load_config
from distill_gui.core.events import (
    CheckpointSaved,
    LogMessage,
    RunCreated,
    RunFinished,
    RunPaused,
    RunResumed,
    RunStarted,
    RunStopped,
    Sample,
    SamplesGenerated,
    StepLogged,
    fan_out,
)
from distill_gui.core.run_requests import RequestWatcher
from distill_gui.core.runs import RunDir, RunRecorder
from distill_gui.core.training.control import RunControl


def _printer(event) -> None:
    try:
        print(event.to_json(), flush=True)
    except (BrokenPipeError, OSError):
        pass


def _save(run: RunDir, step: int, emit, final: bool = False) -> str:
    target = run.final_dir if final else run.checkpoints_dir / ckpt.step_dir_name(step)
    with ckpt.atomic_checkpoint(target, {"step": step}) as staging:
        (staging / "state.txt").write_text(str(step), encoding="utf-8")
    emit(CheckpointSaved(step=step, path=str(target)))
    return str(target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train")
    train.add_argument("config")
    train.add_argument("--runs-dir", required=True)
    train.add_argument("--events", default="json")
    resume = sub.add_parser("resume")
    resume.add_argument("run_dir")
    resume.add_argument("--events", default="json")
    args = parser.parse_args(argv)

    if args.command == "train":
        config = load_config(args.config)
        run = RunDir.create(args.runs_dir, config)
        start = 0
    else:
        run = RunDir(args.run_dir)
        config = run.load_config()
        latest = run.latest_checkpoint()
        start = int(latest.name.split("-")[1]) if latest else 0
    with run.lock(), RequestWatcher(run.path, control := RunControl(), poll_s=0.02):
        return _train(run, config, start, control)


def _train(run: RunDir, config, start: int, control: RunControl) -> int:
    emit = fan_out(RunRecorder(run), _printer)
    emit(RunCreated(run_dir=str(run.path)))

    def on_signal(_signum, _frame) -> None:  # like the real CLI: SIGINT/SIGTERM stop with a checkpoint
        control.request_stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    step_s = float(os.environ.get("FAKE_STEP_S", "0.02"))
    crash_at = int(os.environ.get("FAKE_CRASH_AT", "0"))
    kill_at = int(os.environ.get("FAKE_KILL_AT", "0"))
    total = config.training.max_steps or 20
    emit(RunStarted(run_dir=str(run.path), total_steps=total, start_step=start, method=config.method.kind,
                    student_params=1000, trainable_params=1000, teacher_params=2000))
    print(f"fake trainer: {total} steps from {start}", file=sys.stderr, flush=True)
    began = time.time()
    paused = False
    step = start
    while step < total:
        if control.paused and not paused and not control.stop_requested:
            paused = True
            emit(RunPaused(step=step))
        elif not control.paused and paused:
            paused = False
            emit(RunResumed(step=step))
        if control.stop_requested:
            path = _save(run, step, emit)
            emit(RunStopped(step=step, checkpoint=path))
            return 0
        if paused:
            time.sleep(0.02)
            continue
        time.sleep(step_s)
        step += 1
        if crash_at and step == crash_at:
            print("RuntimeError: something broke in the fake trainer", file=sys.stderr, flush=True)
            os._exit(3)
        if kill_at and step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        kd = 2.0 * math.exp(-step / 30) + 0.1
        ce = 3.0 * math.exp(-step / 40) + 0.2
        elapsed = time.time() - began
        emit(StepLogged(step=step, total_steps=total, loss=0.5 * kd + 0.5 * ce, metrics={"kd": kd, "ce": ce},
                        learning_rate=config.training.learning_rate, grad_norm=1.0 / step, tokens_per_s=1000.0 + step,
                        eta_s=(total - step) * step_s, elapsed_s=elapsed))
        if config.training.sample_steps and step % config.training.sample_steps == 0:
            prompts = config.training.probe_prompts or ["What is 2 plus 3?", "Name a colour."]
            emit(SamplesGenerated(step=step, samples=tuple(
                Sample(prompt=p, teacher=f"teacher answer to {p!r}", student=f"student answer at step {step}") for p in prompts)))
        if config.training.save_steps and step % config.training.save_steps == 0:
            _save(run, step, emit)
    emit(LogMessage(text="fake training done"))
    final = _save(run, step, emit, final=True)
    emit(RunFinished(step=step, final_path=final, elapsed_s=time.time() - began))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
