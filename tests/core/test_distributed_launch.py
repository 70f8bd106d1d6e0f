"""Training past one device: the settings, the accelerate config, the launch, and real 2-process runs on CPU (gloo)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from distill_gui.core import distributed_launch
from distill_gui.core.config import ConfigError, TrainingConfig, config_from_dict
from distill_gui.core.distributed_launch import Devices, LaunchError, accelerate_config, check_launch

CPU = Devices(gpus=0, cpu_cores=2)
ONE_GPU = Devices(gpus=1, cpu_cores=16)
FOUR_GPUS = Devices(gpus=4, cpu_cores=16)


@pytest.fixture(autouse=True)
def _not_launched(monkeypatch):
    """These tests run outside any launcher, whatever started pytest."""
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", distributed_launch.LAUNCHED_ENV, distributed_launch.LAUNCH_DIR_ENV):
        monkeypatch.delenv(name, raising=False)


# ---- Settings ---------------------------------------------------------------------------------------


def test_settings_default_to_one_process_and_are_checked():
    training = config_from_dict({}).training
    assert (training.processes, training.strategy) == (1, "ddp")
    with pytest.raises(ConfigError, match=r"training.processes: 0 is below the minimum 1"):
        config_from_dict({"training": {"processes": 0}})
    with pytest.raises(ConfigError, match=r"training.strategy: 'zero' is not allowed; choose one of ddp, fsdp, deepspeed"):
        config_from_dict({"training": {"strategy": "zero"}})


@pytest.mark.parametrize(
    "devices, processes, strategy, message",
    [
        (ONE_GPU, 2, "ddp", "training.processes: 2 processes need 2 GPUs; only one is visible"),
        (FOUR_GPUS, 8, "ddp", "training.processes: 8 is more than this machine runs (4 GPUs are visible); set at most 4"),
        (CPU, 9, "ddp", "at most 2"),
        (CPU, 2, "deepspeed", "training.strategy: deepspeed cannot run here: it runs on GPUs only; use training.strategy: ddp or fsdp"),
    ],
)
def test_what_the_machine_cannot_run_is_refused_naming_the_setting(devices, processes, strategy, message):
    with pytest.raises(LaunchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_launch(TrainingConfig(processes=processes, strategy=strategy), devices)


def test_deepspeed_is_offered_only_when_installed(monkeypatch):
    monkeypatch.setattr(distributed_launch, "deepspeed_installed", lambda: False)
    assert FOUR_GPUS.strategies() == ("ddp", "fsdp")
    with pytest.raises(LaunchError, match="the deepspeed package is not installed"):
        check_launch(TrainingConfig(processes=2, strategy="deepspeed"), FOUR_GPUS)
    monkeypatch.setattr(distributed_launch, "deepspeed_installed", lambda: True)
    assert FOUR_GPUS.strategies() == ("ddp", "fsdp", "deepspeed")
    check_launch(TrainingConfig(processes=2, strategy="deepspeed"), FOUR_GPUS)
    assert CPU.strategies() == ("ddp", "fsdp")


def test_one_process_and_processes_already_launched_need_no_check(monkeypatch):
    check_launch(TrainingConfig(processes=1, strategy="fsdp"), CPU)  # the strategy matters from 2 processes on
    monkeypatch.setenv("WORLD_SIZE", "2")
    check_launch(TrainingConfig(processes=2, strategy="fsdp"), ONE_GPU)  # the launcher placed us already
    assert not distributed_launch.needs_launch(TrainingConfig(processes=2))


def test_accelerate_config_per_strategy():
    ddp = accelerate_config(TrainingConfig(processes=2), CPU, port=12345)
    assert ddp["distributed_type"] == "MULTI_GPU" and ddp["num_processes"] == 2 and ddp["main_process_port"] == 12345
    assert ddp["mixed_precision"] == "no" and "fsdp_config" not in ddp
    fsdp = accelerate_config(TrainingConfig(processes=4, strategy="fsdp", gradient_checkpointing=True), FOUR_GPUS, port=1)
    assert fsdp["distributed_type"] == "FSDP" and fsdp["fsdp_config"]["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    assert fsdp["fsdp_config"]["fsdp_activation_checkpointing"] is True
    ds = accelerate_config(TrainingConfig(processes=4, strategy="deepspeed", gradient_accumulation_steps=3), FOUR_GPUS, port=1)
    assert ds["distributed_type"] == "DEEPSPEED" and ds["deepspeed_config"]["zero_stage"] == 2
    assert ds["deepspeed_config"]["gradient_accumulation_steps"] == 3


def test_prepare_launch_writes_the_config_and_the_command(tmp_path):
    launch = distributed_launch.prepare_launch(TrainingConfig(processes=2), tmp_path, ["train", "x.yaml"], CPU)
    assert launch.argv == [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(tmp_path / "accelerate.yaml"),
                           "-m", "distill_gui", "train", "x.yaml"]
    written = yaml.safe_load(launch.config_file.read_text(encoding="utf-8"))
    assert written["num_processes"] == 2
    assert launch.env[distributed_launch.LAUNCHED_ENV] == "1" and launch.env[distributed_launch.LAUNCH_DIR_ENV] == str(tmp_path)
    with pytest.raises(LaunchError):
        distributed_launch.prepare_launch(TrainingConfig(processes=2, strategy="deepspeed"), tmp_path / "no", ["train"], CPU)
    assert not (tmp_path / "no").exists(), "a refused launch writes nothing"


def test_two_runs_meet_on_different_ports():
    ports = {accelerate_config(TrainingConfig(processes=2), CPU)["main_process_port"] for _ in range(5)}
    assert len(ports) > 1


def test_cli_takes_processes_and_strategy(tmp_path, capsys):
    from distill_gui.cli import main

    config = tmp_path / "c.yaml"
    config.write_text("name: x\n", encoding="utf-8")
    assert main(["train", str(config), "--dry-run", "--processes", "2", "--strategy", "fsdp"]) == 0
    training = yaml.safe_load(capsys.readouterr().out)["training"]
    assert (training["processes"], training["strategy"]) == (2, "fsdp")


# ---- Real runs of 2 CPU processes (gloo) ---------------------------------------------------------------


@pytest.fixture
def kd_config(tmp_path, tiny_pair):
    """A KD config on rows of very different lengths (the step's token count must be global)."""
    teacher, student = tiny_pair
    data = tmp_path / "train.jsonl"
    rows = []
    for i in range(8):
        a, b = i + 1, i + 2
        steps = " ".join(f"{a} + {b} = {a + b}." for _ in range(1 if i % 3 else 16))
        rows.append({"prompt": f"Question: What is {a} plus {b}? Answer:", "completion": f" {steps} #### {a + b}"})
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    config = tmp_path / "kd.yaml"
    config.write_text(json.dumps({
        "teacher": {"path": str(teacher)}, "student": {"path": str(student)},
        "data": {"train": str(data), "max_length": 256},
        "method": {"kind": "kd", "kd": {"alpha": 0.5, "chunk_size": 16}},
        "training": {"max_steps": 3, "max_grad_norm": 0.0, "precision": "fp32", "save_steps": 0, "learning_rate": 1e-3,
                     "seed": 3, "logging_steps": 1},
    }))
    return config


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "distill_gui", *args]


