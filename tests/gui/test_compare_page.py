"""The Compare and Arena pages: a real comparison child on tiny models, the per-question filter, reopening
a past comparison, and a blind vote in the arena."""

from __future__ import annotations

import json

import pytest
import tiny_models

from distill_gui.resources import demo_dir

pytestmark = [pytest.mark.gui, pytest.mark.qt_log_ignore("propagateSizeHints")]

WAIT_MS = 180_000


@pytest.fixture
def three_models(tmp_path, tiny_tokenizer):
    """The demo teacher and two tiny random students (with another tokenizer)."""
    a = tiny_models.save_pair_member(tmp_path / "tiny-a", tiny_tokenizer, tiny_models.build_llama(tiny_tokenizer, seed=21))
    b = tiny_models.save_pair_member(tmp_path / "tiny-b", tiny_tokenizer, tiny_models.build_llama(tiny_tokenizer, hidden=16, seed=22))
    return [str(demo_dir() / "teacher"), str(a), str(b)]


def test_compare_three_models_fill_table_chart_and_questions(qtbot, tmp_path, settings, three_models):
    from distill_gui.gui.compare_page import ComparePage

    page = ComparePage(settings, runs_root=tmp_path / "runs")
    qtbot.addWidget(page)
    assert page.add_models(three_models) == 3
    assert page.add_models(three_models[:1]) == 0  # already listed
    assert page.reference.count() == 4
    page.set_default_data(str(demo_dir() / "test.jsonl"))
    page.limit.setValue(8)
    page.max_new_tokens.setValue(48)
    page.device.setCurrentText("cpu")
    with qtbot.waitSignal(page.sig_state_changed, timeout=5000):
        assert page.start()
    assert not page.start_button.isEnabled() and page.stop_button.isEnabled()
    qtbot.waitUntil(lambda: page.state == "idle", timeout=WAIT_MS)
    assert page.state_label.text().startswith("Finished: 3 scored, 0 failed"), page.log_lines[-5:]

    assert page.table.rowCount() == 3
    labels = {page.table.item(r, 0).text() for r in range(3)}
    assert labels == {"teacher (reference)", "tiny-a", "tiny-b"}
    points = {label: (params, acc) for label, params, acc in page.chart_points()}
    assert set(points) == {"teacher", "tiny-a", "tiny-b"} and points["teacher"][1] >= 75.0
    assert page.reference_line.isVisible() and page.reference_line.value() == points["teacher"][1]
    page.table.sortItems([c for c, _ in enumerate(page.table.horizontalHeaderItem(c).text() for c in range(page.table.columnCount()))
                          if page.table.horizontalHeaderItem(c).text() == "Params"][0])
    ordered = [page.table.item(r, 0).text() for r in range(3)]
    assert ordered[-1] == "teacher (reference)"  # the largest last when sorted by parameters

    assert page.questions.rowCount() == 8
    page.filter.setCurrentIndex(page.filter.findData("ref_right_model_wrong"))
    shown = page.questions.rowCount()
    assert 0 < shown <= 8 and page.questions_count.text() == f"{shown} of 8 questions"
    teacher_col = [page.questions.horizontalHeaderItem(c).text() for c in range(page.questions.columnCount())].index("teacher")
    assert all(page.questions.item(r, teacher_col).text().startswith("✓") for r in range(shown))

    # The comparison is listed and reopens from disk in a fresh page.
    folder = page.folder
    assert (folder / "results.md").is_file() and (folder / "accuracy_vs_size.png").is_file()
    other = ComparePage(settings, runs_root=tmp_path / "runs")
    qtbot.addWidget(other)
    assert other.history.count() == 1
    other.history.setCurrentRow(0)
    other.on_history_open()
    assert other.table.rowCount() == 3 and other.questions.rowCount() == 8
    assert sorted(p[0] for p in other.chart_points()) == ["teacher", "tiny-a", "tiny-b"]


