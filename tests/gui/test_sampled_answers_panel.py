"""The Generations page shows the answers a training run sampled, with the verifier's ✔/✘, as plain text."""

from __future__ import annotations

import pytest

from distill_gui.core.config import config_from_dict
from distill_gui.core.events import SamplesScored, ScoredSample
from distill_gui.core.training import train
from distill_gui.core.verify import register_checker

pytestmark = [pytest.mark.gui, pytest.mark.qt_log_ignore("propagateSizeHints")]

register_checker("panel_test_even_length", lambda predicted, reference: len(predicted) % 2 == 0)


@pytest.fixture(scope="module")
def self_distill_run(tiny_pair, tiny_data, tmp_path_factory):
    config = config_from_dict({
        "name": "sd", "student": {"path": str(tiny_pair[1])}, "data": {"train": str(tiny_data)},
        "method": {"kind": "self_distill", "self_distill": {
            "rounds": 2, "samples_per_question": 2, "max_new_tokens": 6, "checker": "panel_test_even_length",
            "keep_cut_off": True, "questions_per_round": 4, "generation_batch_size": 8}},
        "training": {"max_steps": 2, "batch_size": 4, "save_steps": 0, "precision": "fp32"},
    })
    outcome = train(config, runs_root=tmp_path_factory.mktemp("sd"))
    assert outcome.state == "finished"
    return outcome.run


def test_a_runs_sampled_answers_show_with_the_verifiers_marks(qtbot, self_distill_run):
    from distill_gui.gui.generations_page import GenerationsPage
    from distill_gui.gui.sampled_answers_panel import ANSWER, MARK, REFERENCE, REWARD

    page = GenerationsPage()
    qtbot.addWidget(page)
    page.show()
    panel = page.sampled
    assert panel.isHidden()  # nothing sampled yet
    page.show_records(self_distill_run.samples())
    panel.show_events(self_distill_run.events())
    assert not panel.isHidden()
    assert panel.steps() == [1, 2]  # one report per round
    scored = {e.step: e for e in self_distill_run.events() if isinstance(e, SamplesScored)}
    assert panel.row_count() == len(scored[2].items) == 8  # the newest step is shown
    for row, item in enumerate(scored[2].items):
        assert panel.cell(row, MARK) == ("✔" if len(item.completion) % 2 == 0 else "✘")
        assert panel.cell(row, REFERENCE) == item.reference
        if item.completion.isprintable() and item.completion.strip():
            assert panel.cell(row, ANSWER) == item.completion
    assert {panel.cell(r, MARK) for r in range(panel.row_count())} == {"✔", "✘"}
    assert panel.table.isColumnHidden(REWARD)  # self-distillation gives no reward
    correct = sum(panel.cell(r, MARK) == "✔" for r in range(8))
    assert f"{correct} of 8 answers correct" in panel.caption.text()
    panel.step_combo.setCurrentIndex(panel.step_combo.findData(1))
    assert [panel.cell(r, ANSWER) for r in range(panel.row_count())] == [
        panel_text for panel_text in (_shown(i.completion) for i in scored[1].items)
    ]
    assert "latest: step 2" in panel.caption.text()
    page.clear()
    assert panel.isHidden() and panel.row_count() == 0


def _shown(text: str) -> str:
    from distill_gui.gui.sampled_answers_panel import shown_text

    return shown_text(text)


def test_model_text_is_shown_as_text_and_live_events_follow_the_run(qtbot):
    from distill_gui.gui.generations_page import GenerationsPage
    from distill_gui.gui.sampled_answers_panel import ANSWER, FINAL, MARK, PROMPT, REWARD

    page = GenerationsPage()
    qtbot.addWidget(page)
    hostile = "<s><b>bold</b> #### 7\x03"
    page.on_event(SamplesScored(step=1, method="rlvr", items=(
        ScoredSample(prompt="<|user|>What is <i>3</i>+4?<|assistant|>", completion=hostile, correct=True, reward=1.5,
                     answer="7", reference="7"),
        ScoredSample(prompt="<|user|>Q<|assistant|>", completion="", correct=False, reward=0.0, reference="2",
                     error="ValueError: cannot parse"),
        ScoredSample(prompt="Q", completion="free text"),
    )))
    panel = page.sampled
    assert [panel.cell(r, MARK) for r in range(3)] == ["✔", "✘", "—"]
    assert panel.cell(0, ANSWER) == "<s><b>bold</b> #### 7␃"  # markup as written, the control character visible
    assert panel.cell(0, PROMPT) == "What is <i>3</i>+4?"  # the user's words, the chat markup in the tooltip
    assert "&lt;|user|&gt;" in panel.table.item(0, PROMPT).toolTip()
    assert "&lt;b&gt;bold&lt;/b&gt;" in panel.table.item(0, ANSWER).toolTip()
    assert panel.cell(1, ANSWER).startswith("(empty")
    assert "raised" in panel.table.item(1, MARK).toolTip() and "ValueError" in panel.table.item(1, MARK).toolTip()
    assert panel.cell(0, FINAL) == "7" and panel.cell(0, REWARD) == "1.5"
    assert not panel.table.isColumnHidden(REWARD)
    assert "1 of 2 answers correct" in panel.caption.text() and "mean reward" in panel.caption.text()
    page.on_event(SamplesScored(step=10, method="rlvr", items=(ScoredSample(prompt="Q", completion="#### 2", correct=True,
                                                                           reward=1.0, reference="2"),)))
    assert panel.steps() == [1, 10] and panel.row_count() == 1  # the newest step follows the run


def test_opening_a_run_folder_shows_its_sampled_answers(make_window, self_distill_run):
    window = make_window()
    window.open_run(str(self_distill_run.path))
    panel = window.generations_page.sampled
    assert panel.steps() == [1, 2] and panel.row_count() == 8
    assert window.method_page.recipe.chosen == "self_distill"  # its config opens on its recipe
