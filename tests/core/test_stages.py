"""A recipe of stages in one parent run folder: each stage's student is the previous result, one
continuous curve in the parent, a stop inside a stage resumes there."""

from __future__ import annotations

import pytest

from distill_gui.core.config import ConfigError, config_from_dict
from distill_gui.core.events import StepLogged
from distill_gui.core.runs import RunDir
from distill_gui.core.training import RunControl, train
from distill_gui.core.training.stages import stage_runs


def recipe(tiny_pair, tiny_data, **extra):
    teacher, student = tiny_pair
    return config_from_dict({
        "name": "recipe",
        "teacher": {"path": str(teacher)}, "student": {"path": str(student)}, "data": {"train": str(tiny_data)},
        "method": {"kind": "sft"},
        "training": {"max_steps": 2, "batch_size": 4, "save_steps": 1, "precision": "fp32", "learning_rate": 1e-3},
        "stages": [{"name": "sft"}, {"name": "kd", "method": {"kind": "kd"}, "training": {"max_steps": 3}}],
        **extra,
    })


def test_stages_run_in_order_in_one_parent_folder(tiny_pair, tiny_data, tmp_path):
    events = []
    outcome = train(recipe(tiny_pair, tiny_data), runs_root=tmp_path, on_event=events.append)
    parent = outcome.run
    assert outcome.state == "finished" and outcome.step == 5
    stages = stage_runs(parent)
    assert sorted(stages) == ["01-sft", "02-kd"]
    assert stages["02-kd"].load_config().student.path == str(stages["01-sft"].final_model())
    assert stages["02-kd"].load_config().method.kind == "kd"
    assert parent.final_model() == stages["02-kd"].final_model()
    steps = [r["step"] for r in parent.metrics() if r["event"] == "StepLogged"]
    assert steps == [1, 2, 3, 4, 5]  # one continuous curve
    assert parent.status()["state"] == "finished"
    assert [e.step for e in events if isinstance(e, StepLogged)] == [1, 2, 3, 4, 5]


def test_a_stopped_recipe_resumes_inside_its_stage(tiny_pair, tiny_data, tmp_path):
    control = RunControl()

    def stop_in_stage_two(event):
        if isinstance(event, StepLogged) and event.step == 3:
            control.request_stop()

    outcome = train(recipe(tiny_pair, tiny_data), runs_root=tmp_path, on_event=stop_in_stage_two, control=control)
    parent = outcome.run
    assert outcome.state == "stopped" and parent.status()["state"] == "stopped" and parent.can_resume()
    finished_first = stage_runs(parent)["01-sft"].final_model()
    again = train(None, run=RunDir(parent.path), resume=True)
    assert again.state == "finished"
    assert stage_runs(parent)["01-sft"].final_model() == finished_first  # not trained again
    steps = [r["step"] for r in parent.metrics() if r["event"] == "StepLogged"]
    assert steps == sorted(set(steps)) and steps[-1] == 5


def test_a_stage_with_an_unknown_method_is_refused_before_anything_runs(tiny_pair, tiny_data, tmp_path):
    config = recipe(tiny_pair, tiny_data)
    config.stages.append({"name": "bad", "method": {"kind": "nope"}})
    with pytest.raises(ConfigError, match=r"stages\[2\] \(bad\).*'nope'"):
        train(config, runs_root=tmp_path)
    assert not any(tmp_path.iterdir())
