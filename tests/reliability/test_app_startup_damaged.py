"""The app starts with a damaged last run (it reopens the last run at start-up) and lists every damaged run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from distill_gui.core.config import RunConfig, dump_config
from distill_gui.core.events import RunStarted, Sample, SamplesGenerated, StepLogged
from distill_gui.core.runs import RunDir, RunRecorder

pytestmark = [pytest.mark.gui, pytest.mark.qt_log_ignore("propagateSizeHints")]

STATUS_DAMAGE = {
    "binary": b"\x00\x9c\xffPK\x03\x04",
    "a-list": b'[{"state": "running", "pid": 1}]',
    "pid-text": b'{"state": "running", "pid": "1234", "step": 3}',
    "pid-too-large": b'{"state": "running", "pid": 99999999999, "step": 3}',
    "pid-minus-one": b'{"state": "running", "pid": -1, "step": 3}',
    "step-text": b'{"state": "stopped", "step": "three"}',
    "cut-short": b'{"state": "stopp',
}


def _run(root, name):
    run = RunDir.create(root, RunConfig(name=name))
    record = RunRecorder(run)
    record(RunStarted(run_dir=str(run.path), total_steps=10))
    for step in (1, 2, 3):
        record(StepLogged(step=step, total_steps=10, loss=1.0 / step))
    record(SamplesGenerated(step=3, samples=(Sample(prompt="p", student="s"),)))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run.write_status("running", pid=gone.pid)  # killed
    return run


@pytest.fixture
def window_on(qtbot, tmp_path, monkeypatch):
    from PySide6.QtCore import QSettings

    from distill_gui.gui.app import _parse, create_window
    from distill_gui.gui.settings import Settings

    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "qsettings"))
    settings = Settings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    settings.set_last_config_yaml(dump_config(RunConfig()))

    def make(root, last):
        monkeypatch.setenv("DISTILL_GUI_RUNS_DIR", str(root))
        settings.set_last_run(str(last))
        window = create_window(_parse(["--runs-dir", str(root)]), settings=settings)
        window.close_choice = window.CLOSE_STOP
        qtbot.addWidget(window)
        window.show()
        qtbot.waitExposed(window)
        return window

    return make


def test_the_app_opens_on_each_kind_of_damaged_last_run(window_on, tmp_path):
    root = tmp_path / "runs"
    runs = {}
    for name, content in STATUS_DAMAGE.items():
        run = _run(root, name)
        run.status_path.write_bytes(content)
        runs[name] = run
    config_broken = _run(root, "config-broken")
    config_broken.config_path.write_bytes(b"training: {max_steps: [\xff\n")
    lines_broken = _run(root, "lines-broken")
    with open(lines_broken.metrics_path, "ab") as fh:
        fh.write(b'not json\n{"event": "StepLogged", "step": "4", "loss": "x"}\n\xff\xfe\n{"event": "StepLo')
    with open(lines_broken.samples_path, "ab") as fh:
        fh.write(json.dumps({"event": "SamplesGenerated", "step": 4, "samples": [{"prompt": 1}]}).encode() + b"\n[1]\n")
    for last in [*runs.values(), config_broken, lines_broken]:
        window = window_on(root, last.path)
        assert window.isVisible()
        window.close()
