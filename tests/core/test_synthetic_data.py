"""Synthetic data (the Phi-4 pattern): new questions from seeds, labelled by the verifier or a majority vote; data.mix."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from distill_gui.core.config import ConfigError, config_from_dict
from distill_gui.core.data import DataError, prepare_data
from distill_gui.core.data_mix import mix_counts, pick_rows
from distill_gui.core.synthetic_data import (
    NewQuestion,
    SyntheticConfig,
    SyntheticDataError,
    label_question,
    majority_vote,
    make_questions,
    make_synthetic_data,
    register_generator,
    resample_numbers,
)


def _seeds(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


# ---- Majority vote


def test_the_majority_answer_wins_with_its_share_of_all_samples_as_confidence():
    vote = majority_vote(["so #### 1,000", "#### 7", "it is 1000.0", "no idea", "#### 1000"])
    assert vote.answer == "1000" and vote.confidence == pytest.approx(3 / 5) and vote.winner == 0
    assert vote.votes == {"1000": 3, "7": 1}
    tie = majority_vote(["#### 4", "#### 5"])
    assert tie.answer == "4" and tie.confidence == 0.5 and tie.winner == 0  # a tie goes to the answer given first
    nothing = majority_vote(["nothing here", ""])
    assert (nothing.answer, nothing.confidence, nothing.winner) == (None, 0.0, None)


def test_a_question_is_labelled_by_the_verifier_when_it_has_a_reference_else_by_a_majority_above_the_threshold():
    config = SyntheticConfig(samples=4, threshold=0.6)
    verified = label_question(NewQuestion("What is 2+2?", 0, reference="4"), ["#### 5", "#### 4", "#### 4", "x"], config)
    assert verified["label"] == "verifier" and verified["answer"] == "#### 4" and verified["confidence"] == 0.5
    agreed = label_question(NewQuestion("What is 3+3?", 1), ["#### 6", "#### 6", "#### 6", "#### 7"], config)
    assert agreed["label"] == "majority" and agreed["answer"] == "#### 6" and agreed["confidence"] == 0.75 and agreed["majority"] == "6"
    split = label_question(NewQuestion("What is 3+4?", 1), ["#### 7", "#### 7", "#### 8", "#### 9"], config)
    assert split["answer"] is None and split["confidence"] == 0.5  # below the threshold: dropped
    only_verifier = label_question(NewQuestion("q", 1), ["#### 6"] * 4, SyntheticConfig(samples=4, labels="verifier"))
    assert only_verifier["answer"] is None


# ---- Questions


def test_numbers_are_resampled_with_their_digit_counts_and_duplicates_are_dropped(tiny_tokenizer):
    made = resample_numbers(["Tom has 12 apples and eats 3. How many are left?"], random.Random(0), 20)
    for question in made:
        numbers = [w for w in question.text.replace("?", " ").replace(".", " ").split() if w.isdigit()]
        assert len(numbers) == 2 and len(numbers[0]) == 2 and len(numbers[1]) == 1 and question.reference is None
    config = SyntheticConfig(count=15, generator="numbers", batch_size=8)
    questions, tries = make_questions(None, tiny_tokenizer, ["Tom has 12 apples and eats 3. How many are left?"], config)
    assert len(questions) == 15 and len({q.text for q in questions}) == 15 and tries >= 15


def test_resampled_numbers_stay_near_keep_their_order_and_equalities():
    seed = "Ava has 40 pens. She gives 12 to Sam and 12 to Leo, 7 to Mia and buys 0 more. How many now?"
    for question in resample_numbers([seed], random.Random(1), 50):
        has, sam, leo, mia, more = (int(w.strip(".,?")) for w in question.text.split() if w.strip(".,?").isdigit())
        assert has > sam == leo > mia > more == 0  # the seed's order and equalities; 0 stays 0, no other 0
        assert 20 <= has <= 60 and 10 <= sam <= 18 and 3 <= mia <= 9  # from half to one and a half times, same digits
    # A number at the end of a sentence is re-drawn; a decimal is left alone.
    texts = {q.text for q in resample_numbers(["A pen costs 2.5 dollars. Ava buys 8."], random.Random(0), 30)}
    assert all(t.startswith("A pen costs 2.5 dollars. Ava buys ") for t in texts) and len(texts) > 3


def test_with_check_steps_answers_with_wrong_or_made_up_steps_do_not_vote():
    from distill_gui.core.synthetic_data import NewQuestion, label_question

    question = NewQuestion("Zoe has 29 eggs. She sells 14 of them. How many eggs does Zoe have now?", seed=0)
    misread = ["29 - 4 = 25.\n#### 25"] * 2  # a number the question never gave
    wrong = ["29 - 14 = 13.\n#### 13"]  # a wrong step
    sound = ["29 - 14 = 15.\n#### 15"]
    texts = misread + wrong + sound
    plain = label_question(question, texts, SyntheticConfig(samples=4, threshold=0.25, labels="majority"))
    assert plain["majority"] == "25"
    checked = label_question(question, texts, SyntheticConfig(samples=4, threshold=0.25, labels="majority", check_steps=True))
    assert checked["majority"] == "15" and checked["answer"] == sound[0] and checked["sound"] == 1
    assert checked["confidence"] == 0.25  # the share that agrees still counts every sample
    assert label_question(question, texts, SyntheticConfig(samples=4, threshold=0.5, labels="majority", check_steps=True))["answer"] is None


def test_the_new_question_is_taken_from_the_teachers_text():
    from distill_gui.core.synthetic_data import _first_question

    assert _first_question("Question: What is 3 plus 4?\nAnswer: 7") == "What is 3 plus 4?"
    assert _first_question(" How many cats?\n\nQuestion: another") == "How many cats?"
    assert _first_question("Answer: 5") == ""  # no question: dropped like a duplicate


def test_a_generator_that_makes_only_duplicates_is_refused_before_labelling(tiny_tokenizer):
    config = SyntheticConfig(count=5, generator="numbers", batch_size=4)
    with pytest.raises(SyntheticDataError, match="every one repeats a seed question.*questions with whole numbers"):
        make_questions(None, tiny_tokenizer, ["What colour is the sky?"], config)


def test_settings_are_checked_with_what_to_do():
    with pytest.raises(SyntheticDataError, match="temperature: 4 samples at temperature 0"):
        SyntheticConfig(samples=4, temperature=0.0)
    with pytest.raises(SyntheticDataError, match="generator: 'nope' is not a question maker"):
        SyntheticConfig(generator="nope")
    with pytest.raises(SyntheticDataError, match="threshold"):
        SyntheticConfig(threshold=1.5)


# ---- The job, with the tiny teacher


register_generator("test_sums", lambda seeds, rng, count: [
    NewQuestion(f"What is {a} plus {b}?", 0, reference=str(a + b)) for a, b in ((rng.randint(1, 99), rng.randint(1, 99)) for _ in range(count))
])


def test_synthetic_data_is_made_labelled_written_and_resumed(tiny_pair, tmp_path):
    from distill_gui.core.config import ModelConfig
    from distill_gui.core.models import load_model

    seeds = _seeds(tmp_path / "seeds.jsonl", [{"question": f"Tom has {i + 10} apples and eats {i}. How many are left?",
                                               "answer": f"#### {10}"} for i in range(1, 4)])
    loaded = load_model(ModelConfig(path=str(tiny_pair[0]), dtype="fp32"), role="teacher")
    config = SyntheticConfig(count=6, generator="numbers", samples=3, temperature=1.0, max_new_tokens=4, threshold=0.0, batch_size=4)
    out = tmp_path / "synthetic.jsonl"
    first = make_synthetic_data(loaded.model, loaded.tokenizer, seeds, out, config)
    assert first.questions == 6 and first.labelled == 6 and first.by_verifier == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == first.kept == first.by_majority
    assert all(set(r) == {"question", "answer", "confidence", "label", "seed"} and r["label"] == "majority" for r in rows)
    assert all(r["confidence"] in (1 / 3, 2 / 3, 1.0) for r in rows)
    # Again: nothing is made twice (the questions and labels are read back).
    labels = (tmp_path / "synthetic.jsonl.labels.jsonl").read_text()
    again = make_synthetic_data(loaded.model, loaded.tokenizer, seeds, out, config)
    assert again.labelled == 6 and (tmp_path / "synthetic.jsonl.labels.jsonl").read_text() == labels
    with pytest.raises(SyntheticDataError, match="started with other settings \\(count: 6\\); use another --out"):
        make_synthetic_data(loaded.model, loaded.tokenizer, seeds, out, SyntheticConfig(
            count=8, generator="numbers", samples=3, temperature=1.0, max_new_tokens=4, threshold=0.0, batch_size=4))
    # A generator that knows the answers: labelled by the verifier.
    verified = make_synthetic_data(loaded.model, loaded.tokenizer, seeds, tmp_path / "sums.jsonl",
                                   SyntheticConfig(count=4, generator="test_sums", samples=2, temperature=1.0, max_new_tokens=4))
    assert verified.questions == 4 and verified.by_majority == 0 and verified.kept == verified.by_verifier
    records = [json.loads(line) for line in (tmp_path / "sums.jsonl.labels.jsonl").read_text().splitlines()]
    assert all(r["label"] == "verifier" and r["reference"] for r in records)
    with pytest.raises(SyntheticDataError, match="labels: verifier needs reference answers"):
        make_synthetic_data(loaded.model, loaded.tokenizer, seeds, tmp_path / "none.jsonl",
                            SyntheticConfig(count=2, generator="numbers", samples=1, labels="verifier"))


@pytest.mark.slow
def test_the_cli_makes_synthetic_data_with_the_fewshot_teacher(tiny_pair, tmp_path, capsys):
    from distill_gui.cli import main

    seeds = _seeds(tmp_path / "seeds.jsonl", [{"question": f"What is {i} plus {i + 1}?", "answer": f"#### {2 * i + 1}"} for i in range(6)])
    out = tmp_path / "fewshot.jsonl"
    code = main(["generate-data", "--synthetic", "3", "--teacher", str(tiny_pair[0]), "--data", str(seeds), "--out", str(out),
                 "--num-samples", "2", "--temperature", "1.0", "--max-new-tokens", "4", "--threshold", "0", "--json"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and report["labelled"] == report["questions"] >= 1
    assert len((tmp_path / "fewshot.jsonl.questions.jsonl").read_text().splitlines()) == report["questions"]


# ---- data.mix


def test_mix_counts_follow_the_weights_and_add_up():
    assert mix_counts([30, 10], [0.5, 0.5]) == [20, 20]
    assert mix_counts([70, 30], [0.3, 0.7]) == [30, 70]
    assert mix_counts([5, 5, 5], [1, 1, 1]) == [5, 5, 5]
    assert sum(mix_counts([7, 6, 4], [0.2, 0.5, 0.3])) == 17
    assert mix_counts([10, 10], [1, 0]) == [20, 0]
    picked = pick_rows(4, 10, random.Random(0))
    assert sorted(Counter(picked).values()) == [2, 2, 3, 3]  # two whole passes, then a sample of the rest
    assert sorted(picked[:4]) == [0, 1, 2, 3] and sorted(picked[4:8]) == [0, 1, 2, 3]


def test_data_mix_gives_each_source_its_weights_share(tiny_tokenizer, tmp_path):
    real = _seeds(tmp_path / "real.jsonl", [{"question": f"real {i}?", "answer": f"r #### {i}"} for i in range(60)])
    synthetic = _seeds(tmp_path / "synthetic.jsonl", [{"question": f"syn {i}?", "answer": f"s #### {i}", "confidence": 1.0}
                                                      for i in range(20)])
    config = config_from_dict({"data": {"mix": [{"path": str(real), "weight": 0.25}, {"path": str(synthetic), "weight": 0.75}]}})
    prepared = prepare_data(config.data, tiny_tokenizer)
    kinds = Counter(e.prompt.split()[0] for e in prepared.train_examples)
    assert len(prepared.train) == 80 and kinds == {"real": 20, "syn": 60}
    assert Counter(e.prompt for e in prepared.train_examples if e.prompt.startswith("syn")).most_common(1)[0][1] == 3
    assert any("mix: synthetic.jsonl gives 60 of 80 rows (75%" in note for note in prepared.report.notes)
    # data.train joins the mix with weight 1; its held-out rows stay out of training.
    config = config_from_dict({"data": {"train": str(real), "eval_fraction": 0.1, "mix": [{"path": str(synthetic), "weight": 1}]}})
    prepared = prepare_data(config.data, tiny_tokenizer)
    held = {e.prompt for e in prepared.eval_examples}
    assert len(held) == 6 and not held & {e.prompt for e in prepared.train_examples}
    assert Counter(e.prompt.split()[0] for e in prepared.train_examples) == {"real": 37, "syn": 37}


def test_data_mix_checks_its_entries(tiny_tokenizer, tmp_path):
    with pytest.raises(ConfigError, match="data.mix\\[0\\].weight"):
        config_from_dict({"data": {"mix": [{"path": "a.jsonl", "weight": -1}]}})
    config = config_from_dict({"student": {"path": "s"}, "method": {"kind": "sft"}, "data": {"mix": [{"path": "", "weight": 1}]}})
    with pytest.raises(ConfigError, match="data.mix\\[0\\].path: no data is set"):
        config.validate_for_run()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    config = config_from_dict({"data": {"mix": [{"path": str(bad)}]}})
    with pytest.raises(DataError, match="bad.jsonl"):
        prepare_data(config.data, tiny_tokenizer)