def test_stop_keeps_the_scored_models(qtbot, tmp_path, settings, three_models):
    from distill_gui.gui.compare_page import ComparePage

    page = ComparePage(settings, runs_root=tmp_path / "runs")
    qtbot.addWidget(page)
    page.add_models(three_models[1:] + three_models[:1])
    page.set_data(str(demo_dir() / "test.jsonl"))
    page.limit.setValue(200)
    page.max_new_tokens.setValue(48)
    page.device.setCurrentText("cpu")
    assert page.start()

    def scored() -> list[str]:
        return [row["label"] for row in page.model_rows() if row.get("status") == "done"]

    qtbot.waitUntil(lambda: bool(scored()), timeout=WAIT_MS)
    first = scored()[0]
    assert page.stop() and page.state == "stopping"
    qtbot.waitUntil(lambda: page.state == "idle", timeout=WAIT_MS)
    assert page.state_label.text().startswith("Stopped:"), page.state_label.text()
    results = json.loads((page.folder / "results.json").read_text())
    assert results["state"] == "stopped"
    assert first in [m["label"] for m in results["models"]] and len(results["models"]) < 3


def test_compare_page_refuses_without_models_or_data(qtbot, tmp_path, settings):
    from distill_gui.gui.compare_page import ComparePage

    page = ComparePage(settings, runs_root=tmp_path / "runs")
    qtbot.addWidget(page)
    assert not page.start() and "Add at least one model" in page.state_label.text()
    page.add_models([str(tmp_path)])
    assert not page.start() and "eval file" in page.state_label.text()
    page.set_data(str(tmp_path / "missing.jsonl"))
    assert not page.start() and "no such file" in page.state_label.text()
    damaged = tmp_path / "runs" / "comparisons" / "20260101-000000-broken"
    damaged.mkdir(parents=True)
    (damaged / "results.json").write_text("{oops")
    assert not page.open_comparison(damaged) and "damaged" in page.state_label.text()


def test_arena_vote_reveals_names_and_updates_ratings(qtbot, tmp_path, three_models):
    from distill_gui.core.arena import ArenaStore
    from distill_gui.gui.arena_page import ArenaPage

    store = ArenaStore(tmp_path / "arena.sqlite3")
    page = ArenaPage(store)
    qtbot.addWidget(page)
    page.set_models(three_models[:2])
    page.set_data(str(demo_dir() / "test.jsonl"))
    page.max_new_tokens.setValue(24)
    with qtbot.waitSignal(page.sig_drawn, timeout=WAIT_MS):
        page.draw_prompt()
    assert page.prompt_edit.toPlainText().strip()
    with qtbot.waitSignal(page.sig_answered, timeout=WAIT_MS):
        assert page.ask()
    assert page.name_a.text() == page.name_b.text() == "hidden until you vote"
    assert page.answer_a.toPlainText() or page.answer_b.toPlainText()
    assert all(button.isEnabled() for button in page.vote_buttons.values())
    page.vote_buttons["tie"].click()
    votes = store.votes()
    assert len(votes) == 1 and votes[0].outcome == "tie"
    assert {votes[0].model_a, votes[0].model_b} == set(three_models[:2])
    assert {page.name_a.text(), page.name_b.text()} == {"teacher", "tiny-a"}
    assert not any(button.isEnabled() for button in page.vote_buttons.values())
    assert page.ratings.rowCount() == 2 and page.ratings.item(0, 2).text() == "1"
    assert json.loads(json.dumps([v.prompt for v in votes]))[0] == page.prompt_edit.toPlainText()
    page.shutdown()
    assert page.thread is None


