"""``distill-gui compare``: several models on the same rows, with recovery against a reference.

Example (the demo's teacher against three of its students, as the demo's recovery table)::

    distill-gui compare TEACHER RUN_L RUN_M RUN_S --data test.jsonl --max-new-tokens 56 --batch-size 100

Scores are cached: comparing again with one more model evaluates only the new one. Interrupt it and
run the same command again: the finished models are kept.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``compare`` subcommand."""
    p = subparsers.add_parser(
        "compare",
        help="accuracy, perplexity, recovery, agreement, speed and size of several models on the same rows",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="model folder, .gguf file, cached hub id, run folder (its final or latest complete checkpoint), "
                        "or a served model: http://host:port/v1#MODEL (an OpenAI-compatible server)")
    p.add_argument("--data", required=True, help="data file (any supported format); accuracy needs verifiable answers")
    p.add_argument("--reference", default=None,
                   help="what recovery is measured against (default: the first model, or the first run's teacher)")
    p.add_argument("--out", type=Path, default=None, help="results folder (default: <runs dir>/comparisons/<time>-<name>)")
    p.add_argument("--name", default="", help="name of the results folder")
    p.add_argument("--runs-dir", type=Path, default=None, help="the runs folder (default: the user data dir)")
    p.add_argument("--cache-dir", type=Path, default=None, help="score cache (default: <runs dir>/comparisons/.cache)")
    p.add_argument("--no-cache", action="store_true", help="score every model again (and store nothing)")
    p.add_argument("--json", action="store_true", help="print the results table as one JSON object")
    p.add_argument("--events", choices=["text", "json"], default="text", help="json: one event per line on stdout, 'stop' on stdin")
    p.add_argument("--limit", type=int, default=None, help="use only the first N rows")
    p.add_argument("--samples", type=int, default=1, help="K sampled answers per question for pass@k and majority vote")
    p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature of the K answers (> 0 when K > 1)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--api-key-env", default="", metavar="NAME",
                   help="environment variable holding the API key of the served models (URL#MODEL); default: no key")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--format", default="auto", help="data format (default: detect)")
    p.add_argument("--device", default="auto")
    p.add_argument("--chat-template", choices=["auto", "always", "never"], default="auto")
    p.set_defaults(func=cmd_compare)
    return p


class _TextProgress:
    """A line per model and a progress bar per phase on stderr."""

    def __init__(self) -> None:
        self.bar = None
        self.labels: list[str] = []

    def __call__(self, event) -> None:
        from tqdm import tqdm

        from distill_gui.core.compare_events import CompareStarted, ModelFailed, ModelProgress, ModelScored, ModelStarted

        if isinstance(event, CompareStarted):
            self.labels = event.labels
            print(f"comparing {len(event.labels)} models on {event.rows} rows of {event.data}; reference: {event.reference}",
                  file=sys.stderr)
        elif isinstance(event, ModelStarted):
            self._close()
            note = " (cached)" if event.cached else ""
            print(f"[{event.index + 1}/{len(self.labels)}] {event.label}{note}", file=sys.stderr)
        elif isinstance(event, ModelProgress) and event.phase != "loading":
            if self.bar is None or self.bar.desc != event.phase:
                self._close()
                self.bar = tqdm(total=event.total, desc=event.phase, unit="row", file=sys.stderr, dynamic_ncols=True, leave=False)
            self.bar.n = event.done
            self.bar.refresh()
        elif isinstance(event, (ModelScored, ModelFailed)):
            self._close()
            if isinstance(event, ModelFailed):
                print(f"      {event.label}: failed: {event.reason}", file=sys.stderr)

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_compare(args) -> int:
    """Run the comparison; 0 when it finished, 3 when stopped, 1 when no model could be scored."""
    from distill_gui.core.compare import CompareSettings, compare
    from distill_gui.core.compare_report import to_text

    settings = CompareSettings(
        max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, limit=args.limit, data_format=args.format,
        device=args.device, chat_template=args.chat_template, max_length=args.max_length, samples=args.samples,
        temperature=args.temperature, top_p=args.top_p, seed=args.seed, api_key_env=args.api_key_env,
    )
    stop = threading.Event()
    if args.events == "json":
        lock = threading.Lock()

        def reporter(event) -> None:
            with lock:
                sys.stdout.write(event.to_json() + "\n")
                sys.stdout.flush()

        def listen() -> None:
            try:
                for line in sys.stdin:
                    if line.strip().lower() == "stop":
                        stop.set()
            except (OSError, ValueError):  # no readable stdin: no control channel
                return

        threading.Thread(target=listen, name="compare-control", daemon=True).start()
    else:
        reporter = _TextProgress()

    def on_signal(signum, _frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\ndistill-gui: stopping (finished models are kept; run the same command again to continue)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_signal) if threading.current_thread() is threading.main_thread() else None
    try:
        result = compare(args.models, args.data, settings, reference=args.reference, out=args.out, runs_root=args.runs_dir,
                         cache_dir=args.cache_dir, use_cache=not args.no_cache, name=args.name, on_event=reporter, stop=stop)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    rows = result.table()
    if args.json:
        print(json.dumps({"folder": str(result.folder), "state": result.state, "reference": result.reference, "models": rows}))
    elif args.events != "json":
        print(to_text(rows), end="")
        print(f"results: {result.folder}")
    if result.state == "stopped":
        return 3
    return 0 if any(s.ok for s in result.scores) else 1
