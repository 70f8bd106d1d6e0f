"""The ``distill-gui`` command line: everything the app does, headless, from the same core.

    distill-gui train CONFIG [key=value ...] [--runs-dir DIR] [--events json]
    distill-gui resume RUN_DIR [--events json]
    distill-gui eval MODEL --data FILE [--json]
    distill-gui generate --teacher A --student B --prompt TEXT
    distill-gui compare MODEL [MODEL ...] --data FILE [--reference MODEL] [--json]
    distill-gui export RUN_OR_MODEL --to hf|gguf|ollama [--quant f16|q8_0|q4_k_m] [--out DIR] [--force]
    distill-gui info

Bad input ends with a non-zero exit code and one line saying what is wrong — never a bare traceback.
This module imports only the Qt-free core.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from distill_gui import __version__
from distill_gui.core.config import CHAT_TEMPLATE_CHOICES, STRATEGIES
from distill_gui.core.errors import UserError, is_user_error

# Exit codes
EXIT_OK = 0
EXIT_FAILED = 1  # the run failed or diverged
EXIT_BAD_INPUT = 2
EXIT_STOPPED = 3


# ---- Output --------------------------------------------------------------------------------------


class ConsoleReporter:
    """Prints events for a person: a progress bar with ETA on stderr, one line per notable event."""

    def __init__(self) -> None:
        self.bar = None

    def __call__(self, event) -> None:
        from distill_gui.core.events import RunFailed, RunFinished, RunStarted, RunStopped, SamplesGenerated, StepLogged
        from distill_gui.core.runs import describe_event

        if isinstance(event, RunStarted):
            from tqdm import tqdm

            self.bar = tqdm(total=event.total_steps, initial=event.start_step, unit="step", dynamic_ncols=True, file=sys.stderr)
        if isinstance(event, StepLogged) and self.bar is not None:
            self.bar.n = event.step
            postfix = {"loss": f"{event.loss:.4f}"}
            for key, value in event.metrics.items():
                postfix[key] = f"{value:.4f}"
            postfix["tok/s"] = f"{event.tokens_per_s:.0f}"
            self.bar.set_postfix(postfix, refresh=True)
            return
        if isinstance(event, (RunFinished, RunStopped, RunFailed)) and self.bar is not None:
            self.bar.close()
            self.bar = None
        text = describe_event(event)
        if isinstance(event, SamplesGenerated):
            lines = [text]
            for s in event.samples:
                lines.append(f"  prompt:  {_short(s.prompt)}")
                if s.teacher is not None:
                    lines.append(f"  teacher: {_short(s.teacher)}")
                lines.append(f"  student: {_short(s.student)}")
            text = "\n".join(lines)
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)


def _short(text: str, width: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


class JsonEventWriter:
    """Writes each event as one JSON line on stdout (for the GUI's supervisor)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __call__(self, event) -> None:
        with self.lock:
            sys.stdout.write(event.to_json() + "\n")
            sys.stdout.flush()


def _install_signal_handlers(control) -> dict:
    """First Ctrl-C / SIGTERM / SIGHUP (the terminal closed): stop after the current step and save a
    checkpoint; second: exit now (the run is left interrupted, resumable).

    Returns the previous handlers, for :func:`_restore_signal_handlers`.
    """

    def handler(signum, _frame):
        if control.stop_requested:
            raise KeyboardInterrupt
        print("\nstopping after this step (saving a checkpoint); press Ctrl-C again to abort", file=sys.stderr)
        control.request_stop()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
            if sig is not None:
                previous[sig] = signal.signal(sig, handler)
    return previous


def _restore_signal_handlers(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


# ---- Commands ------------------------------------------------------------------------------------


def _run_training(args, config=None, run=None, resume=False) -> int:
    from distill_gui.core import distributed_launch
    from distill_gui.core.training import RunControl, train

    distributed_launch.prepare_process()
    control = RunControl()
    reporter = JsonEventWriter() if args.events == "json" else ConsoleReporter()
    previous = _install_signal_handlers(control)
    try:
        outcome = train(config, runs_root=getattr(args, "runs_dir", None), run=run, on_event=reporter, control=control, resume=resume)
    finally:
        _restore_signal_handlers(previous)
    distributed_launch.finish_process(outcome.state)
    main_process = distributed_launch.is_main_process()
    if args.events != "json" and main_process:
        print(outcome.run.path)
    if distributed_launch.launch_dir() is not None:
        # One of the processes we launched through accelerate: the launching command reports how the run
        # ended (a non-zero exit here would make the launcher print a failure report for a clean stop).
        if main_process:
            distributed_launch.write_outcome(outcome.state, outcome.run.path)
        return EXIT_OK if outcome.state in ("finished", "stopped") else EXIT_FAILED
    if outcome.state == "finished":
        return EXIT_OK
    if outcome.state == "stopped":
        return EXIT_STOPPED
    return EXIT_FAILED


def _launch_processes(args, training) -> int:
    """Run this very command in ``training.processes`` processes through ``accelerate launch``.

    The accelerate config is written into a scratch folder; the main process copies it into the run
    folder. Returns the exit code the run would have had in one process.
    """
    import subprocess
    import tempfile

    from distill_gui.core import distributed_launch

    where = Path(tempfile.mkdtemp(prefix="distill-gui-launch-"))
    try:
        launch = distributed_launch.prepare_launch(training, where, list(args.argv))
        print(f"starting {training.processes} processes ({training.strategy}) through accelerate launch", file=sys.stderr)
        env = {**os.environ, **launch.env}
        previous = {}
        if threading.current_thread() is threading.main_thread():
            # Ctrl-C reaches every process of the terminal's group; the launched ones stop after their step.
            previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN)}
        try:
            code = subprocess.run(launch.argv, env=env).returncode
        finally:
            _restore_signal_handlers(previous)
        outcome = distributed_launch.read_outcome(launch.folder)
    finally:
        import shutil

        shutil.rmtree(where, ignore_errors=True)
    state = outcome.get("state")
    if state == "finished":
        return EXIT_OK
    if state == "stopped":
        return EXIT_STOPPED
    if state is None:
        print(f"distill-gui: error: the training processes ended (code {code}) before the run reported how it ended", file=sys.stderr)
    return EXIT_FAILED


