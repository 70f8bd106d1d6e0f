"""Teacher-written data: rejection sampling, dedup, and resumable generation (no duplicated or lost rows)."""

from __future__ import annotations

import json
import threading

import pytest

from distill_gui.core.data import load_examples
from distill_gui.core.teacher_data import (
    SourceRow,
    TeacherDataConfig,
    generate_dataset,
    judge_samples,
    load_source,
    log_path_for,
    output_row,
    read_log,
    write_dataset,
)


@pytest.fixture
def qa_file(tmp_path):
    path = tmp_path / "qa.jsonl"
    rows = [{"question": f"What is {i} plus {i + 1}?", "answer": f"{i} + {i + 1} = {2 * i + 1}\n#### {2 * i + 1}"} for i in range(10)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def teacher(tiny_pair):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tiny_pair[0]
    return AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


def _row(reference="7"):
    return SourceRow(index=3, prompt="Question: q\nAnswer: ", reference=reference, row={"question": "q"}, format="question_answer")


def test_judge_keeps_only_verified_and_dedups():
    texts = ["3 + 4 = 7\n#### 7", "#### 8", "3 + 4 = 7\n#### 7", "so 7", ""]
    record = judge_samples(_row(), texts, TeacherDataConfig())
    assert [s["correct"] for s in record["samples"]] == [True, False, True, True, False]
    assert [s["kept"] for s in record["samples"]] == [True, False, False, True, False]
    assert (record["kept"], record["generated"]) == (2, 5)
    no_dedup = judge_samples(_row(), texts, TeacherDataConfig(dedup=False))
    assert no_dedup["kept"] == 3
    capped = judge_samples(_row(), texts, TeacherDataConfig(dedup=False, max_per_prompt=1))
    assert capped["kept"] == 1
    unverified = judge_samples(_row(), texts, TeacherDataConfig(verify=False, dedup=False))
    assert unverified["kept"] == 4  # every non-empty text


def test_output_rows_keep_the_input_format():
    assert output_row({"question": "q"}, "question_answer", "t") == {"question": "q", "answer": "t"}
    assert output_row({"prompt": "p"}, "prompt_completion", "t") == {"prompt": "p", "completion": "t"}
    assert output_row({"instruction": "i", "input": ""}, "alpaca", "t") == {"instruction": "i", "input": "", "output": "t"}
    turns = [{"role": "user", "content": "hi"}]
    assert output_row({"messages": turns}, "messages", "t")["messages"] == turns + [{"role": "assistant", "content": "t"}]
    assert turns == [{"role": "user", "content": "hi"}]


def test_dataset_is_readable_by_the_data_loader(tmp_path):
    records = {i: judge_samples(SourceRow(i, "P", "7", {"question": f"q{i}"}, "question_answer"), ["#### 7", "#### 9"], TeacherDataConfig()) for i in (2, 0, 1)}
    out = tmp_path / "d.jsonl"
    assert write_dataset(records, out) == 3
    examples, report = load_examples(str(out))
    assert report.format == "question_answer" and [e.prompt for e in examples] == ["q0", "q1", "q2"]
    assert all(e.reference == "7" for e in examples)


def test_source_renders_prompts_like_training(qa_file, teacher):
    from distill_gui.core.data import render_prompt

    _, tokenizer = teacher
    source = load_source(qa_file, tokenizer, TeacherDataConfig())
    examples, _ = load_examples(str(qa_file))
    assert [s.prompt for s in source] == [render_prompt(e, tokenizer) for e in examples]
    assert [s.reference for s in source] == [str(2 * i + 1) for i in range(10)]
    assert source[0].row == {"question": "What is 0 plus 1?"}


def _run(teacher, qa_file, out, stop_after=None, **kw):
    model, tokenizer = teacher
    config = TeacherDataConfig(batch_size=4, max_new_tokens=6, verify=False, dedup=False, **kw)
    source = load_source(qa_file, tokenizer, config)
    stop = threading.Event()
    calls = []

    def progress(done, total):
        calls.append(done)
        if stop_after is not None and done >= stop_after:
            stop.set()

    return generate_dataset(model, tokenizer, source, out, config, progress=progress, stop=stop), calls


def _lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_interrupted_generation_resumes_without_duplicates_or_losses(tmp_path, qa_file, teacher):
    full_out = tmp_path / "full" / "traces.jsonl"
    full, _ = _run(teacher, qa_file, full_out)
    assert full.done == full.prompts == 10 and not full.stopped

    out = tmp_path / "resumed" / "traces.jsonl"
    first, calls = _run(teacher, qa_file, out, stop_after=4)
    assert first.stopped and first.done == 4 and calls == [0, 4]
    assert len(_lines(log_path_for(out))) == 4
    second, calls = _run(teacher, qa_file, out)
    assert second.resumed_from == 4 and second.done == 10 and not second.stopped
    assert calls == [4, 8, 10]
    log = _lines(log_path_for(out))
    assert sorted(r["index"] for r in log) == list(range(10))
    assert _lines(out) == _lines(full_out)  # same rows, same order, as one uninterrupted run
    again, calls = _run(teacher, qa_file, out)  # nothing left to do
    assert again.resumed_from == 10 and calls == [10] and _lines(out) == _lines(full_out)


def test_torn_last_line_is_dropped_and_regenerated(tmp_path, qa_file, teacher):
    out = tmp_path / "traces.jsonl"
    _run(teacher, qa_file, out, stop_after=8)
    log = log_path_for(out)
    good = log.read_bytes()
    lines = good.splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # a crash mid-write
    assert sorted(read_log(log)) == list(range(7))
    report, _ = _run(teacher, qa_file, out)
    assert report.resumed_from == 7 and report.done == 10
    indices = [r["index"] for r in _lines(log)]
    assert sorted(indices) == list(range(10)) and len(indices) == 10


def test_sampling_with_several_samples_per_prompt(tmp_path, qa_file, teacher):
    out = tmp_path / "s.jsonl"
    report, _ = _run(teacher, qa_file, out, num_samples=3, temperature=1.0, limit=4)
    assert report.generated == 12 and report.kept == 12
    assert all(len(r["samples"]) == 3 for r in _lines(log_path_for(out)))
    summary = json.loads(out.with_name(out.name + ".summary.json").read_text())
    assert summary["finished"] and summary["generated"] == 12


def test_verify_needs_references(tmp_path, teacher):
    from distill_gui.core.data import DataError

    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "hello", "completion": "world"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="reference"):
        load_source(path, teacher[1], TeacherDataConfig())