def _losses(runs: Path, metric: str | None = None) -> list[float]:
    """The logged loss of each step (or the method's ``metric``, e.g. ``kd``)."""
    from distill_gui.core.runs import RunDir

    folders = list(runs.iterdir())
    assert len(folders) == 1, f"every process must share one run folder, found {[f.name for f in folders]}"
    steps = [m for m in RunDir(folders[0]).metrics() if m["event"] == "StepLogged"]
    return [m["loss"] if metric is None else m["metrics"][metric] for m in steps]


LOSS_TOLERANCE = 1e-4
"""Relative: the same rows in the same order, summed over two processes instead of one (float32 sums in another order)."""


@pytest.mark.slow
def test_two_processes_of_ddp_and_of_fsdp_train_like_one_with_the_same_global_batch(tmp_path, kd_config):
    from safetensors.torch import load_file

    from distill_gui.core.runs import RunDir

    one = subprocess.run(_cli("train", str(kd_config), "--runs-dir", str(tmp_path / "one"), "training.batch_size=8"),
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    expected = _losses(tmp_path / "one")
    expected_weights = load_file(str(RunDir(next((tmp_path / "one").iterdir())).final_model() / "model.safetensors"))
    print("one process, batch 8:     ", expected)
    for strategy in ("ddp", "fsdp"):
        runs = tmp_path / strategy
        two = subprocess.run(_cli("train", str(kd_config), "--processes", "2", "--strategy", strategy, "--runs-dir", str(runs),
                                  "training.batch_size=4", "training.save_steps=2"),
                             capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert two.returncode == 0, two.stderr[-3000:]
        assert f"starting 2 processes ({strategy}) through accelerate launch" in two.stderr
        got = _losses(runs)
        print(f"two processes, batch 4, {strategy}:", got)
        assert len(got) == len(expected) == 3
        assert got == pytest.approx(expected, rel=LOSS_TOLERANCE), strategy
        # The plotted method metrics are over every process's rows too, not the main process's alone.
        for metric in ("kd", "ce"):
            assert _losses(runs, metric) == pytest.approx(_losses(tmp_path / "one", metric), rel=LOSS_TOLERANCE), (strategy, metric)
        run = RunDir(next(runs.iterdir()))
        assert run.status()["state"] == "finished" and run.final_model() is not None
        weights = load_file(str(run.final_model() / "model.safetensors"))
        assert weights.keys() == expected_weights.keys()
        for key, value in expected_weights.items():
            torch.testing.assert_close(weights[key], value, rtol=LOSS_TOLERANCE, atol=1e-6, msg=f"{strategy}: {key}")
        written = yaml.safe_load((run.path / "accelerate.yaml").read_text(encoding="utf-8"))
        assert written["num_processes"] == 2 and written["distributed_type"] == {"ddp": "MULTI_GPU", "fsdp": "FSDP"}[strategy]
        assert run.load_config().training.processes == 2, "the run folder's config re-runs the same way"
        assert two.stdout.strip().splitlines() == [str(run.path)], "the folder is printed once, by the main process"
        checkpoint = run.latest_checkpoint()
        assert sorted(p.name for p in checkpoint.glob("rng_state*.pth")) == ["rng_state_0.pth", "rng_state_1.pth"]
        # The Trainer saved through FSDP (sharded weights gathered), not through DDP.
        assert (checkpoint / "pytorch_model_fsdp.bin").is_file() == (strategy == "fsdp")


def _events(runs: Path) -> list[dict]:
    folders = list(runs.iterdir()) if runs.exists() else []
    if not folders or not (folders[0] / "events.jsonl").exists():
        return []
    lines = (folders[0] / "events.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip().startswith("{")]


def _wait_for(runs: Path, kind: str, proc: subprocess.Popen, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in _events(runs) if e["event"] == kind]
        if found:
            return found[-1]
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    pytest.fail(f"no {kind} event (the processes ended: {proc.poll() is not None})")


@pytest.mark.slow
def test_two_processes_pause_and_stop_together(tmp_path, kd_config):
    """Requests through control.json: the main process reads them, every process pauses at the same step,
    and a stop ends both processes cleanly with a checkpoint both wrote into (one run folder)."""
    from distill_gui.core.run_requests import request
    from distill_gui.core.runs import RunDir

    runs = tmp_path / "runs"
    err_path = tmp_path / "stderr.log"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(_cli("train", str(kd_config), "--processes", "2", "--runs-dir", str(runs), "training.batch_size=4",
                                     "training.max_steps=100000"), stdout=subprocess.DEVNULL, stderr=err, cwd=tmp_path)
    try:
        _wait_for(runs, "StepLogged", proc)
        run = RunDir(next(runs.iterdir()))
        request(run.path, "pause")
        paused = _wait_for(runs, "RunPaused", proc)
        assert run.status()["state"] == "paused"
        request(run.path, "resume")
        _wait_for(runs, "RunResumed", proc)
        request(run.path, "pause")
        _wait_for(runs, "RunPaused", proc)
        request(run.path, "stop")  # asked while paused: both processes leave the pause and stop
        code = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = err_path.read_text(encoding="utf-8", errors="replace")
    assert code == 3, stderr[-3000:]  # the exit code of a stopped run, as with one process
    stopped = _wait_for(runs, "RunStopped", proc)
    assert stopped["step"] >= paused["step"]
    assert [p.name for p in runs.iterdir()] == [run.path.name]
    assert run.status()["state"] == "stopped"
    checkpoint = run.latest_checkpoint()
    assert checkpoint is not None and checkpoint.name == f"step-{stopped['step']:06d}"
    assert sorted(p.name for p in checkpoint.glob("rng_state*.pth")) == ["rng_state_0.pth", "rng_state_1.pth"], "both processes saved"
    assert "Traceback" not in stderr
