"""Experiment tracking (``training.report_to``): the Trainer's standard integrations, writing into the run folder.

``none`` (the default) reports to no tracker. ``tensorboard``, ``mlflow`` and ``trackio`` (one or
several) are passed to the Trainer, whose integrations write what they write; the run folder's own
files (``metrics.jsonl``, ``samples.jsonl``, ...) are written the same way either way. Unless the person
has pointed a tracker elsewhere through its own environment variable, its files go into the run folder:
``tensorboard/`` (event files), ``mlflow.db`` (MLflow's SQLite store; ``mlruns/``, its file store, where
SQLAlchemy is missing, as with mlflow-skinny), ``trackio/`` (Trackio's database).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

REPORT_TO = ("none", "tensorboard", "mlflow", "trackio")

# tracker -> (its package, the environment variable that says where it writes, the folder in the run)
_TRACKERS = {
    "tensorboard": ("tensorboard", "TENSORBOARD_LOGGING_DIR", "tensorboard"),
    "mlflow": ("mlflow", "MLFLOW_TRACKING_URI", "mlruns"),
    "trackio": ("trackio", "TRACKIO_DIR", "trackio"),
}
_ours: dict[str, str] = {}
"""Environment values this module set (a person's own settings are never replaced)."""


def check_report_to(values: list[str]) -> None:
    """Every value is a known tracker, and ``none`` stands alone (raises ConfigError otherwise)."""
    from distill_gui.core.schema import ConfigError

    for value in values:
        if value not in REPORT_TO:
            raise ConfigError(f"report_to: {value!r} is not allowed; choose none or any of {', '.join(REPORT_TO[1:])}")
    if "none" in values and len(values) > 1:
        raise ConfigError("report_to: none cannot be combined with a tracker; give none alone or the trackers you want")


def trackers(values: list[str]) -> list[str]:
    """The trackers asked for (``none`` and an empty list ask for none)."""
    return [v for v in values if v != "none"]


def report_to_argument(values: list[str], run_path: str | Path) -> list[str] | str:
    """The Trainer's ``report_to`` for ``values``; points each tracker at the run folder (see the module's doc).

    A tracker whose package is missing is a ConfigError naming the package to install.
    """
    from distill_gui.core.schema import ConfigError

    chosen = trackers(values)
    for name in chosen:
        package, variable, folder = _TRACKERS[name]
        if importlib.util.find_spec(package) is None:
            raise ConfigError(f"training.report_to: {name} needs the {package} package; pip install {package}, or remove it")
        value = _mlflow_uri(Path(run_path)) if name == "mlflow" else str(Path(run_path) / folder)
        _point(variable, value)
    return chosen or "none"


def _point(variable: str, value: str) -> None:
    """Set an environment variable unless the person set it themselves."""
    current = os.environ.get(variable)
    if current is None or _ours.get(variable) == current:
        os.environ[variable] = _ours[variable] = value


def _mlflow_uri(run_path: Path) -> str:
    """MLflow's SQLite store in the run folder, or its file store where SQLAlchemy is missing (mlflow-skinny)."""
    if importlib.util.find_spec("sqlalchemy") is not None and importlib.util.find_spec("alembic") is not None:
        return f"sqlite:///{run_path / 'mlflow.db'}"
    _point("MLFLOW_ALLOW_FILE_STORE", "true")  # the file store is in maintenance mode but still writes
    return (run_path / _TRACKERS["mlflow"][2]).as_uri()


def tensorboard_dir(run_path: str | Path) -> Path:
    """Where a run's TensorBoard event files are (the folder TensorBoard is opened on)."""
    return Path(run_path) / _TRACKERS["tensorboard"][2]


def tensorboard_command(run_path: str | Path) -> list[str] | None:
    """The command that serves a run's TensorBoard logs, or None when TensorBoard is not installed."""
    import sys

    if importlib.util.find_spec("tensorboard") is None:
        return None
    return [sys.executable, "-m", "tensorboard.main", "--logdir", str(tensorboard_dir(run_path))]
