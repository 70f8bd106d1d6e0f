"""The shipped demo files: sizes, formats, and the teacher's accuracy as stated in the demo's README.md."""

from __future__ import annotations

import json

import pytest

from distill_gui.demo.task import make_splits, read_jsonl
from distill_gui.resources import demo_dir

DEMO = demo_dir()
STATED_TEST_ACCURACY = 0.95
"""The teacher's accuracy on the shipped test.jsonl as written in the README (greedy, 500 problems)."""


def test_shipped_files_fit_the_budget():
    total = sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file())
    assert total <= 30 * 2**20
    assert (DEMO / "teacher" / "model.safetensors").is_file()
    assert not list((DEMO / "teacher").glob("*.bin"))
    assert (DEMO / "teacher" / "tokenizer.json").is_file()


def test_shipped_splits_are_the_seeded_task():
    train, test = read_jsonl(DEMO / "train.jsonl"), read_jsonl(DEMO / "test.jsonl")
    gen_train, gen_test = make_splits(0, n_train=len(train), n_test=len(test))
    assert test == [p.to_row(with_trace=True) for p in gen_test]
    assert train == [p.to_row(with_trace=False) for p in gen_train]
    assert not {r["question"] for r in train} & {r["question"] for r in test}
    assert all(r["answer"].startswith("#### ") for r in train)  # final answers only, no reasoning


def test_teacher_tokenizer_has_no_chat_template_and_splits_digits():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(DEMO / "teacher")
    assert not tok.chat_template
    assert tok.convert_ids_to_tokens(tok("1234", add_special_tokens=False)["input_ids"]) == ["1", "2", "3", "4"]
    assert tok("a", add_special_tokens=True)["input_ids"] == tok("a", add_special_tokens=False)["input_ids"]


@pytest.mark.slow
def test_shipped_teacher_reaches_the_stated_accuracy():
    """Scored by the same code as ``distill-gui eval`` of the shipped teacher on its test.jsonl."""
    from distill_gui.core.evaluation import EvalSettings, evaluate_model

    result = evaluate_model(DEMO / "teacher", DEMO / "test.jsonl", EvalSettings(max_new_tokens=64, batch_size=100, device="cpu"))
    info = json.loads((DEMO / "teacher" / "training_info.json").read_text())
    assert result.answered == 500
    assert result.accuracy >= STATED_TEST_ACCURACY
    assert result.accuracy == pytest.approx(info["test_accuracy"], abs=0.01)
