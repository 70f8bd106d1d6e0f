"""Self-distillation (method.kind: self_distill) on tiny real models: rounds of sample → verify → fine-tune."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distill_gui.core.config import ConfigError, config_from_dict
from distill_gui.core.events import CheckpointSaved, LogMessage, RunStarted, SamplesGenerated, StepLogged
from distill_gui.core.methods.self_distill_rounds import RoundResult, RoundStore, _tally, round_questions
from distill_gui.core.training import RunControl, train
from distill_gui.core.verify import register_checker

# A checker that accepts about half of a random model's answers, so every round keeps some.
register_checker("sd_test_even_length", lambda predicted, reference: len(predicted) % 2 == 0)
register_checker("sd_test_never", lambda predicted, reference: False)


def sd_config(student, data, section=None, **training):
    settings = {"max_steps": 4, "batch_size": 4, "learning_rate": 1e-2, "save_steps": 0, "precision": "fp32", "logging_steps": 1}
    settings.update(training)
    values = {"rounds": 2, "samples_per_question": 2, "max_new_tokens": 6, "checker": "sd_test_even_length",
              "keep_cut_off": True, "questions_per_round": 8, "generation_batch_size": 4}
    values.update(section or {})
    return config_from_dict({"name": "sd", "student": {"path": str(student)}, "data": {"train": str(data)},
                             "method": {"kind": "self_distill", "self_distill": values}, "training": settings})


def weights(folder: Path) -> dict:
    return load_file(str(folder / "model.safetensors"))


# ---- Keeping answers


def test_only_correct_distinct_finished_answers_are_kept():
    record = {"batch": 0, "questions": [
        {"question": 3, "answers": ["#### 5", " ####  5 ", "#### 6", "#### 5 and on"], "correct": [True, True, False, True],
         "ended": [True, True, True, False], "errors": 0},
        {"question": 4, "answers": ["x", "y"], "correct": [False, False], "ended": [True, True], "errors": 1},
    ]}
    result = RoundResult(round=0, questions=2)
    _tally(result, record, keep_cut_off=False, seen={})
    assert result.kept == [{"question": 3, "answer": "#### 5"}]  # the whitespace twin and the cut-off answer are not kept
    assert (result.generated, result.correct, result.solved, result.cut_off, result.verifier_errors) == (6, 3, 1, 1, 1)
    assert result.stats() == {"round": 1.0, "generated": 6.0, "kept": 1.0, "keep_rate": 1 / 6, "accuracy": 0.5, "solved": 0.5}
    with_cut = RoundResult(round=0, questions=2)
    _tally(with_cut, record, keep_cut_off=True, seen={})
    assert [k["answer"] for k in with_cut.kept] == ["#### 5", "#### 5 and on"]


def test_rounds_draw_their_own_questions_and_a_store_reads_a_finished_round_back(tmp_path):
    questions = list(range(20))
    first, second = round_questions(questions, 0, 5, seed=1), round_questions(questions, 1, 5, seed=1)
    assert len(first) == 5 and first != second and first == round_questions(questions, 0, 5, seed=1)
    assert round_questions(questions, 0, 0, seed=1) == questions
    store = RoundStore(tmp_path / "sd")
    assert store.finished(0) is None and store.batches(0) == {}
    store.add_batch(0, {"batch": 0, "questions": []})
    with open(store.samples_path(0), "a", encoding="utf-8") as fh:
        fh.write('{"batch": 1, "questi')  # a kill while a batch was written
    assert list(store.batches(0)) == [0]
    store.finish(RoundResult(round=0, questions=1, generated=2, correct=1, solved=1, kept=[{"question": 0, "answer": "a"}]))
    assert store.finished(0).kept == [{"question": 0, "answer": "a"}]


# ---- Settings


def test_settings_validate_with_the_field_and_what_to_do(tiny_pair, tiny_data, tmp_path):
    student = tiny_pair[1]
    with pytest.raises(ConfigError, match="method.self_distill.temperature: 0 samples greedily"):
        sd_config(student, tiny_data, {"temperature": 0.0}).validate_for_run()
    sd_config(student, tiny_data, {"temperature": 0.0, "samples_per_question": 1}).validate_for_run()
    with pytest.raises(ConfigError, match="training.max_steps: self_distill needs a step budget"):
        sd_config(student, tiny_data, max_steps=0).validate_for_run()
    with pytest.raises(ConfigError, match="training.max_steps: 2 steps cannot be split over method.self_distill.rounds=3"):
        sd_config(student, tiny_data, {"rounds": 3}, max_steps=2).validate_for_run()
    with pytest.raises(ConfigError, match="method.self_distill.checker: 'nope' is not a checker"):
        sd_config(student, tiny_data, {"checker": "nope"}).validate_for_run()
    with pytest.raises(ConfigError, match="method.self_distill.samples_per_question"):
        sd_config(student, tiny_data, {"samples_per_question": 0})
    plain = tmp_path / "plain.jsonl"
    plain.write_text("\n".join(json.dumps({"prompt": f"Say {i}", "completion": "hello there"}) for i in range(6)) + "\n")
    with pytest.raises(ConfigError, match="data.train: self_distill on data without reference answers"):
        sd_config(student, plain).validate_for_run()
    runs = tmp_path / "runs"
    with pytest.raises(ConfigError, match="without reference answers"):
        train(sd_config(student, plain), runs_root=runs)
    assert not runs.exists() or not any(runs.iterdir()), "a refused run leaves no folder"


def test_memory_counts_the_sampled_answers_kv_cache_or_the_training_step():
    from distill_gui.core import methods
    from distill_gui.core.methods.base import MemoryInputs

    sizes = MemoryInputs(positions=8 * 512, student_vocab=32000, student_hidden=2048, student_dtype_bytes=2, student_layers=24)

    def share(**section):
        config = sd_config("s", "d", section)
        return methods.get("self_distill").memory(config, sizes).logits

    assert share(generation_batch_size=128) > share(generation_batch_size=64) > 0
    assert share(max_new_tokens=1024, generation_batch_size=256) > share(max_new_tokens=256, generation_batch_size=256)
    tiny = share(generation_batch_size=1, max_new_tokens=1)
    assert tiny == 8 * 512 * 32000 * 4 * 3  # a plain cross-entropy step is then the larger


# ---- Runs


@pytest.fixture(scope="module")
def finished_run(tiny_pair, tiny_data, tmp_path_factory):
    events: list = []
    outcome = train(sd_config(tiny_pair[1], tiny_data), runs_root=tmp_path_factory.mktemp("sd"), on_event=events.append)
    return outcome, events


def test_a_run_samples_keeps_and_trains_round_by_round(finished_run, tiny_pair):
    outcome, events = finished_run
    assert outcome.state == "finished" and outcome.step == 4
    started = next(e for e in events if isinstance(e, RunStarted))
    assert started.method == "self_distill"
    assert {s["key"] for s in started.metric_specs} == {"ce", "accuracy", "solved", "keep_rate", "generated", "kept", "round"}
    steps = [e for e in events if isinstance(e, StepLogged)]
    assert [e.step for e in steps] == [1, 2, 3, 4]
    assert [e.metrics["round"] for e in steps] == [1.0, 1.0, 2.0, 2.0]
    for event in steps:
        assert {s["key"] for s in started.metric_specs} <= set(event.metrics)
        assert event.metrics["generated"] == 16.0  # 8 questions × 2 answers
        assert 0 < event.metrics["kept"] <= event.metrics["generated"] * event.metrics["accuracy"]
        assert event.metrics["keep_rate"] == pytest.approx(event.metrics["kept"] / 16)
    summaries = [e.text for e in events if isinstance(e, LogMessage) and "answers correct" in e.text]
    assert len(summaries) == 2 and summaries[0].startswith("self_distill round 1/2") and summaries[1].startswith("self_distill round 2/2")
    # The second round samples from the student the first round trained: after the round-end checkpoint.
    saved = next(i for i, e in enumerate(events) if isinstance(e, CheckpointSaved) and e.step == 2)
    assert events.index(next(e for e in events if isinstance(e, LogMessage) and "round 2/2: sampling" in e.text)) > saved
    shown = [e for e in events if isinstance(e, SamplesGenerated)]
    assert [e.step for e in shown] == [0, 2] and all(s.student[0] in "✓✗" and s.reference for e in shown for s in e.samples)
    folder = outcome.run.path / "self_distill"
    for r in (1, 2):
        result = json.loads((folder / f"round-0{r}.json").read_text())
        assert len(result["kept"]) == steps[2 * r - 1].metrics["kept"]
        assert sum(len(json.loads(line)["questions"]) for line in (folder / f"round-0{r}.samples.jsonl").read_text().splitlines()) == 8
    assert [s for s, _ in outcome.run.checkpoints()] == [2]  # a checkpoint ends every round but the last, save_steps 0
    start, end = weights(tiny_pair[1]), weights(outcome.final_path)
    assert any(not torch.equal(start[k], end[k]) for k in start)


def test_stop_inside_a_round_and_resume_finishes_like_an_uninterrupted_run(finished_run, tiny_pair, tiny_data, tmp_path):
    reference, _ = finished_run
    control = RunControl()

    def stop_at_three(event):
        if isinstance(event, StepLogged) and event.step == 3:
            control.request_stop()

    stopped = train(sd_config(tiny_pair[1], tiny_data), runs_root=tmp_path, on_event=stop_at_three, control=control)
    assert stopped.state == "stopped" and stopped.step == 3
    events: list = []
    resumed = train(None, run=stopped.run, resume=True, on_event=events.append)
    assert resumed.state == "finished" and resumed.step == 4
    assert any(isinstance(e, LogMessage) and "round 2/2: its answers were sampled before the restart" in e.text for e in events)
    assert not any(isinstance(e, LogMessage) and "sampling 2 answers" in e.text for e in events), "no finished round is sampled again"
    a, b = weights(reference.final_path), weights(resumed.final_path)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_a_stop_while_a_round_samples_resumes_its_sampling_where_it_stopped(finished_run, tiny_pair, tiny_data, tmp_path):
    reference, _ = finished_run
    control = RunControl()

    def stop_in_round_two(event):
        if isinstance(event, LogMessage) and "round 2/2: sampling" in event.text:
            control.request_stop()  # honoured after the round's first batch

    stopped = train(sd_config(tiny_pair[1], tiny_data), runs_root=tmp_path, on_event=stop_in_round_two, control=control)
    assert stopped.state == "stopped" and stopped.step == 2
    store = RoundStore(stopped.run.path / "self_distill")
    assert store.finished(1) is None and list(store.batches(1)) == [0]
    resumed = train(None, run=stopped.run, resume=True)
    assert resumed.state == "finished"
    assert sorted(store.batches(1)) == [0, 1, 2, 3]
    a, b = weights(reference.final_path), weights(resumed.final_path)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_a_student_that_never_answers_right_is_told_early_and_the_run_ends_with_advice(tiny_pair, tiny_data, tmp_path):
    events: list = []
    config = sd_config(tiny_pair[1], tiny_data, {"checker": "sd_test_never", "questions_per_round": 4})
    with pytest.raises(ConfigError, match="got none of its 8 answers right.*trace SFT"):
        train(config, runs_root=tmp_path, on_event=events.append)
    warned = [e for e in events if isinstance(e, LogMessage) and e.level == "warning" and "none of the student's first 4 answers" in e.text]
    assert len(warned) == 1
    assert not any(isinstance(e, StepLogged) for e in events), [e for e in events if isinstance(e, StepLogged)]


def test_correct_answers_cut_off_are_not_kept_unless_asked(tiny_pair, tiny_data, tmp_path):
    config = sd_config(tiny_pair[1], tiny_data, {"keep_cut_off": False, "questions_per_round": 4})
    with pytest.raises(ConfigError, match="cut off at method.self_distill.max_new_tokens \\(6\\); raise it, or set keep_cut_off: true"):
        train(config, runs_root=tmp_path)


CHILD = """
import sys
from distill_gui.core.verify import register_checker
register_checker("sd_test_even_length", lambda predicted, reference: len(predicted) % 2 == 0)
from distill_gui.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_resume_after_sigkill_inside_a_round_equals_an_uninterrupted_run(tiny_pair, tiny_data, tmp_path):
    import sys

    import kill_and_resume

    from distill_gui.core.config import save_config
    from distill_gui.core.runs import RunDir

    config = sd_config(tiny_pair[1], tiny_data, max_steps=6, save_steps=2)
    reference = train(config, runs_root=tmp_path / "a")
    save_config(config, tmp_path / "run.yaml")
    command = [sys.executable, "-c", CHILD]
    # Round 2 is steps 4-6; its last checkpoint is step 4.
    run_dir = kill_and_resume.train_then_kill(command, tmp_path / "run.yaml", tmp_path / "b",
                                              lambda e: isinstance(e, StepLogged) and e.step == 5)
    run = RunDir(run_dir)
    assert run.final_model() is None, "the run finished before it was killed; the test proved nothing"
    assert [s for s, _ in run.checkpoints()][-1] == 4
    result = kill_and_resume.resume(command, run_dir, "--events", "json")
    assert "round 2/2: its answers were sampled before the restart" in result.stdout
    kill_and_resume.assert_same_weights(reference.final_path, run.final_dir)
