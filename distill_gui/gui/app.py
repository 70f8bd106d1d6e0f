"""``distill-gui`` with no arguments: the desktop application.

The window is built from Qt, pyqtgraph and the Qt-free parts of the core only; torch, transformers and
peft are imported later, by background workers and by the training child process.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from distill_gui.resources import demo_dir


def demo_student_dir() -> Path:
    """Where the demo's student is made when the demo ships only a teacher (beside the user's runs)."""
    from distill_gui.core.runs import default_runs_root

    return default_runs_root().parent / "demo-student"


def demo_config():
    """The built-in demo pair (:func:`distill_gui.resources.demo_dir`) as a config, or None when it is not there.

    The demo ships a trained teacher and the task's data; the student is the demo's smallest
    random-initialised size, made on first use (see :meth:`MainWindow.prepare_demo_student`).
    """
    from distill_gui.core.config import ConfigError, RunConfig, load_config

    folder = demo_dir()
    for name in ("config.yaml", "demo.yaml"):
        path = folder / name
        if path.is_file():
            try:
                return load_config(path)
            except ConfigError:
                break
    teacher = folder / "teacher"
    train = folder / "train.jsonl"
    if not (teacher / "config.json").is_file() or not train.is_file():
        return None
    student = folder / "student"
    config = RunConfig(name="demo")
    config.teacher.path = str(teacher)
    config.student.path = str(student if (student / "config.json").is_file() else demo_student_dir())
    config.data.train = str(train)
    config.data.max_length = 160
    config.method.kind = "kd"
    config.method.kd.alpha = 0.5
    config.training.max_steps = 300
    config.training.batch_size = 16
    config.training.learning_rate = 1e-3
    config.training.warmup_steps = 10
    config.training.sample_steps = 25
    config.training.save_steps = 100
    config.training.num_probe_prompts = 3
    config.training.max_new_tokens = 32
    return config


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="distill-gui", description="The distill-gui desktop application.")
    parser.add_argument("config", nargs="?", help="a YAML config to open")
    parser.add_argument("--demo", action="store_true", help="open the built-in demo pair")
    parser.add_argument("--runs-dir", help="where run folders go and are listed from")
    parser.add_argument("--page", choices=["models", "data", "method", "train", "generations", "runs"], help="page to show first")
    parser.add_argument("--self-test", action="store_true", help="show the window on the demo pair, make its student, then exit (0: it worked)")
    return parser.parse_args(argv)


def create_window(args: argparse.Namespace | None = None, settings=None):
    """Build the main window for ``args`` (config, demo, runs dir); the QApplication must exist."""
    import yaml

    from distill_gui.core.config import ConfigError, RunConfig, config_from_dict, load_config
    from distill_gui.gui.main_window import PAGES, MainWindow
    from distill_gui.gui.settings import Settings

    args = args or _parse([])
    settings = settings or Settings()
    config, note, failed = None, "", False
    if args.config:
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            note, failed = f"Could not open {args.config}: {exc}", True
    if config is None and (args.demo or getattr(args, "self_test", False)):
        config = demo_config()
        if config is None:
            note = f"The demo pair is not in {demo_dir()}."
    if config is None and failed:
        config = RunConfig()  # the file asked for could not be read: nothing else opens in its place
    if config is None and not args.demo:
        text = settings.last_config_yaml()
        if text:
            try:
                config = config_from_dict(yaml.safe_load(text))
            except (ConfigError, yaml.YAMLError):
                config = None
    if config is None:
        config = demo_config()
    window = MainWindow(settings=settings, config=config, runs_root=args.runs_dir)
    if config is not None and config.student.path == str(demo_student_dir()):
        window.prepare_demo_student(config.teacher.path, config.student.path)
    window.restore_last_run()
    if note:
        window.show_message(note, error=True)
        window.show_notice(note)
    if args.page:
        window.show_page(PAGES[[p.lower() for p in PAGES].index(args.page)])
    return window


def _log_to_file() -> None:
    """Tracebacks of unexpected errors go to the app's log file (the screen shows one line)."""
    import logging

    from distill_gui.core.errors import app_log_path

    path = app_log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("distill_gui")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    """Open the application; returns its exit code."""
    args = _parse(sys.argv[1:] if argv is None else list(argv))
    from PySide6.QtWidgets import QApplication

    from distill_gui import __version__
    from distill_gui.gui.settings import APPLICATION, ORGANIZATION

    _log_to_file()
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "distill-gui"])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("distill-gui")
    app.setApplicationVersion(__version__)
    app.setDesktopFileName("distill-gui")
    from distill_gui.gui.app_icon import app_icon

    app.setWindowIcon(app_icon())
    from distill_gui.gui.compat import binding_problem

    problem = binding_problem()
    if problem:
        print(f"distill-gui: warning: {problem}", file=sys.stderr)
    window = create_window(args)
    if problem:
        window.show_message(problem, error=True)
    if args.self_test:
        from distill_gui.gui.self_test import SelfTest

        self_test = SelfTest(window)  # noqa: F841 - parented to the window; quits the app when done
    window.show()
    return app.exec()


if __name__ == "__main__":
    raise SystemExit(main())
