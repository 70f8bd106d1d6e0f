"""GUI test setup: private QSettings and runs folder, a window factory, and the fake trainer."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

FAKE_TRAINER = Path(__file__).with_name("fake_trainer.py")


def pytest_collection_modifyitems(config, items):
    """Skip the GUI tests on a Qt binding that would abort the whole test session (see gui/compat.py)."""
    from distill_gui.gui.compat import binding_problem

    problem = binding_problem()
    if problem is None:
        return
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason=problem)
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(skip)


@pytest.fixture
def settings(tmp_path):
    """Application settings in a temporary INI file (never the user's)."""
    from PySide6.QtCore import QSettings

    from distill_gui.gui.settings import Settings

    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "qsettings"))
    return Settings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))


@pytest.fixture
def runs_root(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("DISTILL_GUI_RUNS_DIR", str(root))
    return root


@pytest.fixture
def make_window(qtbot, settings, runs_root):
    """Build main windows on the private settings and runs folder; closes them (stopping runs) at the end."""
    from distill_gui.core.config import RunConfig, dump_config
    from distill_gui.gui.app import _parse, create_window

    # Open on an empty configuration, as after a previous session, not on the demo pair.
    settings.set_last_config_yaml(dump_config(RunConfig()))
    windows = []

    def make(*argv: str, fake: bool = False):
        window = create_window(_parse(["--runs-dir", str(runs_root), *argv]), settings=settings)
        window.close_choice = window.CLOSE_STOP  # closing never asks (pytest-qt closes windows at teardown)
        if fake:
            window.controller.command = [sys.executable, str(FAKE_TRAINER)]
        qtbot.addWidget(window)
        window.show()
        qtbot.waitExposed(window)
        windows.append(window)
        return window

    yield make
    for window in windows:
        if window.isVisible():
            window.close()


def set_text(widget, text: str) -> None:
    """Type into a line edit the way a user does (textEdited fires)."""
    widget.setText(text)
    widget.textEdited.emit(text)
