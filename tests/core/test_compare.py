"""distill-gui compare: the same scores as eval, the score cache, run folders, bad input, stop and rerun."""

from __future__ import annotations

import json
import threading

import pytest
import tiny_models

from distill_gui.core import checkpoints as ckpt
from distill_gui.core.compare import (
    CompareError,
    CompareSettings,
    compare,
)
from distill_gui.core.compare_events import ModelScored, ModelStarted, compare_event_from_json
from distill_gui.core.compare_report import filter_questions, list_comparisons, load_questions, load_results
from distill_gui.core.config import ModelConfig, RunConfig, StudentConfig
from distill_gui.core.model_refs import ModelRefError, fingerprint, resolve
from distill_gui.core.runs import RunDir
from distill_gui.resources import demo_dir

DEMO = demo_dir()
ROWS = 12
SETTINGS = CompareSettings(max_new_tokens=40, batch_size=5, limit=ROWS, device="cpu")


def _run(specs, tmp_path, settings=SETTINGS, **kwargs):
    events = []
    result = compare([str(s) for s in specs], str(DEMO / "test.jsonl"), settings, runs_root=tmp_path / "runs",
                     on_event=events.append, **kwargs)
    return result, events


def _by_label(result):
    return {s.label: s for s in result.scores}


def test_accuracy_and_perplexity_equal_eval_exactly(tmp_path, tiny_pair, capsys):
    from distill_gui.cli import main

    teacher_dir = DEMO / "teacher"
    student_dir = tiny_pair[1]
    result, _ = _run([teacher_dir, student_dir], tmp_path)
    scores = _by_label(result)
    assert result.state == "finished" and result.reference == "teacher"
    for label, path in (("teacher", teacher_dir), ("student", student_dir)):
        code = main(["eval", str(path), "--data", str(DEMO / "test.jsonl"), "--limit", str(ROWS), "--max-new-tokens", "40",
                     "--batch-size", "5", "--device", "cpu", "--json"])
        assert code == 0
        evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert scores[label].accuracy == evaluated["accuracy"]
        assert scores[label].correct == evaluated["correct"] and scores[label].answered == evaluated["answered"] == ROWS
        assert scores[label].perplexity == evaluated["perplexity"]
        assert scores[label].params == evaluated["params"]
    assert scores["teacher"].accuracy >= 0.75  # the shipped teacher really solves these
    rows = {r["label"]: r for r in result.table()}
    assert rows["teacher"]["recovery_pct"] == 100.0 and rows["teacher"]["top1_agreement"] == 1.0
    student = rows["student"]
    assert student["recovery_pct"] == pytest.approx(100 * scores["student"].accuracy / scores["teacher"].accuracy)
    assert student["perplexity_ratio"] == pytest.approx(scores["student"].perplexity / scores["teacher"].perplexity)
    assert student["top1_agreement"] is None  # another tokenizer: no position lines up
    assert 0.0 <= student["answer_agreement"] <= 1.0
    assert scores["teacher"].mean_answer_tokens > 5 and scores["teacher"].disk_bytes > 1_000_000

    folder = result.folder
    for name in ("results.json", "results.csv", "results.md", "predictions.jsonl", "accuracy_vs_size.png"):
        assert (folder / name).is_file(), name
    assert load_results(folder)["state"] == "finished"
    questions = load_questions(folder)
    assert len(questions) == ROWS and set(questions[0]["answers"]) == {"teacher", "student"}
    wrong = filter_questions(questions, "ref_right_model_wrong", "teacher")
    assert wrong and all(q["answers"]["teacher"]["correct"] and not q["answers"]["student"]["correct"] for q in wrong)
    assert list_comparisons(tmp_path / "runs") == [folder]
    assert "| teacher (reference) |" in (folder / "results.md").read_text()


def test_same_tokenizer_gives_top1_agreement(tmp_path, tiny_pair):
    teacher, student = tiny_pair
    result, _ = _run([teacher, student], tmp_path, settings=CompareSettings(max_new_tokens=8, batch_size=8, limit=6, device="cpu"))
    rows = {r["label"]: r for r in result.table()}
    assert 0.0 <= rows["student"]["top1_agreement"] < 1.0
    assert rows["teacher"]["top1_agreement"] == 1.0


