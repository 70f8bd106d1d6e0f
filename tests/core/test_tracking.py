"""training.report_to: none, tensorboard, mlflow and trackio, each writing its files into the run folder."""

from __future__ import annotations

import os

import pytest

from distill_gui.core.config import ConfigError, config_from_dict
from distill_gui.core.training import train


def _config(tiny_pair, tiny_data, report_to):
    _, student = tiny_pair
    return config_from_dict({
        "name": "tracked", "student": {"path": str(student)}, "data": {"train": str(tiny_data)}, "method": {"kind": "sft"},
        "training": {"max_steps": 2, "batch_size": 4, "save_steps": 0, "precision": "fp32", "report_to": report_to},
    })


def test_report_to_defaults_to_none_and_checks_its_values():
    assert config_from_dict({}).training.report_to == ["none"]
    with pytest.raises(ConfigError, match="training.report_to: 'wandb' is not allowed"):
        config_from_dict({"training": {"report_to": ["wandb"]}})
    with pytest.raises(ConfigError, match="none cannot be combined"):
        config_from_dict({"training": {"report_to": ["none", "tensorboard"]}})
    assert config_from_dict({"training": {"report_to": "tensorboard"}}).training.report_to == ["tensorboard"]


def test_none_writes_no_tracker_files(tiny_pair, tiny_data, tmp_path):
    run = train(_config(tiny_pair, tiny_data, ["none"]), runs_root=tmp_path).run
    assert run.metrics() and not any((run.path / d).exists() for d in ("tensorboard", "mlruns", "trackio"))


def test_tensorboard_writes_event_files_in_the_run_folder(tiny_pair, tiny_data, tmp_path):
    pytest.importorskip("tensorboard")
    outcome = train(_config(tiny_pair, tiny_data, ["tensorboard"]), runs_root=tmp_path)
    assert outcome.state == "finished"
    events = list((outcome.run.path / "tensorboard").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    assert [m["step"] for m in outcome.run.metrics() if m["event"] == "StepLogged"] == [1, 2]  # our files as always


def test_mlflow_writes_a_file_store_in_the_run_folder(tiny_pair, tiny_data, tmp_path):
    pytest.importorskip("mlflow")
    outcome = train(_config(tiny_pair, tiny_data, ["mlflow"]), runs_root=tmp_path)
    assert outcome.state == "finished"
    if (outcome.run.path / "mlflow.db").is_file():  # the SQLite store (full mlflow)
        import sqlite3

        with sqlite3.connect(outcome.run.path / "mlflow.db") as db:
            assert db.execute("select count(*) from metrics where key = 'loss'").fetchone()[0] >= 1
    else:  # the file store (mlflow-skinny has no SQLAlchemy)
        assert list((outcome.run.path / "mlruns").rglob("metrics/loss")), "the logged loss is in the MLflow store"


@pytest.mark.slow
def test_trackio_writes_its_database_in_the_run_folder(tiny_pair, tiny_data, tmp_path):
    """Through the CLI, as the app runs training (Trackio reads where to write when it is first imported)."""
    pytest.importorskip("trackio")
    import subprocess
    import sys

    import yaml

    from distill_gui.core.config import config_to_dict
    from distill_gui.core.runs import list_runs

    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(config_to_dict(_config(tiny_pair, tiny_data, ["trackio"]))), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "TRACKIO_DIR"}
    done = subprocess.run([sys.executable, "-m", "distill_gui", "train", str(config_file), "--runs-dir", str(tmp_path / "runs")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = list_runs(tmp_path / "runs")
    assert [p for p in (run.path / "trackio").rglob("*.db") if p.stat().st_size > 0]
