"""Every file of a run folder truncated, emptied, bit-flipped, overwritten or replaced, then listed and read:
`distill-gui runs` exits 0 and lists the damaged run; no RunDir reader raises."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
from harness import cli, one_line_error

from distill_gui.core import checkpoints as ckpt
from distill_gui.core.config import RunConfig
from distill_gui.core.events import CheckpointSaved, EvalLogged, LogMessage, RunStarted, RunStopped, Sample, SamplesGenerated, StepLogged
from distill_gui.core.runs import RunDir, RunOwnerError, RunRecorder, list_runs

FILES = [
    "status.json", "config.yaml", "metrics.jsonl", "samples.jsonl", "events.jsonl", "train.log", "owner.json",
    "checkpoints/step-000006/COMPLETE", "checkpoints/step-000006/model.safetensors",
]


def _flip(data: bytes, seed: int) -> bytes:
    if not data:
        return b"\x01"
    out = bytearray(data)
    position = random.Random(seed).randrange(len(out))
    out[position] ^= 1 << random.Random(seed + 1).randrange(8)
    return bytes(out)


DAMAGES = {
    "truncated-half": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "truncated-to-one-byte": lambda p: p.write_bytes(p.read_bytes()[:1]),
    "emptied": lambda p: p.write_bytes(b""),
    "bit-flip-1": lambda p: p.write_bytes(_flip(p.read_bytes(), 1)),
    "bit-flip-2": lambda p: p.write_bytes(_flip(p.read_bytes(), 2)),
    "bit-flip-3": lambda p: p.write_bytes(_flip(p.read_bytes(), 3)),
    "random-bytes": lambda p: p.write_bytes(random.Random(7).randbytes(max(16, p.stat().st_size))),
    "deleted": lambda p: p.unlink(),
    "a-folder": lambda p: (p.unlink(), p.mkdir()),
}
# Damage that must show as damage (bit flips inside JSON text may still parse, e.g. a digit that changes).
MUST_SHOW = {"status.json": ("truncated-half", "truncated-to-one-byte", "emptied", "random-bytes", "a-folder"),
             "config.yaml": ("truncated-to-one-byte", "emptied", "random-bytes", "deleted", "a-folder")}


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A run stopped at step 6 with checkpoints at 2 and 4, metrics, samples, a log, and an owner record."""
    root = tmp_path_factory.mktemp("template")
    run = RunDir.create(root, RunConfig(name="victim"))
    record = RunRecorder(run)
    record(RunStarted(run_dir=str(run.path), total_steps=10))
    for step in range(1, 7):
        record(StepLogged(step=step, total_steps=10, loss=1.0 / step))
        if step % 2 == 0:
            with ckpt.atomic_checkpoint(run.checkpoints_dir / ckpt.step_dir_name(step), {"step": step}) as staging:
                (staging / "model.safetensors").write_bytes(random.Random(step).randbytes(4096))
                (staging / "scheduler.pt").write_bytes(b"sched")
            record(CheckpointSaved(step=step, path=str(run.checkpoints_dir / ckpt.step_dir_name(step))))
            record(EvalLogged(step=step, metrics={"eval_loss": 2.0 / step}))
            record(SamplesGenerated(step=step, samples=(Sample(prompt="2+2?", student="4", teacher="4"),)))
    record(LogMessage(text="a note"))
    record(RunStopped(step=6, checkpoint=str(run.checkpoints_dir / "step-000004")))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # the run's process has ended (the recorder wrote this test's own identity)
    run.write_status("stopped", pid=gone.pid, pid_started_at=time.time() - 60)
    with run.lock():
        shutil.copy(run.owner_path, root / "owner.json")
    shutil.copy(root / "owner.json", run.owner_path)
    return run


def _read_everything(run: RunDir) -> None:
    """Every reader the app and the CLI use; none may raise."""
    status = run.status()
    assert isinstance(status["state"], str) and isinstance(status["step"], int)
    run.problem, run.describe(), run.config_problem(), run.file_problems()
    for record in run.metrics():
        assert isinstance(record["step"], int)
    run.samples(), run.events(), run.checkpoints(), run.latest_checkpoint(), run.final_model(), run.can_resume()
    assert not run.owner_alive()
    with pytest.raises(RunOwnerError):
        run.signal_owner(signal.SIGINT)
    ckpt.latest_intact_checkpoint(run.checkpoints_dir)


def test_every_damaged_file_is_survived_and_shown(template, tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    made = {}
    for file in FILES:
        for way, harm in DAMAGES.items():
            copy = root / f"{template.name}-{file.replace('/', '_')}-{way}"
            shutil.copytree(template.path, copy)
            harm(copy / file)
            made[copy.name] = (file, way)
    for name in made:
        _read_everything(RunDir(root / name))
    listed = {run.name: run for run in list_runs(root)}
    for name, (file, way) in made.items():
        assert name in listed, f"{file} {way}: the run is no longer listed"
        if way in MUST_SHOW.get(file, ()):
            assert "damaged:" in listed[name].describe(), f"{file} {way}: {listed[name].describe()}"
        if file == "checkpoints/step-000006/model.safetensors":
            path, skipped = ckpt.latest_intact_checkpoint(listed[name].checkpoints_dir)
            assert path is not None and path.name == "step-000004" and skipped and skipped[0].startswith("step-000006: ")
    result = cli("runs", "--runs-dir", str(root))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(made) and all(any(name in line for line in lines) for name in made)
    print(f"\ndamaged run folders: {len(made)} variants ({len(FILES)} files x {len(DAMAGES)} ways), all listed")


def test_resume_of_a_damaged_run_is_one_line(template, tmp_path):
    copy = tmp_path / "damaged"
    shutil.copytree(template.path, copy)
    (copy / "config.yaml").write_bytes(b"name: victim\ntraining: {max_steps: \xff\xfe}\n")
    line = one_line_error(cli("resume", str(copy)))
    assert "config.yaml line 2" in line
    assert "not a run folder" in one_line_error(cli("resume", str(tmp_path / "nothing-here")))
