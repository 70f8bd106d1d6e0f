"""A served teacher (distill_gui.core.served_teacher) against a real OpenAI-compatible HTTP server on loopback.

The server (tests/openai_server.py) serves a tiny transformers model; the failure cases are the server's
own: stopped, another model name, slow, malformed answers, 429/503, a key it refuses, plain http on https.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
import tiny_models
import torch
from openai_server import ModelServer

from distill_gui.core.generation import GenerationSettings, generate
from distill_gui.core.served_teacher import ServedTeacher, ServedTeacherError, base_url
from distill_gui.core.teacher_data import TeacherDataConfig, generate_dataset, load_source


@pytest.fixture(scope="module")
def served(tiny_tokenizer):
    model = tiny_models.build_llama(tiny_tokenizer, hidden=32, layers=1, seed=5)
    with ModelServer(model, tiny_tokenizer, name="tiny") as server:
        yield server


@pytest.fixture(autouse=True)
def _reset(served):
    served.fail_next, served.delay, served.malformed, served.api_key = [], 0.0, False, None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_base_url_forms():
    assert base_url("http://localhost:8080") == "http://localhost:8080/v1"
    assert base_url("http://localhost:8080/v1/") == "http://localhost:8080/v1"
    assert base_url("https://h/v1/chat/completions") == "https://h/v1"
    with pytest.raises(ServedTeacherError, match="not an http"):
        base_url("localhost:8080")


def test_check_lists_models_completes_and_times(served):
    check = ServedTeacher(served.url).check(max_tokens=4)
    assert check.models == ("tiny",) and check.model == "tiny"
    assert isinstance(check.sample, str) and check.latency_s > 0
    assert "tiny answered" in check.summary()


def test_completions_equal_the_local_models_greedy_text(served, tiny_tokenizer):
    prompt = "Question: What is 3 plus 4? Answer:"
    teacher = ServedTeacher(served.url, model="tiny", api="completions")
    text = teacher.complete(prompt, max_tokens=6).text
    local = generate(served.model, tiny_tokenizer, [prompt], GenerationSettings(max_new_tokens=6))[0][0]
    assert text == local
    assert teacher.completion_tokens == 6


def test_concurrent_requests_keep_prompt_order(served):
    prompts = [f"Question: What is {i} plus 1? Answer:" for i in range(6)]
    one = ServedTeacher(served.url, model="tiny", api="completions", concurrency=1)
    many = ServedTeacher(served.url, model="tiny", api="completions", concurrency=4)
    a = [[c.text for c in row] for row in one.complete_many(prompts, max_tokens=4)]
    b = [[c.text for c in row] for row in many.complete_many(prompts, max_tokens=4)]
    assert a == b and len(a) == 6


def test_429_and_503_are_retried_then_succeed(served):
    served.fail_next = [429, 503]
    before = served.requests
    teacher = ServedTeacher(served.url, model="tiny", backoff=0.01)
    assert isinstance(teacher.complete("Hello", max_tokens=2).text, str)
    assert served.requests - before == 3


def test_retries_run_out_with_a_clear_error(served):
    served.fail_next = [503] * 5
    with pytest.raises(ServedTeacherError, match=r"kept failing \(HTTP 503.*after 2 retries"):
        ServedTeacher(served.url, model="tiny", backoff=0.01, max_retries=2).complete("Hello", max_tokens=2)


def test_server_down():
    with pytest.raises(ServedTeacherError, match=r"nothing answers at .* \(connection refused\)"):
        ServedTeacher(f"http://127.0.0.1:{_free_port()}/v1", model="tiny").list_models()


def test_wrong_model_name(served):
    with pytest.raises(ServedTeacherError, match="has no model 'llama-70b'; it serves: tiny"):
        ServedTeacher(served.url, model="llama-70b").resolve_model()
    with pytest.raises(ServedTeacherError, match="teacher.model: .* no model 'llama-70b'.*it serves: tiny"):
        ServedTeacher(served.url, model="llama-70b").complete("Hello", max_tokens=2)


def test_a_timeout(served):
    served.delay = 1.0
    with pytest.raises(ServedTeacherError, match=r"gave no answer within 0.2 s \(1 tries\)"):
        ServedTeacher(served.url, model="tiny", timeout=0.2, max_retries=0).complete("Hello", max_tokens=2)


def test_a_malformed_response(served):
    served.malformed = True
    with pytest.raises(ServedTeacherError, match=r"without choices\[0\] \(malformed response"):
        ServedTeacher(served.url, model="tiny").complete("Hello", max_tokens=2)


def test_api_keys(served, monkeypatch):
    served.api_key = "secret"
    monkeypatch.delenv("DG_TEST_KEY", raising=False)
    with pytest.raises(ServedTeacherError, match="environment variable DG_TEST_KEY is not set"):
        ServedTeacher(served.url, model="tiny", api_key_env="DG_TEST_KEY")
    monkeypatch.setenv("DG_TEST_KEY", "wrong")
    with pytest.raises(ServedTeacherError, match=r"refused the request \(HTTP 401.*key in DG_TEST_KEY was refused"):
        ServedTeacher(served.url, model="tiny", api_key_env="DG_TEST_KEY").list_models()
    monkeypatch.setenv("DG_TEST_KEY", "secret")
    assert ServedTeacher(served.url, model="tiny", api_key_env="DG_TEST_KEY").list_models() == ["tiny"]


def test_https_to_a_plain_http_server_is_a_tls_error(served):
    with pytest.raises(ServedTeacherError, match="TLS failed"):
        ServedTeacher(served.url.replace("http://", "https://"), model="tiny").list_models()


def test_rate_limit_spaces_request_starts(served):
    teacher = ServedTeacher(served.url, model="tiny", concurrency=4, rate_limit=20.0)
    started = time.perf_counter()
    teacher.complete_many(["Hi"] * 8, max_tokens=1)
    assert time.perf_counter() - started >= 7 / 20.0 * 0.95  # 8 starts at most 20 per second


def test_top_logprobs_from_both_apis(served, tiny_tokenizer):
    for api in ("chat", "completions"):
        c = ServedTeacher(served.url, model="tiny", api=api).complete("Question: 1 plus 1?", max_tokens=3, top_logprobs=5)
        assert len(c.tokens) == 3
        token, logprob, alts = c.tokens[0]
        assert len(alts) == 5 and logprob <= 0 and alts[0][1] >= alts[-1][1]


def test_generate_data_through_the_served_teacher_resumes(served, tiny_data, tmp_path):
    teacher = ServedTeacher(served.url, model="tiny", api="completions", concurrency=3)
    config = TeacherDataConfig(max_new_tokens=5, batch_size=4, verify=False, limit=10, chat_template="never")
    source = load_source(tiny_data, None, config)
    out = tmp_path / "traces.jsonl"
    first = generate_dataset(teacher, None, source[:6], out, config)
    assert first.done == 6 and first.new_tokens == 30
    served_before = served.requests
    report = generate_dataset(teacher, None, source, out, config)
    assert report.resumed_from == 6 and report.done == 10
    assert served.requests - served_before == 4  # only the 4 new prompts were asked
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 10 and all("completion" in r for r in rows)


def test_generate_data_cli_with_a_served_teacher(served, tiny_data, tmp_path):
    from distill_gui.cli import main

    out = tmp_path / "cli.jsonl"
    code = main(
        [
            "generate-data",
            "--teacher-url",
            served.url,
            "--teacher-model",
            "tiny",
            "--data",
            str(tiny_data),
            "--out",
            str(out),
            "--no-verify",
            "--limit",
            "3",
            "--max-new-tokens",
            "3",
            "--json",
        ]
    )
    assert code == 0 and len(out.read_text().splitlines()) == 3
    assert (
        main(
            [
                "generate-data",
                "--teacher-url",
                served.url,
                "--teacher-model",
                "nope",
                "--data",
                str(tiny_data),
                "--out",
                str(tmp_path / "x.jsonl"),
            ]
        )
        == 2
    )


def _rows(tokenizer, n=3):
    rows = []
    for i in range(n):
        p = tokenizer(f"Question: What is {i + 2} plus 3? Answer:", add_special_tokens=False)["input_ids"]
        c = tokenizer(f" {i + 2} + 3 = {i + 5}. #### {i + 5}", add_special_tokens=False)["input_ids"]
        rows.append({"input_ids": p + c, "labels": [-100] * len(p) + c})
    return rows


def test_top_logprobs_fill_the_teacher_cache(served, tiny_tokenizer):
    from distill_gui.core.losses import kd_loss_from_cache
    from distill_gui.core.teacher_cache import build_teacher_cache_from_served

    rows = _rows(tiny_tokenizer)
    teacher = ServedTeacher(served.url, model="tiny", api="completions")
    cache = build_teacher_cache_from_served(teacher, tiny_tokenizer, rows, top_k=8, temperature=1.0, fingerprint="f", encoding="exact")
    trained = sum(sum(v != -100 for v in r["labels"][1:]) for r in rows)
    assert cache.rows == 3 and cache.positions == trained and tuple(cache.ids.shape) == (trained, 8)
    # every log-prob the server named is the model's own, at the same token
    checked = 0
    with torch.no_grad():
        for r, row in enumerate(rows):
            logp = torch.log_softmax(served.model(torch.tensor([row["input_ids"]])).logits[0].float(), -1)
            positions = [p for p in range(len(row["input_ids"]) - 1) if row["labels"][p + 1] != -100]
            ids, lps = cache.for_rows([r])
            for k, pos in enumerate(positions):
                for j in range(8):
                    if lps[k, j] > -1e3:
                        assert lps[k, j].item() == pytest.approx(logp[pos, int(ids[k, j])].item(), abs=1e-4)
                        checked += 1
                assert torch.logsumexp(lps[k], 0).item() == pytest.approx(0.0, abs=1e-4)  # top-k and tail sum to 1
    assert checked > trained * 4
    hidden = torch.randn(trained, 32, requires_grad=True)
    out = kd_loss_from_cache(
        hidden,
        torch.randn(len(tiny_tokenizer), 32),
        cache.ids,
        cache.log_probs,
        torch.tensor([v for row in rows for v in row["labels"][1:] if v != -100]),
    )
    assert torch.isfinite(out.total)


def test_a_served_model_with_another_tokenizer_is_refused_for_logit_kd(tiny_tokenizer):
    from distill_gui.core.teacher_cache import TeacherCacheError, build_teacher_cache_from_served

    other = tiny_models.build_tokenizer(420, digits=False)
    with ModelServer(tiny_models.build_llama(other, seed=3), other, name="other") as server:
        teacher = ServedTeacher(server.url, model="other", api="completions")
        with pytest.raises(TeacherCacheError, match="splits row 0 differently .* logit KD is refused; .* still write text"):
            build_teacher_cache_from_served(teacher, tiny_tokenizer, _rows(tiny_tokenizer, 1), top_k=4, temperature=1.0, fingerprint="f")
        with pytest.raises(TeacherCacheError, match="temperature 1"):
            build_teacher_cache_from_served(teacher, tiny_tokenizer, _rows(tiny_tokenizer, 1), top_k=4, temperature=2.0, fingerprint="f")
