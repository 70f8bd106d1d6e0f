"""Traces per second through a served teacher: requests in flight at once against one request at a time.

A real OpenAI-compatible HTTP server on loopback (tests/openai_server.py) serves a small random Llama
(h=128, 4 layers, the tiny test tokenizer) and batches requests that arrive together (as vLLM, SGLang
and llama.cpp's parallel slots do). ``distill-gui generate-data``'s code path
(:func:`distill_gui.core.teacher_data.generate_dataset` with a
:class:`~distill_gui.core.served_teacher.ServedTeacher`) writes ``--prompts`` greedy traces of
``--max-new-tokens`` tokens, once with ``concurrency=1`` and once with ``--concurrency``; rounds
alternate and each keeps its best.

``--gguf FILE`` measures llama.cpp's own server instead (llama-cpp-python[server], which answers one
request at a time: the figure then shows what concurrency gains without server-side batching).

Last line: ``served_generate_speedup: X`` = traces/s with concurrency / traces/s one at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--gguf", default="", help="serve this GGUF file with llama.cpp's server (llama-cpp-python[server]) instead")
    args = parser.parse_args()

    import tiny_models
    import torch

    from distill_gui.core.served_teacher import ServedTeacher
    from distill_gui.core.teacher_data import TeacherDataConfig, generate_dataset, load_source

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    tokenizer = tiny_models.build_tokenizer()
    model = tiny_models.build_llama(tokenizer, hidden=128, layers=4, heads=4, seed=0)
    work = Path(tempfile.mkdtemp(prefix="bench_served_"))
    data = work / "prompts.jsonl"
    data.write_text(
        "\n".join(
            json.dumps({"prompt": f"Question: What is {i % 9 + 1} plus {i % 7 + 2}? Answer:", "completion": " #### 0"})
            for i in range(args.prompts)
        )
        + "\n"
    )
    config = TeacherDataConfig(
        max_new_tokens=args.max_new_tokens, batch_size=args.prompts, verify=False, dedup=False, chat_template="never"
    )
    source = load_source(data, None, config)
    best: dict[int, float] = {}
    with _server(args.gguf, model, tokenizer) as server:
        api = "chat" if args.gguf else "completions"  # an instruct GGUF answers a user message
        ServedTeacher(server.url, model="bench", api=api).complete("warm up", max_tokens=4)
        for round_ in range(args.rounds):
            for concurrency in (1, args.concurrency):
                teacher = ServedTeacher(server.url, model="bench", api=api, concurrency=concurrency)
                server.batches.clear()
                started = time.perf_counter()
                report = generate_dataset(teacher, None, source, work / f"out_{round_}_{concurrency}.jsonl", config)
                seconds = time.perf_counter() - started
                assert report.done == args.prompts
                rate = args.prompts / seconds
                best[concurrency] = max(best.get(concurrency, 0.0), rate)
                sizes = server.batches
                batching = f"; the server's batches held {sum(sizes) / len(sizes):.1f} requests on average" if sizes else ""
                print(
                    f"round {round_ + 1} concurrency {concurrency}: {rate:.2f} traces/s ({report.new_tokens} new tokens, "
                    f"{seconds:.1f} s{batching})",
                    flush=True,
                )
    print(f"one at a time: {best[1]:.2f} traces/s; concurrency {args.concurrency}: {best[args.concurrency]:.2f} traces/s")
    print(f"served_generate_speedup: {best[args.concurrency] / best[1]:.2f}")


class _LlamaServer:
    """llama.cpp's server (``python -m llama_cpp.server``) on a free loopback port, serving ``gguf`` as "bench"."""

    def __init__(self, gguf: str):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"
        self.batches: list[int] = []  # llama-cpp-python's server answers one request at a time
        self.command = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            gguf,
            "--model_alias",
            "bench",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
        ]

    def __enter__(self) -> "_LlamaServer":
        import subprocess

        from distill_gui.core.served_teacher import ServedTeacher, ServedTeacherError

        self.proc = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(240):
            try:
                ServedTeacher(self.url, timeout=2, max_retries=0).list_models()
                return self
            except ServedTeacherError:
                time.sleep(0.5)
        self.proc.kill()
        raise SystemExit("llama.cpp's server did not start within 120 s")

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def _server(gguf: str, model, tokenizer):
    from openai_server import ModelServer

    return _LlamaServer(gguf) if gguf else ModelServer(model, tokenizer, name="bench", max_batch_wait=0.02)


if __name__ == "__main__":
    main()
