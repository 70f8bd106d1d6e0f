"""A served teacher where it only writes text: synthetic-data labelling, the arena and compare; against a real
OpenAI-compatible server on loopback (tests/openai_server.py) serving the tiny pair's teacher, compared with the
same model loaded locally."""

from __future__ import annotations

import json

import pytest
from openai_server import ModelServer

from distill_gui.core.served_teacher import ServedTeacher
from distill_gui.core.synthetic_data import SyntheticConfig, make_synthetic_data


@pytest.fixture(scope="module")
def local_teacher(tiny_pair):
    from distill_gui.core.config import ModelConfig
    from distill_gui.core.models import load_model

    return load_model(ModelConfig(path=str(tiny_pair[0]), dtype="fp32"), role="teacher")


@pytest.fixture(scope="module")
def server(local_teacher):
    with ModelServer(local_teacher.model, local_teacher.tokenizer, name="teacher") as served:
        yield served


def _seeds(path, n=3):
    rows = [{"question": f"Tom has {i + 10} apples and eats {i}. How many are left?", "answer": "#### 10"} for i in range(1, n + 1)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def _labels(out):
    return [(r["question"], r["answer"]) for r in (json.loads(line) for line in out.read_text().splitlines())]


def test_synthetic_data_labelled_by_a_served_teacher_equals_the_local_teachers(local_teacher, server, tmp_path):
    seeds = _seeds(tmp_path / "seeds.jsonl")
    config = SyntheticConfig(
        count=4, generator="numbers", samples=1, temperature=0.0, max_new_tokens=5, threshold=0.0, batch_size=1, chat_template="never"
    )
    local = make_synthetic_data(local_teacher.model, local_teacher.tokenizer, seeds, tmp_path / "local.jsonl", config)
    before = server.requests
    served = make_synthetic_data(
        ServedTeacher(server.url, model="teacher", api="completions", concurrency=2), None, seeds, tmp_path / "served.jsonl", config
    )
    assert server.requests - before == 4  # one answer per question
    assert served.labelled == local.labelled == 4 and served.kept == local.kept
    assert _labels(tmp_path / "served.jsonl") == _labels(tmp_path / "local.jsonl")


def test_fewshot_questions_come_from_the_served_teacher_too(server, tmp_path):
    seeds = _seeds(tmp_path / "seeds.jsonl", 6)
    config = SyntheticConfig(count=2, generator="fewshot", samples=2, temperature=1.0, max_new_tokens=4, threshold=0.0, batch_size=2,
                             chat_template="never", question_temperature=1.0, max_tries=8)
    before = server.requests
    report = make_synthetic_data(ServedTeacher(server.url, model="teacher", api="completions"), None, seeds, tmp_path / "f.jsonl", config)
    assert report.questions >= 1 and report.labelled == report.questions
    assert server.requests - before >= report.questions * 2  # the questions, then two answers each


def test_the_cli_labels_synthetic_data_through_a_served_teacher(server, tmp_path, capsys):
    from distill_gui.cli import main

    seeds = _seeds(tmp_path / "seeds.jsonl")
    out = tmp_path / "cli.jsonl"
    code = main(["generate-data", "--synthetic", "3", "--generator", "numbers", "--teacher-url", server.url, "--teacher-model", "teacher",
                 "--api", "completions", "--data", str(seeds), "--out", str(out), "--num-samples", "1", "--max-new-tokens", "3",
                 "--threshold", "0", "--json"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and report["labelled"] == report["questions"] == 3
    assert main(["generate-data", "--synthetic", "3", "--generator", "numbers", "--teacher-url", server.url, "--teacher-model", "nope",
                 "--data", str(seeds), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert not (tmp_path / "x.jsonl").exists()


def test_a_served_model_plays_in_the_arena_like_the_same_model_loaded(tiny_pair, server):
    from distill_gui.core.arena_players import ArenaPlayers, typed_example
    from distill_gui.core.served_teacher_config import served_spec_label

    players = ArenaPlayers(device="cpu")
    example = typed_example("What is 2 plus 3?")
    spec = f"{server.url}#teacher"
    before = server.requests
    served = players.answer(spec, example, max_new_tokens=6)
    assert server.requests > before
    assert served == players.answer(str(tiny_pair[0]), example, max_new_tokens=6)
    assert served_spec_label(spec) == f"teacher@127.0.0.1:{server.port}"
    from distill_gui.core.served_teacher import ServedTeacherError

    with pytest.raises(ServedTeacherError, match="has no model 'nope'"):
        players.answer(f"{server.url}#nope", example)


def test_a_served_spec_is_a_url_and_an_optional_model_name():
    from distill_gui.core.served_teacher_config import is_served_spec, split_served_spec

    assert is_served_spec(" http://h:1/v1#m ") and not is_served_spec("/models/http")
    assert split_served_spec("https://h/v1#org/model") == ("https://h/v1", "org/model")
    assert split_served_spec("http://h/v1") == ("http://h/v1", "")


def test_compare_scores_a_served_model_by_its_answers_like_the_same_model_loaded(tiny_pair, server, tmp_path):
    from distill_gui.core.compare import CompareSettings, compare
    from distill_gui.core.compare_events import ModelStarted
    from distill_gui.resources import demo_dir

    spec = f"{server.url}#teacher"
    settings = CompareSettings(max_new_tokens=8, batch_size=1, limit=4, device="cpu")
    events: list = []
    result = compare([str(tiny_pair[0]), spec], str(demo_dir() / "test.jsonl"), settings, runs_root=tmp_path / "runs", on_event=events.append)
    scores = {s.label: s for s in result.scores}
    local, served = scores["teacher"], scores[f"teacher@127.0.0.1:{server.port}"]
    assert local.ok and served.ok, (local.error, served.error)
    assert served.answered == local.answered == 4 and served.accuracy == local.accuracy
    assert [p["output"] for p in served.predictions] == [p["output"] for p in local.predictions]
    assert served.perplexity is None and served.top1 == [] and served.tokens_per_s > 0
    row = {r["label"]: r for r in result.table()}[served.label]
    assert row["perplexity_ratio"] is None and row["top1_agreement"] is None
    # Never cached: a second comparison asks the server again.
    before = server.requests
    again: list = []
    compare([spec], str(demo_dir() / "test.jsonl"), settings, runs_root=tmp_path / "runs", on_event=again.append)
    assert server.requests - before >= 4
    assert [e.cached for e in again if isinstance(e, ModelStarted)] == [False]


def test_compare_samples_a_served_model_for_pass_at_k(server, tmp_path):
    from distill_gui.core.compare import CompareSettings, compare
    from distill_gui.resources import demo_dir

    settings = CompareSettings(max_new_tokens=6, limit=3, device="cpu", samples=2, temperature=1.0, seed=1)
    result = compare([f"{server.url}#teacher"], str(demo_dir() / "test.jsonl"), settings, runs_root=tmp_path / "runs")
    score = result.scores[0]
    assert score.ok and 0.0 <= score.majority_accuracy <= score.pass_at_k <= 1.0
    assert all(len(p["sample_answers"]) == 2 for p in score.predictions)


def test_compare_names_a_served_model_that_fails_in_one_line(server, tmp_path):
    from distill_gui.core.compare import CompareSettings, compare
    from distill_gui.resources import demo_dir

    result = compare([f"{server.url}#nope"], str(demo_dir() / "test.jsonl"), CompareSettings(max_new_tokens=4, limit=2, device="cpu"),
                     runs_root=tmp_path / "runs")
    assert result.scores[0].error.startswith("teacher.model: the server at ") and "it serves: teacher" in result.scores[0].error


def test_compare_reaches_a_served_model_behind_an_api_key(server, tmp_path, monkeypatch, capsys):
    """Without the key the served model's row names --api-key-env; with it (the CLI's option) it is scored."""
    from distill_gui.cli import main
    from distill_gui.core.compare import CompareSettings, compare
    from distill_gui.resources import demo_dir

    data = str(demo_dir() / "test.jsonl")
    monkeypatch.setattr(server, "api_key", "secret")
    refused = compare([f"{server.url}#teacher"], data, CompareSettings(max_new_tokens=4, limit=2, device="cpu"), runs_root=tmp_path / "r1")
    assert "HTTP 401" in refused.scores[0].error and "set --api-key-env (in the app: Compare, API key variable) to the variable" in refused.scores[0].error
    monkeypatch.delenv("DG_COMPARE_KEY", raising=False)
    unset = compare([f"{server.url}#teacher"], data, CompareSettings(max_new_tokens=4, limit=2, device="cpu", api_key_env="DG_COMPARE_KEY"),
                    runs_root=tmp_path / "r2")
    assert "--api-key-env (in the app: Compare, API key variable): the environment variable DG_COMPARE_KEY is not set" in unset.scores[0].error
    monkeypatch.setenv("DG_COMPARE_KEY", "secret")
    code = main(["compare", f"{server.url}#teacher", "--data", data, "--limit", "2", "--max-new-tokens", "4", "--device", "cpu",
                 "--api-key-env", "DG_COMPARE_KEY", "--runs-dir", str(tmp_path / "r3"), "--json"])
    assert code == 0, capsys.readouterr().err
    table = json.loads(capsys.readouterr().out)
    assert table["models"][0]["error"] in (None, "") and table["models"][0]["answered"] == 2