def test_runs_page_compare_selected_and_compare_with_teacher(make_window, qtbot, runs_root, tiny_pair, tiny_tokenizer):
    from PySide6.QtCore import QItemSelectionModel

    from distill_gui.core import checkpoints as ckpt
    from distill_gui.core.config import ModelConfig, RunConfig, StudentConfig
    from distill_gui.core.runs import RunDir

    teacher, student = tiny_pair
    runs = []
    for name in ("first", "second"):
        run = RunDir.create(runs_root, RunConfig(name=name, teacher=ModelConfig(path=str(teacher)), student=StudentConfig(path=str(student))))
        with ckpt.atomic_checkpoint(run.final_dir) as staging:
            tiny_models.build_llama(tiny_tokenizer, seed=31).save_pretrained(staging)
            tiny_tokenizer.save_pretrained(staging)
        runs.append(run)
    window = make_window()
    window.runs_page.refresh()
    qtbot.waitUntil(lambda: window.runs_page.table.rowCount() == len(runs), timeout=10000)
    selection = window.runs_page.table.selectionModel()
    for row in range(window.runs_page.table.rowCount()):
        index = window.runs_page.table.model().index(row, 0)
        selection.select(index, QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows)
    window.runs_page.compare_button.click()
    assert sorted(window.compare_page.models()) == sorted(str(r.path) for r in runs)
    assert window.stack.currentWidget() is window.compare_page
    assert window.arena_page.ask_button.isEnabled()  # the arena offers the same models

    window.compare_page.models_list.clear()
    window.shown_run = str(runs[0].path)
    window.train_page.on_ended("finished", "finished at step 3")
    assert window.train_page.compare_button.isVisibleTo(window.train_page)
    window.train_page.compare_button.click()
    assert window.compare_page.models() == [str(teacher), str(runs[0].path)]
    assert window.compare_page.reference.currentData() == str(teacher)


def test_a_served_model_behind_a_key_is_compared_and_plays_in_the_arena(qtbot, tmp_path, settings, monkeypatch):
    """Compare → Served…: a URL#MODEL is listed (a path is refused); the API key variable reaches the comparison's
    child process and the arena, and the served model is scored by its answers."""
    from openai_server import ModelServer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill_gui.core.arena import ArenaStore
    from distill_gui.gui.arena_page import ArenaPage
    from distill_gui.gui.compare_page import ComparePage
    from distill_gui.gui.compare_worker import compare_command

    teacher = demo_dir() / "teacher"
    monkeypatch.setenv("DG_GUI_KEY", "secret")
    with ModelServer(AutoModelForCausalLM.from_pretrained(teacher), AutoTokenizer.from_pretrained(teacher), name="teacher") as server:
        server.api_key = "secret"
        page = ComparePage(settings, runs_root=tmp_path / "runs")
        qtbot.addWidget(page)
        assert not page.add_served(str(teacher)) and "is not a served model" in page.state_label.text()
        assert page.add_served(f"{server.url}#teacher") and page.models() == [f"{server.url}#teacher"]
        page.api_key_env.setText("DG_GUI_KEY")
        assert "--api-key-env" in compare_command(page.models(), "x.jsonl", page.current_settings())
        page.add_models([str(teacher)])
        page.set_default_data(str(demo_dir() / "test.jsonl"))
        page.limit.setValue(4)
        page.max_new_tokens.setValue(48)
        page.device.setCurrentText("cpu")
        assert page.start()
        qtbot.waitUntil(lambda: page.state == "idle", timeout=WAIT_MS)
        assert page.state_label.text().startswith("Finished: 2 scored, 0 failed"), page.log_lines[-5:]
        rows = {r["label"]: r for r in page.model_rows()}
        served_label = f"teacher@127.0.0.1:{server.port}"
        assert served_label in rows and rows[served_label].get("accuracy") not in (None, ""), rows

        arena = ArenaPage(ArenaStore(tmp_path / "arena.sqlite3"))
        qtbot.addWidget(arena)
        arena.set_models([f"{server.url}#teacher", str(teacher)])
        arena.set_api_key_env("DG_GUI_KEY")
        arena.max_new_tokens.setValue(16)
        arena.prompt_edit.setPlainText("What is 2 plus 3?")
        before = server.requests
        with qtbot.waitSignal(arena.sig_answered, timeout=WAIT_MS):
            assert arena.ask()
        assert server.requests > before and arena.answer_a.toPlainText() and arena.answer_b.toPlainText()
        arena.shutdown()
