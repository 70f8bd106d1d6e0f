"""Run folders read defensively; a run's process known by more than its pid; one writer at a time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from distill_gui.core import checkpoints as ckpt
from distill_gui.core.config import ConfigError, RunConfig
from distill_gui.core.events import EvalLogged, RunStarted, Sample, SamplesGenerated, StepLogged
from distill_gui.core.process_identity import ProcessIdentity
from distill_gui.core.runs import RunDir, RunLockedError, RunOwnerError, RunRecorder, list_runs


@pytest.fixture
def run(tmp_path):
    return RunDir.create(tmp_path, RunConfig(name="r"))


def _status(run, data):
    """Write status.json as given: bytes and text as they are, anything else as JSON."""
    if isinstance(data, bytes):
        run.status_path.write_bytes(data)
    else:
        run.status_path.write_text(data if isinstance(data, str) else json.dumps(data))


@pytest.mark.parametrize(
    ("content", "state", "words"),
    [
        (b"\x00\x9c\xffPK\x03", "damaged", "not text"),
        ('[{"state": "running"}]', "damaged", "JSON list"),
        ('{"state": "stopped", "step": 5', "damaged", "not valid JSON"),
        ({"state": "stopped", "step": "five"}, "stopped", "step 'five'"),
        ({"state": "running", "pid": "1234", "step": 3}, "interrupted", "pid '1234'"),
        ({"state": "running", "pid": 2**40, "step": 3}, "interrupted", "pid 1099511627776"),
        ({"state": "running", "pid": -1, "step": 3}, "interrupted", "pid -1"),
        ({"state": "exploded", "step": 3}, "created", "state 'exploded'"),
        ({"state": "stopped", "step": True}, "stopped", "step True"),
    ],
)
def test_a_damaged_status_is_listed_with_what_is_wrong(run, content, state, words):
    _status(run, content)
    status = run.status()
    assert status["state"] == state and isinstance(status["step"], int)
    assert words in run.problem and words in run.describe() and "damaged:" in run.describe()
    with pytest.raises(RunOwnerError):
        run.signal_owner(signal.SIGINT)  # never os.kill(-1, ...) or a pid read as text


def test_step_falls_back_to_the_latest_checkpoint(run):
    with ckpt.atomic_checkpoint(run.checkpoints_dir / "step-000008") as staging:
        (staging / "w").write_text("w")
    _status(run, {"state": "stopped", "step": "x"})
    assert run.status()["step"] == 8


def test_a_killed_run_reads_as_interrupted_and_one_killed_after_final_as_finished(run):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _status(run, {"state": "running", "pid": dead.pid, "pid_started_at": time.time() - 5, "host": os.uname().nodename, "step": 4})
    assert run.status()["state"] == "interrupted" and not run.owner_alive()
    with ckpt.atomic_checkpoint(run.final_dir) as staging:
        (staging / "model.safetensors").write_text("w")
    assert run.status()["state"] == "finished"


def _sleeper():
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_pid_now_owned_by_another_process_is_not_the_run(run):
    other = _sleeper()
    try:
        # status.json names the live pid, but the run's process started at another time: a reused pid.
        _status(run, {"state": "running", "pid": other.pid, "pid_started_at": time.time() - 3600, "host": os.uname().nodename, "step": 1})
        assert run.status()["state"] == "interrupted" and run.owner() is None
        with pytest.raises(RunOwnerError, match="no signal sent"):
            run.signal_owner(signal.SIGINT)
        time.sleep(0.2)
        assert other.poll() is None, "the unrelated process was signalled"
        # A legacy status with a pid only: not trusted either.
        _status(run, {"state": "running", "pid": other.pid, "step": 1})
        assert run.status()["state"] == "interrupted"
        with pytest.raises(RunOwnerError):
            run.signal_owner(signal.SIGINT)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_the_runs_own_process_is_recognised_and_signalled(run):
    child = _sleeper()
    try:
        time.sleep(0.1)
        identity = ProcessIdentity(child.pid, 0.0, os.uname().nodename)
        from distill_gui.core.process_identity import process_start_time

        identity = ProcessIdentity(child.pid, process_start_time(child.pid), identity.host)
        _status(run, {"state": "running", **identity.to_record(), "step": 1})
        assert run.status()["state"] == "running" and run.owner() == identity
        assert run.signal_owner(signal.SIGTERM) == identity
        assert child.wait(timeout=10) == -signal.SIGTERM
    finally:
        child.kill()
        child.wait()


LOCK_AND_WAIT = """
import sys, time
from distill_gui.core.runs import RunDir
with RunDir(sys.argv[1]).lock():
    print("locked", flush=True)
    time.sleep(60)
