"""The student's sampled answers with the verifier's mark (SamplesScored) from rlvr, self_distill and on-policy KD.

Tiny real runs whose events (and the run folder's events.jsonl) carry the answers each method sampled for
training, each with the verifier's verdict; the reporter's cadence and rewards; the JSON round trip.
"""

from __future__ import annotations

import pytest

from distill_gui.core.config import config_from_dict
from distill_gui.core.events import (
    SCORED_SAMPLE_ITEMS,
    SamplesScored,
    ScoredSample,
    event_from_json,
    scored_step_due,
)
from distill_gui.core.methods.rlvr_rewards import ScoredAnswers, VerifierReward
from distill_gui.core.runs import describe_event
from distill_gui.core.training import train
from distill_gui.core.verify import register_checker

# Accepts about half of a random model's answers, so both marks appear.
register_checker("scored_test_even_length", lambda predicted, reference: len(predicted) % 2 == 0)


def _scored(events: list) -> list[SamplesScored]:
    return [e for e in events if isinstance(e, SamplesScored)]


def _recorded(run) -> list[SamplesScored]:
    return [e for e in run.events() if isinstance(e, SamplesScored)]


# ---- The event and the reporter


def test_the_event_survives_json_and_names_its_marks():
    event = SamplesScored(step=3, method="rlvr", items=(
        ScoredSample(prompt="<s>Q: 2+2?", completion="4 #### 4", correct=True, reward=1.5, answer="4", reference="4"),
        ScoredSample(prompt="Q: 1+1?", completion="three", correct=False, reward=0.0, reference="2", error="ValueError: no"),
        ScoredSample(prompt="Q: hi", completion="hello"),
    ))
    back = event_from_json(event.to_json())
    assert back == event
    assert describe_event(event) == "sampled answers at step 3: 3 shown, 1 of 2 correct"


def test_the_reporter_reports_the_first_step_then_every_n_with_the_total_reward():
    got: list[SamplesScored] = []
    report = ScoredAnswers(got.append, correct_weight=2.0, format_weight=0.5, every=5)
    texts = ["so #### 4", "4", "#### 5", "five"]
    for step in (1, 1, 2, 5, 7, 10):
        report(step, ["q1", "q1", "q2", "q2"], texts, ["4", "4", "5", "5"], [1.0, 1.0, 1.0, 0.0], {3: ValueError("bad")})
    assert [e.step for e in got] == [1, 5, 10]
    items = got[0].items
    assert [i.correct for i in items] == [True, True, True, False]
    assert [i.reward for i in items] == [2.5, 2.0, 2.5, 0.0]
    assert [i.answer for i in items] == ["4", "4", "5", None]
    assert items[3].error == "ValueError: bad" and items[0].error is None
    assert scored_step_due(1) and scored_step_due(20) and not scored_step_due(3)


def test_the_verifier_hands_its_verdicts_to_the_reporter_in_training_only():
    got: list[SamplesScored] = []
    reward = VerifierReward("numeric", lambda text: None)
    reward.on_scored = ScoredAnswers(got.append, correct_weight=1.0)
    state = type("S", (), {"global_step": 0})()
    reward(prompts=["q"] * 2, completions=["#### 7", "#### 8"], reference=["7", "7"], trainer_state=state)
    reward.in_training = lambda: False
    state.global_step = 9
    reward(prompts=["q"] * 2, completions=["#### 7", "#### 8"], reference=["7", "7"], trainer_state=state)
    assert [e.step for e in got] == [1]  # the evaluation round at step 10 is not reported
    assert [(i.completion, i.correct, i.reference) for i in got[0].items] == [("#### 7", True, "7"), ("#### 8", False, "7")]


# ---- Runs


