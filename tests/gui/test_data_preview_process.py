"""The Data page's preview is parsed in a child process: a file that takes long (here a child stopped with
SIGSTOP while it has a request) never holds the window or the next file's preview, and a child that dies is
reported."""

from __future__ import annotations

import json
import os
import signal

import psutil
import pytest
from PySide6.QtWidgets import QLineEdit

from distill_gui.core.data import BadRow, DataReport, Example

pytestmark = [pytest.mark.gui, pytest.mark.qt_log_ignore("propagateSizeHints")]
WAIT_MS = 30_000


def type_into(widget: QLineEdit, text: str) -> None:
    widget.setText(text)
    widget.textEdited.emit(text)


def write_rows(path, n: int, bad: int = 0):
    rows = [json.dumps({"prompt": f"What is {i} + 1?", "completion": f" {i + 1}. #### {i + 1}"}) for i in range(n)]
    rows += ["{not json"] * bad
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_the_preview_is_parsed_in_a_child_and_arrives_as_the_core_objects(make_window, qtbot, tmp_path):
    window = make_window()
    page = window.data_page
    window.show_page("Data")
    with qtbot.waitSignal(window.previewer.sig_loaded, timeout=WAIT_MS) as loaded:
        type_into(window.findChild(QLineEdit, "data.train"), str(write_rows(tmp_path / "train.jsonl", 7, bad=2)))
    _, examples, report, count = loaded.args
    assert window.previewer.pid() not in (None, os.getpid())
    assert isinstance(report, DataReport) and all(isinstance(row, BadRow) for row in report.bad_rows)
    assert all(isinstance(e, Example) for e in examples) and count == 7 and examples[3].completion == " 4. #### 4"
    assert (report.total, report.kept, len(report.bad_rows)) == (9, 7, 2) and report.bad_fraction == pytest.approx(2 / 9)
    assert page.preview.rowCount() == 7 and page.bad_rows.rowCount() == 2
    assert window._data_report is report


def _stuck_child(window, qtbot, tmp_path):
    """The preview child, stopped (SIGSTOP) while it has a request: as a child still reading a huge file."""
    with qtbot.waitSignal(window.previewer.sig_loaded, timeout=WAIT_MS):
        type_into(window.findChild(QLineEdit, "data.train"), str(write_rows(tmp_path / "first.jsonl", 3)))
    stuck = window.previewer.pid()
    os.kill(stuck, signal.SIGSTOP)
    type_into(window.findChild(QLineEdit, "data.train"), str(write_rows(tmp_path / "slow.jsonl", 5)))
    qtbot.waitUntil(lambda: window.previewer._pending is not None, timeout=WAIT_MS)
    return stuck


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="POSIX signals")
def test_a_file_still_being_read_does_not_hold_the_next_preview(make_window, qtbot, tmp_path):
    window = make_window()
    page = window.data_page
    window.show_page("Data")
    stuck = _stuck_child(window, qtbot, tmp_path)
    assert "Reading slow.jsonl" in page.detected.text()
    type_into(window.findChild(QLineEdit, "data.train"), str(write_rows(tmp_path / "train.jsonl", 4)))
    qtbot.waitUntil(lambda: page.preview.rowCount() == 4, timeout=WAIT_MS)
    assert window.previewer.pid() not in (None, stuck) and "4 rows" in page.detected.text()
    assert not psutil.pid_exists(stuck) or psutil.Process(stuck).status() == psutil.STATUS_ZOMBIE  # the stuck one was ended


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="POSIX signals")
def test_a_child_that_dies_is_reported_on_the_page(make_window, qtbot, tmp_path):
    window = make_window()
    page = window.data_page
    window.show_page("Data")
    stuck = _stuck_child(window, qtbot, tmp_path)
    os.kill(stuck, signal.SIGKILL)  # as the system does to a child that ran out of memory
    qtbot.waitUntil(lambda: "Cannot use this data" in page.detected.text(), timeout=WAIT_MS)
    assert "stopped unexpectedly" in page.detected.text()
    assert "stopped unexpectedly" in window._data_failed
