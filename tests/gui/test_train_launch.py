"""The Train page's processes and strategy: what they offer on a machine, and the launch they produce."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from PySide6.QtWidgets import QComboBox, QLabel, QSpinBox

from distill_gui.core import distributed_launch
from distill_gui.core.distributed_launch import Devices

pytestmark = [pytest.mark.gui, pytest.mark.qt_log_ignore("propagateSizeHints")]


def _valid_config(tmp_path: Path):
    """A config that passes the checks before a start (its model paths exist but are never loaded)."""
    from distill_gui.core.config import RunConfig

    (tmp_path / "m").mkdir(exist_ok=True)
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "p", "completion": "c"}) + "\n", encoding="utf-8")
    config = RunConfig(name="launch")
    config.teacher.path = config.student.path = str(tmp_path / "m")
    config.data.train = str(data)
    return config


def _started(window, monkeypatch) -> list:
    """Start the window's run, capturing the child watcher instead of starting the child."""
    watchers: list = []
    monkeypatch.setattr(window.controller, "_launch", lambda worker, attached: watchers.append(worker))
    assert window.start_run()
    return watchers


def test_two_cpu_processes_start_through_accelerate_launch(make_window, tmp_path, monkeypatch):
    window = make_window()
    window.set_config(_valid_config(tmp_path))
    page = window.train_page
    page.set_devices(Devices(gpus=0, cpu_cores=2))
    processes = window.findChild(QSpinBox, "training.processes")
    strategy = window.findChild(QComboBox, "training.strategy")
    assert processes.isEnabled() and not strategy.isEnabled()  # a strategy matters from 2 processes on
    assert [strategy.itemData(i) for i in range(strategy.count())] == ["ddp", "fsdp"], "without a GPU: no DeepSpeed"
    processes.setValue(2)
    assert strategy.isEnabled()
    assert "2 processes through accelerate launch" in window.findChild(QLabel, "devices_reason").text()
    config = window.current_config()
    assert (config.training.processes, config.training.strategy) == (2, "ddp")

    watcher = _started(window, monkeypatch)[0]
    argv = watcher.argv
    assert argv[1:4] == ["-m", "accelerate.commands.launch", "--config_file"]
    assert argv[5:8] == ["-m", "distill_gui", "train"] and argv[-2:] == ["--events", "json"]
    written = yaml.safe_load(Path(argv[4]).read_text(encoding="utf-8"))
    assert written["num_processes"] == 2 and written["distributed_type"] == "MULTI_GPU" and written["mixed_precision"] == "no"
    assert watcher.env[distributed_launch.LAUNCHED_ENV] == "1"
    assert watcher.env[distributed_launch.LAUNCH_DIR_ENV] == str(Path(argv[4]).parent)
    handed = yaml.safe_load(Path(argv[8]).read_text(encoding="utf-8"))  # the config the processes read
    assert handed["training"]["processes"] == 2


def test_one_process_starts_as_before(make_window, tmp_path, monkeypatch):
    window = make_window()
    window.set_config(_valid_config(tmp_path))
    window.train_page.set_devices(Devices(gpus=0, cpu_cores=2))
    watcher = _started(window, monkeypatch)[0]
    assert watcher.argv[: len(window.controller.command) + 1] == [*window.controller.command, "train"]
    assert "accelerate.commands.launch" not in watcher.argv and watcher.env == {}