def test_config_validation():
    with pytest.raises(ValueError):
        TeacherDataConfig(num_samples=0)
    with pytest.raises(ValueError):
        TeacherDataConfig(top_p=0)
    with pytest.raises(KeyError):
        TeacherDataConfig(checker="nope")


def test_resuming_with_other_settings_is_refused(tmp_path, qa_file, teacher):
    out = tmp_path / "traces.jsonl"
    _run(teacher, qa_file, out, stop_after=4)
    assert json.loads((tmp_path / "traces.jsonl.generations.meta.json").read_text())["temperature"] == 0.0
    with pytest.raises(ValueError, match="temperature"):
        _run(teacher, qa_file, out, temperature=0.7)
    report, _ = _run(teacher, qa_file, out)  # the same settings continue
    assert report.done == 10


def test_batched_generation_returns_answers_in_prompt_order():
    """Prompts are batched by length inside generate(); each answer must still match its own prompt."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill_gui.core.generation import GenerationSettings, generate
    from distill_gui.resources import demo_dir

    teacher = demo_dir() / "teacher"
    model = AutoModelForCausalLM.from_pretrained(teacher)
    tok = AutoTokenizer.from_pretrained(teacher)
    questions = [
        "Mia has 12 pencils. She buys 7 more. How many pencils does Mia have now?",
        "Tom has 5 cards.",
        "Sam has 43 buttons. He gives 30 to Liam. How many buttons does Sam have now?",
    ]
    prompts = [f"Question: {q}\nAnswer: " for q in questions]
    batched = generate(model, tok, prompts, GenerationSettings(max_new_tokens=24, batch_size=8))
    alone = [generate(model, tok, [p], GenerationSettings(max_new_tokens=24))[0] for p in prompts]
    assert batched == alone
