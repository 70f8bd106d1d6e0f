"""How runs start, stop and come back: no folder for a refused run, a lock per folder, a full disk,
resume before the first checkpoint, a second Ctrl-C."""

from __future__ import annotations

import errno
import json

import pytest

from distill_gui.core import checkpoints as ckpt
from distill_gui.core.config import config_from_dict
from distill_gui.core.data import DataError
from distill_gui.core.events import LogMessage, StepLogged
from distill_gui.core.runs import RunDir, RunLockedError
from distill_gui.core.training import RunControl, train


def make_config(tiny_pair, data, **training):
    teacher, student = tiny_pair
    settings = {"max_steps": 4, "batch_size": 4, "learning_rate": 1e-3, "save_steps": 2, "precision": "fp32"}
    settings.update(training)
    return config_from_dict({"teacher": {"path": str(teacher)}, "student": {"path": str(student)},
                             "data": {"train": str(data)}, "method": {"kind": "kd"}, "training": settings})


def test_a_run_refused_for_bad_rows_leaves_no_folder_and_names_every_bad_line(tiny_pair, tmp_path):
    data = tmp_path / "bad.jsonl"
    lines = [json.dumps({"prompt": "Q", "completion": " A"})] + ["{not json"] * 12 + [b"\xff\xfe".decode("latin-1")]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    events = []
    with pytest.raises(DataError):
        train(make_config(tiny_pair, data), runs_root=tmp_path / "runs", on_event=events.append)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    report = "\n".join(e.text for e in events if isinstance(e, LogMessage) and e.level == "error")
    for line in range(2, 15):
        assert f"line {line}" in report, f"line {line} is not named in the report"


def test_a_second_writer_is_refused(tiny_pair, tiny_data, tmp_path):
    config = make_config(tiny_pair, tiny_data)
    control = RunControl()
    outcome = train(config, runs_root=tmp_path, control=control, on_event=lambda e: control.request_stop() if isinstance(e, StepLogged) else None)
    run = outcome.run
    assert outcome.state == "stopped"
    with run.lock():
        with pytest.raises(RunLockedError, match="in use by process"):
            train(run.load_config(), run=run, resume=True)
    assert run.status()["state"] == "stopped"  # the refused resume changed nothing


def test_resume_before_the_first_checkpoint_starts_over(tiny_pair, tiny_data, tmp_path):
    config = make_config(tiny_pair, tiny_data, save_steps=0)
    control = RunControl()
    outcome = train(config, runs_root=tmp_path, control=control, on_event=lambda e: control.request_stop() if isinstance(e, StepLogged) else None)
    run = outcome.run
    for _, path in ckpt.complete_step_checkpoints(run.checkpoints_dir):
        ckpt.remove_checkpoint(path)  # as if killed before its first checkpoint
    assert run.can_resume()
    events = []
    again = train(run.load_config(), run=run, resume=True, on_event=events.append)
    assert again.state == "finished" and again.step == 4
    assert any(isinstance(e, LogMessage) and "starting over from step 0" in e.text for e in events)
    assert [m["step"] for m in run.metrics() if m["event"] == "StepLogged"] == [1, 2, 3, 4]


def test_a_full_disk_stops_the_run_resumably(tiny_pair, tiny_data, tmp_path, monkeypatch):
    from distill_gui.core.training import checkpointing

    real = ckpt.commit
    calls = {"n": 0}

    def commit(staging, target, info=None):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        return real(staging, target, info)

    monkeypatch.setattr(checkpointing.ckpt, "commit", commit)
    outcome = train(make_config(tiny_pair, tiny_data), runs_root=tmp_path)
    assert outcome.state == "stopped" and "no space left on device" in outcome.reason
    assert "free" in outcome.reason and "resume" in outcome.reason
    status = outcome.run.status()
    assert status["state"] == "stopped" and "no space left" in status["message"]
    monkeypatch.setattr(checkpointing.ckpt, "commit", real)
    again = train(outcome.run.load_config(), run=outcome.run, resume=True)
    assert again.state == "finished"


def test_a_second_interrupt_leaves_the_run_interrupted_at_its_step(tiny_pair, tiny_data, tmp_path):
    def interrupt(event):
        if isinstance(event, StepLogged) and event.step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(make_config(tiny_pair, tiny_data), runs_root=tmp_path, on_event=interrupt)
    run = RunDir(next(p for p in tmp_path.iterdir() if p.is_dir()))
    status = run.status()
    assert status["state"] == "interrupted" and status["step"] == 3
    assert run.can_resume()


def test_the_same_config_gives_the_same_lora_run(tiny_pair, tiny_data, tmp_path):
    """LoRA adapters are initialised from training.seed: two runs of one config end with equal weights."""
    import torch
    from safetensors.torch import load_file

    config = make_config(tiny_pair, tiny_data, max_steps=1, save_steps=0)
    config.student.lora.enabled, config.student.lora.r = True, 4
    finals = [train(config, runs_root=tmp_path / name).final_path for name in ("a", "b")]
    first, second = (load_file(str(f / "adapter" / "adapter_model.safetensors")) for f in finals)
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0)
