"""The window, its pages and run supervision, driven with the fake trainer (fast)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QComboBox, QLineEdit, QSpinBox, QWidget

from distill_gui.core import config as cfg
from distill_gui.core.events import StepLogged
from distill_gui.core.methods.kd import KDConfig
from distill_gui.core.runs import RunDir

pytestmark = [pytest.mark.gui, pytest.mark.qt_log_ignore("propagateSizeHints")]

REPO = Path(__file__).resolve().parents[2]


def fake_config(tmp_path: Path, steps: int = 40, **training) -> cfg.RunConfig:
    """A valid config for the fake trainer (paths exist but are never loaded)."""
    (tmp_path / "m").mkdir(exist_ok=True)
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "p", "completion": "c"}) + "\n", encoding="utf-8")
    config = cfg.RunConfig(name="fake")
    config.teacher.path = config.student.path = str(tmp_path / "m")
    config.data.train = str(data)
    config.training.max_steps = steps
    config.training.sample_steps = 5
    config.training.save_steps = 5
    for key, value in training.items():
        setattr(config.training, key, value)
    return config


def test_window_opens_before_torch_is_imported(tmp_path):
    """In a fresh interpreter: the window shows with neither torch nor transformers imported."""
    script = textwrap.dedent(f"""
        import os, sys
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        os.environ["DISTILL_GUI_RUNS_DIR"] = {str(tmp_path / 'runs')!r}
        from PySide6.QtCore import QSettings
        from PySide6.QtWidgets import QApplication
        app = QApplication([])
        from distill_gui.gui.app import _parse, create_window
        from distill_gui.gui.settings import Settings
        window = create_window(_parse([]), Settings(QSettings({str(tmp_path / 's.ini')!r}, QSettings.Format.IniFormat)))
        window.show()
        heavy = ("torch" in sys.modules, "transformers" in sys.modules)
        app.processEvents()
        print("SHOWN", window.isVisible(), *heavy)
        window.inspector.latest = -1
        window.close()
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])})
    assert "SHOWN True False False" in result.stdout, result.stdout + result.stderr


def test_widgets_are_named_after_config_keys_with_docs(make_window):
    window = make_window()
    for key, cls, name in [
        ("training.max_steps", cfg.TrainingConfig, "max_steps"),
        ("training.learning_rate", cfg.TrainingConfig, "learning_rate"),
        ("method.kind", cfg.MethodConfig, "kind"),
        ("method.kd.beta", KDConfig, "beta"),
        ("student.lora.enabled", cfg.LoraConfig, "enabled"),
        ("teacher.quantization", cfg.ModelConfig, "quantization"),
        ("data.format", cfg.DataConfig, "format"),
    ]:
        widget = window.findChild(QWidget, key)
        assert widget is not None, key
        assert widget.toolTip() == cfg.field_doc(cls, name)
    assert isinstance(window.findChild(QWidget, "training.max_steps"), QSpinBox)
    assert isinstance(window.findChild(QWidget, "method.kind"), QComboBox)
    assert isinstance(window.findChild(QWidget, "student.lora.enabled"), QCheckBox)


def test_config_round_trips_through_widgets_and_yaml(make_window, tmp_path):
    window = make_window()
    config = fake_config(tmp_path)
    config.method.kind = "kd"
    config.method.kd.loss = "jsd"
    config.method.kd.beta = 0.25
    config.training.learning_rate = 3e-4
    config.training.probe_prompts = ["What is 2+2?", "Say hi."]
    config.student.lora.enabled = True
    config.student.lora.target_modules = ["q_proj", "v_proj"]
    config.data.columns = {"prompt": "question"}
    window.set_config(config)
    assert window.current_config() == config
    assert window.findChild(QWidget, "method.kd.beta").isEnabled()
    # The cache file is editable only while the teacher cache is on.
    assert not window.findChild(QWidget, "method.kd.teacher_cache").isEnabled()
    window.findChild(QWidget, "method.kd.cache_teacher").setChecked(True)
    assert window.findChild(QWidget, "method.kd.teacher_cache").isEnabled()
    assert window.current_config().method.kd.cache_teacher
    window.findChild(QWidget, "method.kd.cache_teacher").setChecked(False)
    # Edits in widgets land in the config.
    window.findChild(QSpinBox, "training.max_steps").setValue(77)
    assert window.current_config().training.max_steps == 77
    path = tmp_path / "saved.yaml"
    assert window.save_config_file(path)
    assert cfg.load_config(path).training.max_steps == 77
    other = make_window()
    assert other.load_config_file(path)
    assert other.current_config().training.probe_prompts == ["What is 2+2?", "Say hi."]
    assert other.current_config().data.columns == {"prompt": "question"}