def test_one_gpu_disables_processes_and_says_why(make_window, qtbot, tmp_path, monkeypatch):
    window = make_window()
    window.set_config(_valid_config(tmp_path))
    page = window.train_page
    page.set_devices(Devices(gpus=1, cpu_cores=16))
    processes = window.findChild(QSpinBox, "training.processes")
    reason = window.findChild(QLabel, "devices_reason")
    assert not processes.isEnabled()
    assert "Only one GPU" in reason.text() and "Only one GPU" in processes.toolTip()
    # A config written on a bigger machine is shown as it is, with why it cannot start here, and refused.
    config = _valid_config(tmp_path)
    config.training.processes = 2
    window.set_config(config)
    qtbot.waitUntil(processes.isEnabled)  # the user can go back to 1
    assert processes.value() == 2
    assert "training.processes: 2 processes need 2 GPUs" in reason.text()
    monkeypatch.setattr(distributed_launch, "devices", lambda: Devices(gpus=1, cpu_cores=16))  # what Start checks
    monkeypatch.setattr(window.controller, "_launch", lambda worker, attached: pytest.fail("must not start"))
    assert not window.start_run()
    assert "training.processes: 2 processes need 2 GPUs" in window.train_page.state_label.text()


def test_strategies_follow_the_gpus(make_window, monkeypatch):
    window = make_window()
    page = window.train_page
    strategy = window.findChild(QComboBox, "training.strategy")
    monkeypatch.setattr(distributed_launch, "deepspeed_installed", lambda: False)
    page.set_devices(Devices(gpus=4, cpu_cores=16))
    assert [strategy.itemData(i) for i in range(strategy.count())] == ["ddp", "fsdp"]
    assert "DeepSpeed needs GPUs and the deepspeed package" in strategy.toolTip()
    monkeypatch.setattr(distributed_launch, "deepspeed_installed", lambda: True)
    page.set_devices(Devices(gpus=4, cpu_cores=16))
    assert [strategy.itemData(i) for i in range(strategy.count())] == ["ddp", "fsdp", "deepspeed"]
    window.findChild(QSpinBox, "training.processes").setValue(4)
    strategy.setCurrentIndex(1)
    assert window.current_config().training.strategy == "fsdp"
    assert "4 processes through accelerate launch (4 GPUs" in window.findChild(QLabel, "devices_reason").text()


@pytest.mark.slow
def test_the_app_pauses_and_stops_a_run_of_two_processes(qtbot, tmp_path, tiny_pair, tiny_data, monkeypatch):
    """The controller starts 2 CPU processes through accelerate launch; Pause, Resume and Stop (requests
    through the run folder) reach both, and the run ends stopped in one folder with both processes' states."""
    from distill_gui.core.config import RunConfig
    from distill_gui.core.runs import RunDir
    from distill_gui.gui.supervisor import RunController

    monkeypatch.setattr(distributed_launch, "devices", lambda: Devices(gpus=0, cpu_cores=2))
    teacher, student = tiny_pair
    config = RunConfig(name="two")
    config.teacher.path, config.student.path, config.data.train = str(teacher), str(student), str(tiny_data)
    config.training.max_steps, config.training.batch_size, config.training.save_steps = 100000, 2, 0
    config.training.processes = 2
    controller = RunController()
    controller.start(config, tmp_path / "runs")
    try:
        qtbot.waitUntil(lambda: controller.state == RunController.RUNNING and controller.step >= 1, timeout=300_000)
        assert controller.pause()
        qtbot.waitUntil(lambda: controller.state == RunController.PAUSED, timeout=60_000)
        assert controller.resume_training()
        qtbot.waitUntil(lambda: controller.state == RunController.RUNNING, timeout=60_000)
        with qtbot.waitSignal(controller.sig_ended, timeout=300_000) as ended:
            assert controller.stop()
    finally:
        if controller.is_active():
            controller.kill()
            controller.wait_finished(10_000)
    state, message = ended.args
    assert state == RunController.STOPPED, message
    folders = list((tmp_path / "runs").iterdir())
    assert len(folders) == 1
    run = RunDir(folders[0])
    assert run.status()["state"] == "stopped"
    assert (run.path / "accelerate.yaml").is_file()
    checkpoint = run.latest_checkpoint()
    assert checkpoint is not None
    assert sorted(p.name for p in checkpoint.glob("rng_state*.pth")) == ["rng_state_0.pth", "rng_state_1.pth"]