def test_cache_reuses_scores_and_a_changed_checkpoint_is_scored_again(tmp_path, tiny_tokenizer):
    settings = CompareSettings(max_new_tokens=8, batch_size=8, limit=6, device="cpu")
    a = tiny_models.save_pair_member(tmp_path / "a", tiny_tokenizer, tiny_models.build_llama(tiny_tokenizer, seed=3))
    b = tiny_models.save_pair_member(tmp_path / "b", tiny_tokenizer, tiny_models.build_llama(tiny_tokenizer, seed=4))
    first, events = _run([a], tmp_path, settings)
    assert [e.cached for e in events if isinstance(e, ModelStarted)] == [False]
    second, events = _run([a, b], tmp_path, settings)
    assert [(e.label, e.cached) for e in events if isinstance(e, ModelStarted)] == [("a", True), ("b", False)]
    assert _by_label(second)["a"].perplexity == first.scores[0].perplexity
    old = fingerprint(resolve(str(a)))
    tiny_models.save_pair_member(a, tiny_tokenizer, tiny_models.build_llama(tiny_tokenizer, seed=5))  # a new checkpoint
    assert fingerprint(resolve(str(a))) != old
    third, events = _run([a, b], tmp_path, settings)
    assert [(e.label, e.cached) for e in events if isinstance(e, ModelStarted)] == [("a", False), ("b", True)]
    assert _by_label(third)["a"].perplexity != first.scores[0].perplexity


def _make_run(root, name, student_path, teacher_path=""):
    config = RunConfig(name=name, student=StudentConfig(path=str(student_path)), teacher=ModelConfig(path=str(teacher_path)))
    return RunDir.create(root, config)


def _save_checkpoint(target, tokenizer, model):
    with ckpt.atomic_checkpoint(target) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)


