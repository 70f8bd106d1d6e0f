"""``distill-gui generate-data --synthetic N``: new questions from the seed rows, labelled by the teacher.

Example (200 questions made by re-sampling the numbers of GSM8K seeds, each labelled by a majority of 5
teacher answers that at least 3 of them agree on)::

    distill-gui generate-data --synthetic 200 --generator numbers --teacher TEACHER --data gsm8k_seeds.jsonl \\
        --out synthetic.jsonl --num-samples 5 --temperature 0.8 --threshold 0.6

A served teacher (``--teacher-url URL --teacher-model NAME``, requests in flight at once) does the same.
Then train on it mixed with real data: ``data.mix: [{path: synthetic.jsonl, weight: 0.3}, {path: real.jsonl, weight: 0.7}]``.
Interrupt it at any time and run the same command again: it continues where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys


def add_synthetic_arguments(p: argparse.ArgumentParser) -> None:
    """The ``--synthetic`` options of ``generate-data`` (the shared ones, e.g. --num-samples, mean the votes here)."""
    from distill_gui.core.synthetic_data import GENERATORS, LABELS

    g = p.add_argument_group("synthetic data (--synthetic N)")
    g.add_argument("--synthetic", type=int, default=0, metavar="N",
                   help="make N new questions from the --data seed rows and label them with the teacher (the Phi-4 pattern)")
    g.add_argument("--generator", default="fewshot",
                   help=f"question maker: fewshot (the teacher writes questions like a few seeds) or {', '.join(sorted(GENERATORS))}")
    g.add_argument("--shots", type=int, default=3, help="seed questions shown per new question (fewshot)")
    g.add_argument("--threshold", type=float, default=0.5,
                   help="least share of the --num-samples answers that must agree for a majority-labelled row (default 0.5)")
    g.add_argument("--check-steps", action="store_true",
                   help="before the vote, leave out answers whose written arithmetic is wrong or uses numbers the question "
                        "never gave (arithmetic word problems)")
    g.add_argument("--labels", choices=LABELS, default="auto",
                   help="auto: the verifier for questions with a reference, else majority vote; or only one of them")


def run_synthetic(args) -> int:
    """Make the synthetic dataset; exit code 0 when every question is labelled, 1 when stopped early."""
    import signal
    import threading

    from tqdm import tqdm

    from distill_gui.cli_generate_data import text_teacher
    from distill_gui.core.synthetic_data import SyntheticConfig, make_synthetic_data, read_seeds

    config = SyntheticConfig(
        count=args.synthetic, generator=args.generator, shots=args.shots, samples=args.num_samples,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens, threshold=args.threshold, labels=args.labels, checker=args.checker,
        check_steps=args.check_steps,
        batch_size=args.batch_size, data_format=args.format, chat_template=args.chat_template,
        system_prompt=args.system_prompt, seed=args.seed,
    )
    read_seeds(args.data, config)  # bad seed data is refused before the teacher loads
    model, tokenizer = text_teacher(args, config)  # a served teacher writes the questions and the answers too
    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()
        print("\ndistill-gui: stopping after this batch (run the same command again to continue)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_signal)
    bar = tqdm(total=args.synthetic, unit="question", desc="labelling", file=sys.stderr, disable=args.json)

    def progress(done: int, total: int) -> None:
        bar.total, bar.n = total, done
        bar.refresh()

    try:
        report = make_synthetic_data(model, tokenizer, args.data, args.out, config, progress=progress, stop=stop)
    finally:
        bar.close()
        signal.signal(signal.SIGINT, previous)
    print(json.dumps(dataclasses.asdict(report)) if args.json else f"{report.summary()}\ndataset: {report.out}")
    return 1 if report.stopped else 0