def test_bad_value_is_reported_not_started(make_window):
    window = make_window(fake=True)
    window.set_config(cfg.RunConfig())  # no models, no data
    assert not window.start_run()
    assert "student.path" in window.status_label.text() or "teacher.path" in window.status_label.text()
    assert window.controller.state == "idle"


def test_run_lifecycle_with_fake_trainer(make_window, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_STEP_S", "0.03")
    window = make_window(fake=True)
    window.set_config(fake_config(tmp_path, steps=60))
    qtbot.mouseClick(window.train_page.start_button, Qt.MouseButton.LeftButton)
    controller = window.controller
    qtbot.waitUntil(lambda: controller.step >= 8, timeout=20000)
    qtbot.waitUntil(lambda: window.generations_page.row_count() > 0, timeout=10000)
    plots = window.train_page.plots
    qtbot.waitUntil(lambda: all(plots.point_count(key) >= 8 for key in plots.curves if key != "eval_loss"), timeout=5000)
    assert "step" in window.train_page.progress.text()
    # Pause and continue.
    qtbot.mouseClick(window.train_page.pause_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: controller.state == "paused", timeout=5000)
    assert window.train_page.pause_button.text() == "Resume"
    paused_at = controller.step
    qtbot.wait(200)
    assert controller.step == paused_at
    qtbot.mouseClick(window.train_page.pause_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: controller.state == "running", timeout=5000)
    # Stop: a checkpoint is saved and the run can be resumed.
    with qtbot.waitSignal(controller.sig_ended, timeout=10000) as ended:
        qtbot.mouseClick(window.train_page.stop_button, Qt.MouseButton.LeftButton)
    assert ended.args[0] == "stopped"
    run = RunDir(controller.run_dir)
    assert run.can_resume()
    stopped_at = controller.step
    # Resume from the Runs page, and let it finish.
    window.show_page("Runs")
    qtbot.waitUntil(lambda: window.runs_page.select_run(run.path) and window.runs_page.resume_button.isEnabled(), timeout=10000)
    with qtbot.waitSignal(controller.sig_ended, timeout=20000) as ended:
        qtbot.mouseClick(window.runs_page.resume_button, Qt.MouseButton.LeftButton)
    assert ended.args[0] == "finished"
    assert run.status()["state"] == "finished"
    assert window.train_page.plots.point_count("loss") == 60  # the first part from disk, the rest live
    assert window.generations_page.step_combo.count() == 12
    assert stopped_at < 60
    # Open the finished run from the Runs page: plots and generations rebuilt from disk.
    window.train_page.clear()
    window.generations_page.clear()
    window.runs_page.refresh()
    qtbot.waitUntil(lambda: window.runs_page.select_run(run.path) and window.runs_page.selected_summary().state == "finished", timeout=10000)
    assert not window.runs_page.resume_button.isEnabled()
    qtbot.mouseClick(window.runs_page.open_button, Qt.MouseButton.LeftButton)
    assert window.train_page.plots.point_count("loss") == 60
    assert window.generations_page.row_count() == 2
    assert window.stack.currentWidget() is window.train_page


def test_shortcuts_start_and_stop(make_window, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_STEP_S", "0.05")
    window = make_window(fake=True)
    window.set_config(fake_config(tmp_path, steps=500))
    window.start_action.trigger()
    qtbot.waitUntil(lambda: window.controller.step >= 2, timeout=20000)
    assert window.start_action.shortcut().toString() == "Ctrl+Return"
    assert window.stop_action.shortcut().toString() == "Ctrl+."
    with qtbot.waitSignal(window.controller.sig_ended, timeout=10000) as ended:
        window.stop_action.trigger()
    assert ended.args[0] == "stopped"


def test_the_go_menu_opens_each_page_by_its_shortcut(make_window):
    from PySide6.QtWidgets import QMenu

    from distill_gui.gui.main_window import PAGES

    window = make_window()
    go = next(m for m in window.menuBar().findChildren(QMenu) if m.title() == "&Go")
    assert [a.text() for a in go.actions()] == list(PAGES)
    for index in (2, 0, len(PAGES) - 1):
        action = go.actions()[index]
        assert action.shortcut().toString() == f"Ctrl+{index + 1}"
        action.trigger()
        assert window.sidebar.currentRow() == index and window.stack.currentIndex() == index


@pytest.mark.parametrize("knob, kind, words", [("FAKE_KILL_AT", "killed", "SIGKILL"), ("FAKE_CRASH_AT", "error", "something broke")])
def test_crash_of_the_child_is_shown_and_the_app_keeps_working(make_window, qtbot, tmp_path, monkeypatch, knob, kind, words):
    monkeypatch.setenv(knob, "4")
    window = make_window(fake=True)
    window.inspect_timer.timeout.disconnect(window.inspect_models)  # the fake models are not models: Start would wait on them
    window.set_config(fake_config(tmp_path, steps=50))
    with qtbot.waitSignal(window.controller.sig_ended, timeout=20000) as ended:
        window.start_run()
    state, message = ended.args
    assert state == "failed"
    assert words in message
    assert words in window.train_page.state_label.text()
    assert window.train_page.start_button.isEnabled()
    run = RunDir(window.controller.run_dir)
    # The app writes nothing into the folder: its readers see the dead process and call the run interrupted.
    assert run.status()["state"] == "interrupted" and run.can_resume()
    # The app still works: a new run starts and finishes.
    monkeypatch.delenv(knob)
    window.set_config(fake_config(tmp_path, steps=5))
    with qtbot.waitSignal(window.controller.sig_ended, timeout=20000) as ended:
        window.start_run()
    assert ended.args[0] == "finished"


def test_leave_running_on_close_and_reattach_on_restart(make_window, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_STEP_S", "0.05")
    window = make_window(fake=True)
    window.set_config(fake_config(tmp_path, steps=400))
    window.start_run()
    qtbot.waitUntil(lambda: window.controller.step >= 3, timeout=20000)
    run = RunDir(window.controller.run_dir)
    pid = window.controller.pid
    window.close_choice = window.CLOSE_LEAVE
    window.close()
    assert not window.isVisible()
    time.sleep(0.3)
    assert run.status()["state"] == "running"
    step_then = run.status()["step"]
    qtbot.waitUntil(lambda: run.status()["step"] > step_then + 2, timeout=10000)  # it trains on without us

    again = make_window(fake=True)  # restart: follows the live run from its folder
    assert again.controller.attached
    assert again.controller.state == "running"
    assert Path(again.controller.run_dir) == run.path
    assert again.train_page.plots.point_count("loss") >= step_then
    before = again.train_page.plots.point_count("loss")
    qtbot.waitUntil(lambda: again.train_page.plots.point_count("loss") > before + 2, timeout=10000)
    with qtbot.waitSignal(again.controller.sig_ended, timeout=20000) as ended:
        assert again.controller.stop()
    assert ended.args[0] == "stopped"
    assert run.status()["state"] == "stopped"
    assert pid is not None


def test_restart_shows_the_last_finished_run(make_window, qtbot, tmp_path):
    window = make_window(fake=True)
    window.set_config(fake_config(tmp_path, steps=10))
    with qtbot.waitSignal(window.controller.sig_ended, timeout=20000):
        window.start_run()
    run_dir = window.controller.run_dir
    window.close()
    again = make_window(fake=True)
    assert again.shown_run == run_dir
    assert not again.controller.attached
    assert again.train_page.plots.point_count("loss") == 10
    assert "finished" in again.train_page.state_label.text()


def test_plots_stay_fast_with_100k_points(make_window):
    window = make_window()
    plots = window.train_page.plots
    for plot in plots.plots.values():
        assert plot.ctrl.downsampleCheck.isChecked() or plot.getViewBox() is not None
    for step in range(100_000):
        plots.add_event(StepLogged(step=step, total_steps=100_000, loss=1.0 / (step + 1), metrics={"kd": 0.5, "ce": 0.2},
                                   learning_rate=1e-4, grad_norm=1.0, tokens_per_s=100.0))
    started = time.perf_counter()
    plots.refresh()
    window.train_page.grab()
    assert time.perf_counter() - started < 3.0
    assert plots.point_count("loss") == 100_000
    curve = plots.curves["loss"]
    assert curve.opts["downsampleMethod"] == "peak" and curve.opts["clipToView"]


def test_plots_follow_the_palette(make_window, qapp):
    from PySide6.QtGui import QColor, QPalette

    window = make_window()
    plots = window.train_page.plots
    original = qapp.palette()
    dark = QPalette(original)
    dark.setColor(QPalette.ColorRole.Base, QColor(30, 30, 30))
    dark.setColor(QPalette.ColorRole.Text, QColor(230, 230, 230))
    try:
        qapp.setPalette(dark)
        qapp.processEvents()
        assert plots.graphics.backgroundBrush().color() == QColor(30, 30, 30)
        assert plots.plots["Loss"].getAxis("left").textPen().color() == QColor(230, 230, 230)
    finally:
        qapp.setPalette(original)


def test_model_folder_can_be_dropped(make_window, tmp_path):
    from PySide6.QtCore import QMimeData, QPointF, QUrl
    from PySide6.QtGui import QDropEvent

    window = make_window()
    folder = tmp_path / "my-model"
    folder.mkdir()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(folder))])
    chooser = window.models_page.teacher
    event = QDropEvent(QPointF(5, 5), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    chooser.dropEvent(event)
    assert window.findChild(QLineEdit, "teacher.path").text() == str(folder)
    assert window.current_config().teacher.path == str(folder)


def test_a_reattached_run_pauses_and_stops_through_its_folder(make_window, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_STEP_S", "0.05")
    window = make_window(fake=True)
    window.set_config(fake_config(tmp_path, steps=400))
    window.start_run()
    qtbot.waitUntil(lambda: window.controller.step >= 2, timeout=20000)
    run = RunDir(window.controller.run_dir)
    window.close_choice = window.CLOSE_LEAVE
    window.close()
    again = make_window(fake=True)
    assert again.controller.attached and again.train_page.pause_button.isEnabled()
    assert again.controller.pause()
    qtbot.waitUntil(lambda: again.controller.state == "paused", timeout=10000)
    assert run.status()["state"] == "paused"
    assert again.controller.resume_training()
    qtbot.waitUntil(lambda: again.controller.state == "running", timeout=10000)
    with qtbot.waitSignal(again.controller.sig_ended, timeout=20000) as ended:
        assert again.controller.stop()
    assert ended.args[0] == "stopped" and run.status()["state"] == "stopped"


def test_a_stale_pid_in_status_is_never_followed_or_signalled(make_window, qtbot, tmp_path):
    """After a crash the pid in status.json may belong to another process: it is not the run's."""
    import json
    import subprocess
    import sys

    window = make_window(fake=True)
    window.set_config(fake_config(tmp_path, steps=3))
    with qtbot.waitSignal(window.controller.sig_ended, timeout=20000):
        window.start_run()
    run = RunDir(window.controller.run_dir)
    window.close()
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        status = json.loads(run.status_path.read_text())
        status.update(state="running", pid=bystander.pid)
        run.status_path.write_text(json.dumps(status))
        again = make_window(fake=True)
        again.open_run(str(run.path))
        assert not again.controller.attached
        assert not again.controller.stop()
        time.sleep(0.3)
        assert bystander.poll() is None, "an unrelated process was signalled"
    finally:
        bystander.kill()
        bystander.wait()
