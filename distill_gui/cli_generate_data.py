"""``distill-gui generate-data``: the teacher writes answers or reasoning traces; the verified ones become training data.

Example (rejection sampling, 4 samples per GSM8K question, keep the ones whose answer checks out)::

    distill-gui generate-data --teacher TEACHER --data gsm8k_train.jsonl --out traces.jsonl \\
        --num-samples 4 --temperature 0.8 --top-p 0.95

Interrupt it at any time and run the same command again: it continues where it stopped.

A teacher served over an OpenAI-compatible API (Ollama, LM Studio, llama.cpp, vLLM, SGLang) writes the
traces with ``--teacher-url http://localhost:8080/v1 --teacher-model NAME --concurrency 8``.
"""

from __future__ import annotations

import argparse
import json
import sys

from distill_gui.core.config import CHAT_TEMPLATE_CHOICES


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``generate-data`` subcommand."""
    p = subparsers.add_parser(
        "generate-data",
        help="teacher-written traces, verified against reference answers, as a training data file (resumable)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--teacher", default="", help="teacher model folder (or hub id in the local cache); or use --teacher-url")
    p.add_argument("--teacher-url", default="", help="a served teacher: an OpenAI-compatible server, e.g. http://localhost:11434/v1")
    p.add_argument("--teacher-model", default="", help="the served teacher's model name (default: the server's first model)")
    p.add_argument("--api-key-env", default="", help="environment variable holding the served teacher's API key")
    p.add_argument("--api", choices=("chat", "completions"), default="chat",
                   help="chat: the prompt as one user message (the server's chat template); completions: the prompt as it is")
    p.add_argument("--tokenizer", default="", help="with --teacher-url: a tokenizer folder whose chat template renders the prompts")
    p.add_argument("--concurrency", type=int, default=4, help="with --teacher-url: requests in flight at once (default 4)")
    p.add_argument("--rate-limit", type=float, default=0.0, help="with --teacher-url: at most N requests per second (0: no limit)")
    p.add_argument("--timeout", type=float, default=120.0, help="with --teacher-url: seconds to wait for one answer (default 120)")
    p.add_argument("--data", required=True, help="prompts with reference answers (GSM8K question/answer, prompt/completion, ...)")
    p.add_argument("--out", required=True, help="dataset file to write (.jsonl); its log is <out>.generations.jsonl")
    p.add_argument("--format", default="auto", help="input data format (default: detect from the columns)")
    p.add_argument("--num-samples", type=int, default=1, help="completions per prompt (default 1)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 is greedy (default); sampling needs > 0")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling threshold")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16, help="prompts per batch (each batch is saved before the next)")
    p.add_argument("--checker", default="numeric", help="answer checker: numeric (default), math, or a registered one")
    p.add_argument("--no-verify", action="store_true", help="keep every completion (no rejection sampling)")
    p.add_argument("--no-dedup", action="store_true", help="keep identical completions of the same prompt")
    p.add_argument("--max-per-prompt", type=int, default=0, help="keep at most N completions per prompt (0: all)")
    p.add_argument("--limit", type=int, default=0, help="use only the first N rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="the teacher's weights; auto: bf16 on a GPU or a CPU that computes it natively, else fp32")
    p.add_argument("--chat-template", choices=CHAT_TEMPLATE_CHOICES, default="auto")
    p.add_argument("--system-prompt", default=None)
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    from distill_gui.cli_synthetic import add_synthetic_arguments

    add_synthetic_arguments(p)
    p.set_defaults(func=cmd_generate_data)
    return p


def text_teacher(args, config):
    """(model, tokenizer) of the teacher that writes the text: the server at ``--teacher-url`` (answering and
    having the model is checked before anything is written; the tokenizer only when ``--tokenizer`` names one)
    or the local ``--teacher``. With the chat API and no tokenizer, the server applies the chat template."""
    if args.teacher_url:
        from distill_gui.core.served_teacher import ServedTeacher

        model = ServedTeacher(args.teacher_url, model=args.teacher_model, api_key_env=args.api_key_env, api=args.api,
                              concurrency=args.concurrency, rate_limit=args.rate_limit, timeout=args.timeout)
        model.resolve_model()
        tokenizer = None
        if args.tokenizer:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
        if args.api == "chat" and tokenizer is None and config.chat_template == "auto":
            config.chat_template = "never"
        return model, tokenizer
    from distill_gui.core.config import ModelConfig
    from distill_gui.core.devices import generation_dtype
    from distill_gui.core.models import load_model, resolve_device

    dtype = generation_dtype(args.dtype, resolve_device(args.device))
    if dtype != args.dtype:
        print(f"teacher weights in {dtype}: this CPU computes it natively (about 2x faster generation); --dtype fp32 keeps float32",
              file=sys.stderr)
    loaded = load_model(ModelConfig(path=args.teacher, device=args.device, dtype=dtype), role="teacher")
    return loaded.model, loaded.tokenizer


def cmd_generate_data(args) -> int:
    """Run the generation; exit code 0 when every prompt is done, 1 when stopped early."""
    from distill_gui.core.errors import UserError

    if bool(args.teacher) == bool(args.teacher_url):
        raise UserError("generate-data: give either --teacher (a local model) or --teacher-url (a served one)")
    if getattr(args, "synthetic", 0):  # new questions from the seed rows (distill_gui.cli_synthetic)
        from distill_gui.cli_synthetic import run_synthetic

        return run_synthetic(args)
    import dataclasses
    import signal
    import threading

    from tqdm import tqdm

    from distill_gui.core.teacher_data import TeacherDataConfig, generate_dataset, load_source

    config = TeacherDataConfig(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        num_samples=args.num_samples,
        batch_size=args.batch_size,
        verify=not args.no_verify,
        checker=args.checker,
        dedup=not args.no_dedup,
        max_per_prompt=args.max_per_prompt,
        data_format=args.format,
        chat_template=args.chat_template,
        system_prompt=args.system_prompt,
        limit=args.limit,
        seed=args.seed,
    )
    model, tokenizer = text_teacher(args, config)
    source = load_source(args.data, tokenizer, config)
    stop = threading.Event()

    def on_signal(signum, _frame):  # finish the batch in flight, keep it, then stop
        stop.set()
        print("\ndistill-gui: stopping after this batch (run the same command again to continue)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_signal)
    bar = tqdm(total=len(source), unit="prompt", desc="generating", file=sys.stderr, disable=args.json)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        report = generate_dataset(model, tokenizer, source, args.out, config, progress=progress, stop=stop)
    finally:
        bar.close()
        signal.signal(signal.SIGINT, previous)
    if args.json:
        print(json.dumps(dataclasses.asdict(report)))
    else:
        print(report.summary())
        print("kept per prompt: " + ", ".join(f"{k}: {v} prompts" for k, v in sorted(report.kept_histogram.items())))
        print(f"dataset: {report.out}  (log: {report.log})")
    return 1 if report.stopped else 0