def cmd_train(args) -> int:
    from distill_gui.core import distributed_launch
    from distill_gui.core.config import load_config

    overrides = list(args.overrides)
    if args.processes is not None:
        overrides.append(f"training.processes={args.processes}")
    if args.strategy is not None:
        overrides.append(f"training.strategy={args.strategy}")
    config = load_config(args.config, overrides)
    if args.recipe:  # the recipe's method, stages and data.mix; key=value overrides keep their values
        from distill_gui.core import recipes

        recipe = recipes.get(args.recipe)
        config = recipes.apply(recipe, config, keep=tuple(item.split("=", 1)[0].strip() for item in overrides))
        for need in recipes.unmet(recipes.check_needs(recipe, config)):
            print(f"distill-gui: recipe {recipe.name}: {need.text}", file=sys.stderr)
    if args.dry_run:
        from distill_gui.core.config import dump_config

        print(dump_config(config), end="")
        return EXIT_OK
    if distributed_launch.needs_launch(config.training):
        config.validate_for_run()  # bad input is refused here, before any process starts
        return _launch_processes(args, config.training)
    return _run_training(args, config=config)


def cmd_resume(args) -> int:
    from distill_gui.core.runs import RunDir

    run = RunDir(Path(args.run_dir))
    if not run.is_run():
        raise UserError(f"{args.run_dir}: not a run folder (no config.yaml)")
    from distill_gui.core import distributed_launch

    training = run.load_config().training
    if distributed_launch.needs_launch(training):  # a run of several processes resumes as one
        return _launch_processes(args, training)
    return _run_training(args, run=run, resume=True)