def test_run_folders_resolve_to_final_latest_and_lora(tmp_path, tiny_tokenizer, tiny_pair):
    teacher, student = tiny_pair
    finished = _make_run(tmp_path / "runs", "kd-small", student, teacher)
    _save_checkpoint(finished.checkpoints_dir / "step-000010", tiny_tokenizer, tiny_models.build_llama(tiny_tokenizer, seed=6))
    _save_checkpoint(finished.final_dir, tiny_tokenizer, tiny_models.build_llama(tiny_tokenizer, seed=7))
    ref = resolve(str(finished.path))
    assert (ref.path, ref.checkpoint, ref.label, ref.teacher) == (str(finished.final_dir), "final", "kd-small", str(teacher))

    unfinished = _make_run(tmp_path / "runs", "other-task", student)
    _save_checkpoint(unfinished.checkpoints_dir / "step-000005", tiny_tokenizer, tiny_models.build_llama(tiny_tokenizer, seed=8))
    _save_checkpoint(unfinished.checkpoints_dir / "step-000009", tiny_tokenizer, tiny_models.build_llama(tiny_tokenizer, seed=9))
    (unfinished.checkpoints_dir / "step-000012").mkdir()  # incomplete: never offered
    ref = resolve(str(unfinished.path))
    assert ref.checkpoint == "step-000009" and ref.label == "other-task@step-000009" and ref.teacher is None

    from peft import LoraConfig, get_peft_model

    lora_run = _make_run(tmp_path / "runs", "lora", student, teacher)
    peft_model = get_peft_model(tiny_models.build_llama(tiny_tokenizer, hidden=32, layers=1, seed=2),
                                LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    with ckpt.atomic_checkpoint(lora_run.checkpoints_dir / "step-000004") as staging:
        peft_model.save_pretrained(staging)
        tiny_tokenizer.save_pretrained(staging)
    ref = resolve(str(lora_run.path))
    assert ref.path == str(student) and ref.adapter == str(lora_run.checkpoints_dir / "step-000004")

    empty = _make_run(tmp_path / "runs", "empty", student)
    with pytest.raises(ModelRefError, match="no complete checkpoint"):
        resolve(str(empty.path))

    # The first model is a run: its teacher becomes the reference; the empty run is a failed line.
    settings = CompareSettings(max_new_tokens=8, batch_size=8, limit=6, device="cpu")
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Question: {i} plus 1?", "completion": f" #### {i + 1}"}) + "\n" for i in range(6)))
    result = compare([str(finished.path), str(lora_run.path), str(student), str(empty.path)], str(data), settings,
                     runs_root=tmp_path / "runs")
    labels = [s.label for s in result.scores]
    assert labels[:4] == ["teacher", "kd-small", "lora@step-000004", "student"] and result.reference == "teacher"
    scores = _by_label(result)
    assert all(scores[name].ok for name in labels[:4])
    assert scores["lora@step-000004"].perplexity != scores["student"].perplexity  # the adapter is applied
    assert "no complete checkpoint" in scores["empty"].error


def test_bad_models_and_unverifiable_data_are_one_line_each(tmp_path, tiny_pair):
    teacher, student = tiny_pair
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    text_only = tmp_path / "notes.jsonl"
    text_only.write_text("".join(json.dumps({"prompt": f"Say hello {i}", "completion": " hello there"}) + "\n" for i in range(5)))
    settings = CompareSettings(max_new_tokens=6, batch_size=8, device="cpu")
    result = compare([str(teacher), str(broken), str(tmp_path / "missing")], str(text_only), settings, runs_root=tmp_path / "runs")
    scores = _by_label(result)
    assert scores["teacher"].ok and scores["teacher"].accuracy is None and scores["teacher"].perplexity > 1
    assert scores["broken"].error and "\n" not in scores["broken"].error
    assert "not found" in scores["missing"].error
    md = (result.folder / "results.md").read_text()
    assert "| teacher (reference) | " in md and "failed:" in md and "| – | – |" in md
    with pytest.raises(CompareError, match="needs --temperature"):
        CompareSettings(samples=4)


def test_stop_keeps_finished_models_and_a_rerun_continues(tmp_path, tiny_pair, tiny_tokenizer):
    teacher, student = tiny_pair
    third = tiny_models.save_pair_member(tmp_path / "third", tiny_tokenizer, tiny_models.build_llama(tiny_tokenizer, seed=11))
    settings = CompareSettings(max_new_tokens=6, batch_size=2, limit=6, device="cpu")
    stop = threading.Event()

    def on_event(event):
        if isinstance(event, ModelScored) and event.label == "student":
            stop.set()

    specs = [str(teacher), str(student), str(third)]
    data = str(DEMO / "test.jsonl")
    stopped = compare(specs, data, settings, runs_root=tmp_path / "runs", on_event=on_event, stop=stop, out=tmp_path / "cmp")
    assert stopped.state == "stopped" and [s.label for s in stopped.scores] == ["teacher", "student"]
    assert load_results(tmp_path / "cmp")["state"] == "stopped"
    events = []
    again = compare(specs, data, settings, runs_root=tmp_path / "runs", on_event=events.append, out=tmp_path / "cmp")
    assert again.state == "finished"
    assert [(e.label, e.cached) for e in events if isinstance(e, ModelStarted)] == [("teacher", True), ("student", True), ("third", False)]


def test_sampling_gives_pass_at_k_and_majority(tmp_path):
    settings = CompareSettings(max_new_tokens=40, batch_size=8, limit=8, device="cpu", samples=3, temperature=1.0, seed=1)
    result, _ = _run([DEMO / "teacher"], tmp_path, settings)
    score = result.scores[0]
    assert 0.0 <= score.majority_accuracy <= score.pass_at_k <= 1.0 and score.pass_at_k > 0.5
    first = score.predictions[0]
    assert len(first["sample_answers"]) == 3 and isinstance(first["pass_at_k"], bool)


def test_cli_compare_prints_events_and_refuses_bad_settings(tmp_path, tiny_pair, capsys):
    from distill_gui.cli import main

    teacher, student = tiny_pair
    args = ["compare", str(teacher), str(student), "--data", str(DEMO / "test.jsonl"), "--limit", "4", "--max-new-tokens", "4",
            "--device", "cpu", "--runs-dir", str(tmp_path / "runs")]
    assert main(args + ["--events", "json"]) == 0
    events = [compare_event_from_json(line) for line in capsys.readouterr().out.splitlines()]
    assert all(e is not None for e in events)
    assert type(events[0]).__name__ == "CompareStarted" and type(events[-1]).__name__ == "CompareFinished"
    assert main(args + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [m["label"] for m in out["models"]] == ["teacher", "student"] and all(m["cached"] for m in out["models"])
    assert main(args + ["--samples", "3"]) == 2
    assert "needs --temperature" in capsys.readouterr().err
    assert main(["compare", str(teacher), "--data", str(tmp_path / "nothing.jsonl"), "--runs-dir", str(tmp_path / "runs")]) == 2


def test_a_model_larger_than_free_memory_is_refused_before_loading(tmp_path, tiny_pair, monkeypatch):
    import distill_gui.core.memory as memory
    import distill_gui.core.models as models

    teacher, student = tiny_pair
    loads = []
    real_load = models.load_model
    monkeypatch.setattr(models, "load_model", lambda *a, **k: loads.append(a[0].path) or real_load(*a, **k))
    monkeypatch.setattr(memory, "device_memory", lambda device="auto": (20_000, "system RAM"))
    settings = CompareSettings(max_new_tokens=4, batch_size=8, limit=3, device="cpu")
    result = compare([str(teacher), str(student)], str(DEMO / "test.jsonl"), settings, runs_root=tmp_path / "runs")
    for score in result.scores:
        assert score.error.startswith("needs about ") and "of system RAM is free" in score.error
        assert score.params > 0 and score.accuracy is None
    assert loads == []