@pytest.mark.slow
def test_an_rlvr_run_records_its_sampled_answers_with_the_verdicts(tiny_pair, tiny_data, tmp_path):
    events: list = []
    config = config_from_dict({
        "name": "rl", "student": {"path": str(tiny_pair[1])}, "data": {"train": str(tiny_data)},
        "method": {"kind": "rlvr", "rlvr": {"group_size": 4, "max_completion_length": 6, "beta": 0.0,
                                            "checker": "scored_test_even_length"}},
        "training": {"max_steps": 2, "batch_size": 8, "save_steps": 0, "precision": "fp32", "sample_steps": 2},
    })
    outcome = train(config, runs_root=tmp_path, on_event=events.append)
    assert outcome.state == "finished"
    scored = _scored(events)
    assert [e.step for e in scored] == [1, 2] and all(e.method == "rlvr" for e in scored)
    for event in scored:
        assert 0 < len(event.items) <= SCORED_SAMPLE_ITEMS
        for item in event.items:
            assert "Question: What is" in item.prompt and item.reference is not None
            assert item.correct is (len(item.completion) % 2 == 0)
            assert item.reward == (1.0 if item.correct else 0.0)
    assert {i.correct for e in scored for i in e.items} == {True, False}
    assert _recorded(outcome.run) == scored  # events.jsonl holds them, read back the same


def test_a_self_distillation_run_records_each_rounds_answers_with_the_verdicts(tiny_pair, tiny_data, tmp_path):
    events: list = []
    config = config_from_dict({
        "name": "sd", "student": {"path": str(tiny_pair[1])}, "data": {"train": str(tiny_data)},
        "method": {"kind": "self_distill", "self_distill": {
            "rounds": 2, "samples_per_question": 2, "max_new_tokens": 6, "checker": "scored_test_even_length",
            "keep_cut_off": True, "questions_per_round": 4, "generation_batch_size": 8}},
        "training": {"max_steps": 2, "batch_size": 4, "save_steps": 0, "precision": "fp32"},
    })
    outcome = train(config, runs_root=tmp_path, on_event=events.append)
    assert outcome.state == "finished"
    scored = _scored(events)
    assert [e.step for e in scored] == [1, 2] and all(e.method == "self_distill" for e in scored)  # one per round
    for event in scored:
        assert len(event.items) == SCORED_SAMPLE_ITEMS  # 4 questions × 2 answers
        for item in event.items:
            assert item.correct is (len(item.completion) % 2 == 0) and item.reward is None
            assert item.reference and "What is" in item.prompt
    assert _recorded(outcome.run) == scored


def test_an_on_policy_kd_run_records_the_students_samples_checked_against_the_rows_answers(tiny_pair, tiny_data, tmp_path):
    events: list = []
    teacher, student = tiny_pair
    config = config_from_dict({
        "teacher": {"path": str(teacher)}, "student": {"path": str(student)}, "data": {"train": str(tiny_data)},
        "method": {"kind": "kd", "kd": {"on_policy": 1.0, "max_new_tokens": 6}},
        "training": {"max_steps": 3, "batch_size": 4, "save_steps": 0, "precision": "fp32", "sample_steps": 2},
    })
    outcome = train(config, runs_root=tmp_path, on_event=events.append)
    assert outcome.state == "finished"
    scored = _scored(events)
    assert [e.step for e in scored] == [1, 3] and all(e.method == "kd" for e in scored)
    for event in scored:
        assert len(event.items) == 4  # the batch's rows
        for item in event.items:
            assert "What is" in item.prompt and item.reference is not None  # the data's '#### n'
            assert item.correct is False or item.correct is True
    assert _recorded(outcome.run) == scored


@pytest.mark.parametrize("completion, reference, correct", [("so 3 + 4 = 7", "7", True), ("no idea", "7", False)])
def test_the_on_policy_marks_come_from_the_verifier(tiny_tokenizer, completion, reference, correct):
    import torch

    from distill_gui.core.methods.kd_on_policy import ON_POLICY_KEY, scored_samples

    prompt = tiny_tokenizer("Question: 3 plus 4?")["input_ids"]
    own = tiny_tokenizer(f" 3 + 4 = 7. #### {reference}", add_special_tokens=False)["input_ids"]
    said = tiny_tokenizer(" " + completion, add_special_tokens=False)["input_ids"]
    original = {"input_ids": torch.tensor([prompt + own]), "labels": torch.tensor([[-100] * len(prompt) + own])}
    sampled = {"input_ids": torch.tensor([prompt + said]), "labels": torch.tensor([[-100] * len(prompt) + said]), ON_POLICY_KEY: 1}
    event = scored_samples(tiny_tokenizer, 5, [(original, sampled)])
    (item,) = event.items
    assert event.step == 5 and item.reference == reference and item.correct is correct
    assert item.completion.strip() == completion