def cmd_eval(args) -> int:
    from distill_gui.core.evaluation import EvalSettings, evaluate_model

    # Data settings left off the command line come from a run folder's config (or the defaults).
    data_settings = {"data_format": args.format, "chat_template": args.chat_template, "system_prompt": args.system_prompt,
                     "columns": _column_mapping(args.column) if args.column else None}
    given = {name: value for name, value in data_settings.items() if value is not None}
    settings = EvalSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, limit=args.limit, device=args.device, **given)
    result = evaluate_model(args.model, args.data, settings, progress=not args.json, given=set(given))
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(result.summary())
    return EXIT_OK


def _column_mapping(pairs: list[str]) -> dict[str, str]:
    """``["prompt=question", ...]`` as ``{"prompt": "question", ...}``; a pair without ``=`` is a UserError."""
    mapping = {}
    for pair in pairs:
        field_name, sep, column = pair.partition("=")
        if not sep or not field_name.strip() or not column.strip():
            raise UserError(f"--column {pair!r}: write FIELD=COLUMN, e.g. --column prompt=question")
        mapping[field_name.strip()] = column.strip()
    return mapping


def cmd_generate(args) -> int:
    from distill_gui.core.side_by_side import SideBySide

    if not args.teacher and not args.student:
        raise UserError("give --teacher, --student or both")
    prompts = list(args.prompt or [])
    if args.prompts_file:
        prompts += [line.strip() for line in Path(args.prompts_file).read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    if not prompts:
        raise UserError("give at least one --prompt (or --prompts-file)")
    pair = SideBySide(teacher=args.teacher, student=args.student, device=args.device, chat_template=args.chat_template)
    results = pair.answer(prompts, max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    if args.json:
        print(json.dumps([r.__dict__ for r in results], ensure_ascii=False))
        return EXIT_OK
    for r in results:
        print(f"=== prompt: {r.prompt}")
        if r.teacher is not None:
            print(f"--- teacher ({pair.teacher_name}):\n{r.teacher}")
        if r.student is not None:
            print(f"--- student ({pair.student_name}):\n{r.student}")
    return EXIT_OK


def cmd_info(args) -> int:
    from distill_gui.core.environment import environment_report, format_report

    report = environment_report()
    if args.json:
        print(json.dumps(report, default=str))
    else:
        print(f"distill-gui {__version__}")
        print(format_report(report))
    return EXIT_OK


def cmd_request(args) -> int:
    """Ask a run's training process to pause, resume or stop (through its folder; any process may ask)."""
    from distill_gui.core.run_requests import request
    from distill_gui.core.runs import RunDir

    run = RunDir(args.run_dir)
    if not run.is_run():
        raise UserError(f"{args.run_dir}: not a run folder (no config.yaml)")
    if not run.owner_alive():
        raise UserError(f"{run.path}: no process is training this run (state {run.status().get('state')}); nothing to {args.request}")
    request(run.path, args.request)
    print(f"asked {run.name} to {args.request}; it does so between steps", file=sys.stderr)
    return EXIT_OK


def cmd_runs(args) -> int:
    from distill_gui.core.runs import list_runs

    for run in list_runs(args.runs_dir):
        print(run.describe())  # a damaged run is listed with what is wrong, never a traceback
    return EXIT_OK


# ---- Parser --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distill-gui", description="Knowledge distillation of language models.")
    parser.add_argument("--version", action="version", version=f"distill-gui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train a student from a YAML config; prints the run folder")
    p.add_argument("config", help="YAML config file")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override config values, e.g. training.max_steps=50")
    p.add_argument("--runs-dir", type=Path, default=None, help="where run folders go (default: the user data dir)")
    p.add_argument("--events", choices=["text", "json"], default="text", help="json: one event per line on stdout, commands on stdin")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--recipe", default=None, metavar="NAME",
                   help="follow a recipe: its method, stages and data.mix over the config's (traces, logit_kd, on_policy_kd, "
                        "self_distill, traces_rlvr, synthetic; see distill_gui.core.recipes); key=value overrides still win")
    p.add_argument("--processes", type=int, default=None, metavar="N",
                   help="train in N processes, one per GPU, through accelerate launch (training.processes)")
    p.add_argument("--strategy", choices=STRATEGIES, default=None,
                   help="how the processes share the work: ddp, fsdp or deepspeed (training.strategy)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("resume", help="continue a stopped or crashed run from its last complete checkpoint")
    p.add_argument("run_dir", help="the run folder")
    p.add_argument("--events", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("eval", help="perplexity, answer accuracy, speed and memory of a model on a data file")
    p.add_argument("model", help="a model folder, or a run folder (its final checkpoint)")
    p.add_argument("--data", required=True, help="data file (any supported format)")
    p.add_argument("--format", default=None, help="data format (default: a run folder's data.format, else detect)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N rows")
    p.add_argument("--device", default="auto")
    p.add_argument("--chat-template", choices=CHAT_TEMPLATE_CHOICES, default=None,
                   help="default: a run folder's data.chat_template, else auto")
    p.add_argument("--system-prompt", default=None, help="default: a run folder's data.system_prompt, else none")
    p.add_argument("--column", action="append", metavar="FIELD=COLUMN",
                   help="map a format's field to your column (repeatable; default: a run folder's data.columns)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("generate", help="answer prompts with teacher and student, side by side")
    p.add_argument("--teacher", help="teacher model folder, GGUF file or hub id")
    p.add_argument("--student", help="student model folder, GGUF file, hub id or run folder")
    p.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    p.add_argument("--prompts-file", help="a text file with one prompt per line")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0, help="0 is greedy")
    p.add_argument("--device", default="auto")
    p.add_argument("--chat-template", choices=CHAT_TEMPLATE_CHOICES, default="auto")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("info", help="versions, devices, CUDA and bitsandbytes")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    for name, what, text in (("pause", "pause", "pause a training run between steps"),
                             ("unpause", "resume", "continue a paused training run"),
                             ("stop", "stop", "stop a training run after its current step, saving a checkpoint")):
        p = sub.add_parser(name, help=text)
        p.add_argument("run_dir", help="the run folder")
        p.set_defaults(func=cmd_request, request=what)

    p = sub.add_parser("runs", help="list run folders and their status")
    p.add_argument("--runs-dir", type=Path, default=None)
    p.set_defaults(func=cmd_runs)

    for module in ("distill_gui.cli_generate_data", "distill_gui.cli_demo", "distill_gui.cli_compare", "distill_gui.cli_doctor",
                   "distill_gui.cli_export"):
        try:
            extension = __import__(module, fromlist=["add_parser"])
        except ImportError:
            continue
        extension.add_parser(sub)
    return parser


def _is_expected(exc: BaseException) -> bool:
    """Bad input (a :class:`UserError`, or a file that cannot be read): reported in one line, exit 2."""
    return is_user_error(exc) or isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError))


def _quiet_libraries() -> None:
    """Keep library chatter (weight-loading bars, optional-kernel notices) out of our output."""
    import logging

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the command line; returns the exit code."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _quiet_libraries()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what a launch of several processes runs again
    if extra:
        # key=value overrides may come after options: `train cfg.yaml --runs-dir R training.max_steps=5`
        if getattr(args, "command", None) == "train" and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = list(args.overrides) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("distill-gui: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line for the user, the traceback only on request
        if os.environ.get("DISTILL_GUI_DEBUG"):
            raise
        expected = _is_expected(exc)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if not expected:
            message = f"{type(exc).__name__}: {message} (set DISTILL_GUI_DEBUG=1 for the traceback)"
        print(f"distill-gui: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT if expected else EXIT_FAILED