"""


def test_one_process_holds_the_folder_and_a_second_is_refused_by_name(run):
    holder = subprocess.Popen([sys.executable, "-c", LOCK_AND_WAIT, str(run.path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=f"in use by process {holder.pid} "):
            with run.lock(timeout=0.2):
                pass
        _status(run, {"state": "running", "step": 2})  # status not written yet (models loading): the lock says it lives
        assert run.owner_alive() and run.status()["state"] == "running"
        assert run.owner().pid == holder.pid
        holder.kill()
        holder.wait()
        assert not run.owner_alive() and run.status()["state"] == "interrupted"
        with run.lock() as me:  # a killed holder's lock is free again
            assert me.pid == os.getpid() and json.loads(run.owner_path.read_text())["pid"] == os.getpid()
        assert not run.owner_path.exists()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


def test_a_damaged_config_names_the_line_or_key(run):
    run.config_path.write_text("name: r\ntraining:\n  max_steps: [1,\n")
    assert "config.yaml line" in run.problem
    with pytest.raises(ConfigError, match="config.yaml line"):
        run.load_config()
    run.config_path.write_text("name: r\ntraining: {max_steps: .nan}\n")
    assert "training.max_steps" in run.problem
    run.config_path.write_bytes(b"name: r\n\xff\xfe\x00\n")
    assert "config.yaml line 2: not UTF-8" in run.problem
    run.config_path.write_text("- a list\n")
    assert "not a configuration" in run.problem


def test_list_runs_lists_every_damaged_run(tmp_path):
    good = RunDir.create(tmp_path, RunConfig(name="good"))
    no_config = tmp_path / "20200101-000000-lost"
    no_config.mkdir()
    (no_config / "status.json").write_bytes(b"\xff" * 10)
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "a-file").write_text("x")
    runs = list_runs(tmp_path)
    assert {r.name for r in runs} == {good.name, no_config.name}
    lines = [r.describe() for r in runs]
    assert any("config.yaml is missing" in line and "damaged" in line for line in lines)
    assert list_runs(tmp_path / "absent") == []


def _step(step, loss=1.0):
    return StepLogged(step=step, total_steps=10, loss=loss)


def test_a_torn_last_line_is_skipped_and_never_glues_the_next_record(run):
    recorder = RunRecorder(run)
    for step in (1, 2):
        recorder(_step(step))
    with open(run.metrics_path, "ab") as fh:
        fh.write(b'{"event": "StepLogged", "step": 3, "tot')  # what a kill mid-write leaves
    recorder(_step(3, loss=0.5))
    assert [(r["step"], r["loss"]) for r in run.metrics()] == [(1, 1.0), (2, 1.0), (3, 0.5)]
    assert "1 unreadable line" in " ".join(run.file_problems())


def test_invalid_records_are_skipped(run):
    lines = [
        json.dumps(_step(1).to_dict()),
        "not json",
        "\udcff".encode("utf-8", "surrogatepass").decode("latin-1"),
        json.dumps({"event": "StepLogged", "step": "2", "loss": 1}),
        json.dumps({"event": "StepLogged", "step": 2, "loss": "high"}),
        json.dumps({"event": "EvalLogged", "step": 2, "metrics": [1]}),
        json.dumps([1, 2]),
        "[" * 100_000,
        json.dumps(EvalLogged(step=2, metrics={"eval_loss": 1.5}).to_dict()),
    ]
    run.metrics_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    records = run.metrics()
    assert [(r["event"], r["step"]) for r in records] == [("StepLogged", 1), ("EvalLogged", 2)]
    run.samples_path.write_text(
        json.dumps({"event": "SamplesGenerated", "step": 1, "samples": [{"prompt": 1, "student": "x"}]}) + "\n"
        + json.dumps(SamplesGenerated(step=2, samples=(Sample(prompt="p", student="s"),)).to_dict()) + "\n"
    )
    assert [r["step"] for r in run.samples()] == [2]


def test_a_resumed_run_continues_the_series_without_duplicates(run):
    recorder = RunRecorder(run)
    recorder(RunStarted(run_dir=str(run.path), total_steps=10))
    for step in range(1, 7):
        recorder(_step(step, loss=1.0))
    recorder(SamplesGenerated(step=6, samples=(Sample(prompt="p", student="old"),)))
    # Killed at step 6; the last checkpoint was at step 4. Without the writer's cleanup readers still keep one per step:
    lines = run.metrics_path.read_text().splitlines()
    run.metrics_path.write_text("\n".join(lines + [json.dumps(_step(5, loss=0.25).to_dict())]) + "\n")
    assert [(r["step"], r["loss"]) for r in run.metrics()][-2:] == [(5, 0.25), (6, 1.0)]
    recorder(RunStarted(run_dir=str(run.path), total_steps=10, start_step=4))
    assert [r["step"] for r in run.metrics()] == [1, 2, 3, 4] and run.samples() == []
    for step in (5, 6, 7):
        recorder(_step(step, loss=0.5))
    metrics = run.metrics()
    assert [r["step"] for r in metrics] == list(range(1, 8)) and all(r["loss"] == 0.5 for r in metrics[4:])
    steps = [e.step for e in run.events() if isinstance(e, StepLogged)]
    assert steps == sorted(set(steps)) == list(range(1, 8))
