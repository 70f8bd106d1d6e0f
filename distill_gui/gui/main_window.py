"""The main window: a sidebar of pages over one configuration, the run controller and the workers."""

from __future__ import annotations

import copy
from pathlib import Path

from PySide6.QtCore import QEventLoop, QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QCloseEvent, QIcon, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMainWindow,
    QMessageBox,
    QStackedWidget,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from distill_gui.core.config import (
    ConfigError,
    RunConfig,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
    save_config,
)
from distill_gui.core.events import Event
from distill_gui.core.methods import method_for
from distill_gui.core.methods import needs_teacher as method_needs_teacher
from distill_gui.core.methods.base import TEACHER_LOGITS
from distill_gui.core.runs import ACTIVE_STATES, RunDir, list_runs
from distill_gui.gui.arena_page import ArenaPage
from distill_gui.gui.ask_process import AskProcess
from distill_gui.gui.compare_page import ComparePage
from distill_gui.gui.data_page import DataPage
from distill_gui.gui.data_preview_process import DataPreviewProcess
from distill_gui.gui.demo_student_process import DemoStudentProcess
from distill_gui.gui.fields import ConfigBinder
from distill_gui.gui.generations_page import GenerationsPage
from distill_gui.gui.home_page import DONE, PROBLEM, WAITING, HomePage
from distill_gui.gui.main_menus import MainMenus
from distill_gui.gui.method_page import MethodPage
from distill_gui.gui.models_page import ModelsPage
from distill_gui.gui.pair_check_process import PairCheckProcess
from distill_gui.gui.runs_page import RunsPage
from distill_gui.gui.settings import Settings
from distill_gui.gui.supervisor import RunController
from distill_gui.gui.train_page import TrainPage

PAGES = ("Home", "Models", "Data", "Method", "Train", "Generations", "Runs", "Compare", "Arena")
INSPECT_DELAY_MS = 700
PREVIEW_DELAY_MS = 400
STOP_ON_CLOSE_TIMEOUT_MS = 120_000
# Keys that change the pair's inspection or the memory estimate (every method setting may: memory follows the method).
MODEL_KEYS = ("teacher.", "student.", "method.", "training.batch_size", "training.gradient_checkpointing", "data.max_length")


class MainWindow(QMainWindow):
    """Models → Data → Method → Train → Generations → Runs, over one :class:`RunConfig`."""

    # ---- Signals
    sig_inspect = Signal(int, object)
    """Ask the pair check (a child process) to describe the pair of a config (request id, RunConfig)."""
    sig_preview = Signal(int, str, str, object)
    """Ask the data previewer to parse a file (request id, path, format, columns)."""
    sig_build_demo_student = Signal(str, str)
    """Ask the demo builder to make the demo student (teacher folder, student folder)."""

    CLOSE_STOP, CLOSE_LEAVE, CLOSE_CANCEL = "stop", "leave", "cancel"

    def __init__(self, settings: Settings | None = None, config: RunConfig | None = None, runs_root: str | Path | None = None):
        super().__init__()
        self.setWindowTitle("distill-gui")
        self.setObjectName("main_window")
        self.settings = settings or Settings()
        self.controller = RunController(self)
        self.binder = ConfigBinder(self)
        self._base = config_to_dict(RunConfig())
        self._detected_format = "prompt_completion"
        self._inspect_id = 0
        self._preview_id = 0
        self.shown_run: str | None = None
        self._shown = False
        self._demo_student: tuple[str, str] | None = None
        self._demo_building = False
        self._start_demo_when_ready = False
        self._described: dict[str, object] = {}
        self._model_failures: dict[str, str] = {}
        self._closing = False
        self._blockers: dict[str, str] = {}
        """Known problems that would make a run fail (what, with the fix), by source: demo, teacher, student, data."""
        self._compat = None
        self._data_report = None
        self._data_failed = ""
        self.close_choice: str | None = None
        """Tests set this to answer the close question without a dialog."""

        # ---- Pages
        self.home_page = HomePage()
        self.models_page = ModelsPage(self.binder, self.settings)
        self.data_page = DataPage(self.binder)
        self.method_page = MethodPage(self.binder)
        self.train_page = TrainPage(self.controller, self.binder)
        self.generations_page = GenerationsPage()
        # A runs folder given on the command line is for this session; one chosen on the Runs page is remembered.
        root = Path(runs_root) if runs_root is not None else self.settings.runs_root()
        self.runs_page = RunsPage(root)
        self.models_page.set_runs_root(str(root))
        self.compare_page = ComparePage(self.settings, root)
        self.arena_page = ArenaPage()
        self.sidebar = QListWidget()
        self.sidebar.setObjectName("pages")
        self.stack = QStackedWidget()
        for name, page in zip(PAGES, self.pages()):
            page.setObjectName(f"page_{name.lower()}")
            self.sidebar.addItem(name)
            self.stack.addWidget(page)
        self.sidebar.setIconSize(QSize(16, 16))
        blank = QPixmap(16, 16)
        blank.fill(Qt.GlobalColor.transparent)
        self._blank_icon = QIcon(blank)  # pages without a state keep their names aligned with the others
        for row in range(self.sidebar.count()):
            self.sidebar.item(row).setIcon(self._blank_icon)
        self.sidebar.setFixedWidth(self.sidebar.sizeHintForColumn(0) + 40)
        self.sidebar.currentRowChanged.connect(self.stack.setCurrentIndex)
        self.sidebar.setCurrentRow(0)
        central = QWidget()
        outer = QVBoxLayout(central)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self._make_notice_bar())
        layout = QHBoxLayout()
        layout.addWidget(self.sidebar)
        layout.addWidget(self.stack, 1)
        outer.addLayout(layout, 1)
        self.setCentralWidget(central)
        self._make_keyboard_reachable()
        self.status_label = QLabel("")
        self.status_label.setObjectName("status_message")
        self.statusBar().addWidget(self.status_label, 1)

        self.menus = MainMenus(self, PAGES)
        self.start_action, self.pause_action, self.stop_action = self.menus.start_action, self.menus.pause_action, self.menus.stop_action

        # ---- Workers
        self.inspector = PairCheckProcess(self)
        self.previewer = DataPreviewProcess(self)  # a child process: parsing a large file never holds the window
        self.asker = AskProcess(self)
        self.demo_builder = DemoStudentProcess(self)
        self.sig_build_demo_student.connect(self.demo_builder.build)
        self.demo_builder.sig_built.connect(self.on_demo_student_built)
        self.demo_builder.sig_failed.connect(self.on_demo_student_failed)
        self.sig_inspect.connect(self.inspector.inspect)
        self.sig_preview.connect(self.previewer.load)
        self.inspector.sig_described.connect(self.on_model_described)
        self.inspector.sig_failed.connect(self.on_model_failed)
        self.inspector.sig_licence.connect(self.on_licence)
        self.inspector.sig_compatibility.connect(self.on_compatibility)
        self.inspector.sig_memory.connect(self.on_memory)
        self.inspector.sig_done.connect(self.on_inspection_done)
        self.previewer.sig_loaded.connect(self.on_data_loaded)
        self.previewer.sig_failed.connect(self.on_data_failed)
        self.generations_page.sig_ask.connect(self.asker.ask)
        self.generations_page.sig_cancel_ask.connect(self.asker.cancel)
        self.generations_page.sig_explain.connect(self.asker.explain)
        self.asker.sig_disagreement.connect(self.generations_page.on_disagreement)
        self.asker.sig_status.connect(self.generations_page.on_ask_status)
        self.asker.sig_answered.connect(self.generations_page.on_answered)
        self.asker.sig_failed.connect(self.generations_page.on_ask_failed)

        self.inspect_timer = QTimer(self)
        self.inspect_timer.setSingleShot(True)
        self.inspect_timer.setInterval(INSPECT_DELAY_MS)
        self.inspect_timer.timeout.connect(self.inspect_models)
        self.preview_timer = QTimer(self)
        self.preview_timer.setSingleShot(True)
        self.preview_timer.setInterval(PREVIEW_DELAY_MS)
        self.preview_timer.timeout.connect(self.preview_data)

        # ---- Wiring
        self.binder.sig_edited.connect(self.on_config_edited)
        self.data_page.sig_preview_requested.connect(self.preview_timer.start)
        self.models_page.sig_check_requested.connect(self.inspect_models)
        self.method_page.sig_open_requested.connect(self.on_open_config)
        self.method_page.sig_save_requested.connect(self.on_save_config)
        self.method_page.sig_reset_requested.connect(self.on_reset_config)
        self.method_page.traces.sig_use_traces.connect(self.on_use_traces)
        self.train_page.sig_start_requested.connect(self.start_run)
        self.train_page.sig_resume_requested.connect(self.on_resume_shown_run)
        self.runs_page.sig_open.connect(self.open_run)
        self.runs_page.sig_resume.connect(self.resume_run)
        self.runs_page.sig_root_changed.connect(self.on_runs_root_changed)
        self.compare_page.sig_models_changed.connect(self.arena_page.set_models)
        self.compare_page.data_edit.textChanged.connect(self.arena_page.set_data)
        self.compare_page.api_key_env.textChanged.connect(self.arena_page.set_api_key_env)
        self.compare_page.sig_message.connect(self.show_message)
        self.runs_page.sig_compare.connect(self.compare_runs)
        self.runs_page.worker.sig_listed.connect(self.on_runs_listed)
        self.home_page.sig_demo_requested.connect(self.start_demo)
        self.home_page.sig_page_requested.connect(self.show_page)
        self.home_page.sig_open_run.connect(self.open_run)
        self.train_page.sig_compare_requested.connect(self.compare_with_teacher)
        self.controller.sig_event.connect(self.on_run_event)
        self.controller.sig_run_dir_changed.connect(self.on_run_dir_changed)
        self.controller.sig_state_changed.connect(self.on_run_state_changed)
        self.controller.sig_ended.connect(self.on_run_ended)

        self.set_config(config or RunConfig())
        geometry = self.settings.geometry()
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 860)

    # ---- Public API
    def pages(self) -> list[QWidget]:
        return [self.home_page, self.models_page, self.data_page, self.method_page, self.train_page, self.generations_page, self.runs_page,
                self.compare_page, self.arena_page]

    def show_page(self, name: str) -> None:
        self.sidebar.setCurrentRow(PAGES.index(name))

    def runs_root(self) -> Path:
        return self.runs_page.root

    def set_config(self, config: RunConfig) -> None:
        """Show ``config`` in every page and check its models and data in the background."""
        self._base = config_to_dict(config)
        self._compat = None
        self._data_report = None
        self._data_failed = ""
        for source in ("teacher", "student", "pair", "data"):
            self._blockers.pop(source, None)
        self.binder.show(self._base)
        self._update_start_blockers()
        self.method_page.update_enabled(self._base)
        self._update_generation_models(config)
        self.compare_page.set_default_data(config.data.eval)
        self.inspect_timer.start()
        self.preview_timer.start()

    def current_config(self) -> RunConfig:
        """The configuration the pages show; raises ConfigError naming the key that is wrong."""
        data = copy.deepcopy(self._base)
        self.binder.read_into(data)
        return config_from_dict(data)

    def start_run(self) -> bool:
        """Start training the current configuration (Ctrl+Return)."""
        if self.controller.is_active():
            self.show_message("A run is already training; stop it first.")
            return False
        blocked = self.start_blocked()
        if blocked:
            self.show_message(f"Cannot start yet: {blocked}", error=True)
            return False
        try:
            config = self.current_config()
            config.validate_for_run()
        except ConfigError as exc:
            self.show_message(f"Cannot start: {exc}", error=True)
            return False
        self.train_page.clear()
        self.generations_page.clear()
        self.shown_run = None
        self.settings.set_last_config_yaml(dump_config(config))
        self.controller.start(config, self.runs_root())
        self.show_page("Train")
        self.show_message("Starting the run…")
        return True

    @Slot()
    def start_demo(self) -> None:
        """Home → Start the demo: the demo pair, data and recipe; training starts once its student exists."""
        from distill_gui.gui.app import demo_config, demo_student_dir

        config = demo_config()
        if config is None:
            self.show_message("The demo pair is not installed with this copy of the app.", error=True)
            return
        self.set_config(config)
        if config.student.path == str(demo_student_dir()) and not (demo_student_dir() / "config.json").is_file():
            self._start_demo_when_ready = True
            self.prepare_demo_student(config.teacher.path, config.student.path)
            self.show_page("Train")
            self.show_message("Making the demo student; the demo starts when it is ready…")
            return
        self.start_run()

    def start_blocked(self) -> str:
        """Why Start would fail now, with the fix ("" when nothing known stands in the way)."""
        order = ("demo", "teacher", "student", "pair", "data")
        return next((self._blockers[k] for k in order if self._blockers.get(k)), "")

    def show_notice(self, text: str) -> None:
        """A message that stays above the pages until closed (a config that could not be opened, ...)."""
        self.notice.setText(text)
        self.notice_bar.setVisible(bool(text))

    @Slot(str)
    def open_run(self, run_dir: str, show_config: bool = True) -> None:
        """Show a run from its folder (and its config, unless not asked); a run training in another
        process is followed live."""
        run = RunDir(run_dir)
        if not run.is_run():
            self.show_message(f"{run_dir} is not a run folder", error=True)
            return
        if self.controller.is_active():
            if self.controller.run_dir and Path(self.controller.run_dir).resolve() == run.path.resolve():
                self.show_page("Train")
                return
            self.show_message("A run is training; its view stays on the Train page until it ends.", error=True)
            return
        self._show_from_disk(run, show_config=show_config)
        status = run.status()
        if status.get("state") in ACTIVE_STATES and run.owner_alive():
            self.controller.attach(run.path)
            self.show_message(f"Following {run.name}, which trains in another process (started earlier or elsewhere).")
        else:
            self.show_message(f"Showing {run.name} ({status.get('state', '?')}).")
        self.show_page("Train")

    @Slot(list)
    def compare_runs(self, run_dirs: list) -> None:
        """Put run folders (the Runs page's selection) on the Compare page and show it."""
        added = self.compare_page.add_models([str(d) for d in run_dirs])
        self.show_page("Compare")
        self.show_message(f"{added} run{'s' if added != 1 else ''} added to the comparison; choose the eval file and press Start.")

    @Slot()
    def compare_with_teacher(self) -> None:
        """Compare the shown run's student with its teacher (the teacher is the reference)."""
        run_dir = self.shown_run or self.controller.run_dir
        if not run_dir or not RunDir(run_dir).is_run():
            self.show_message("No run to compare.", error=True)
            return
        try:
            config = RunDir(run_dir).load_config()
        except Exception as exc:  # noqa: BLE001 - a damaged config is reported in one line
            self.show_message(f"Cannot read the run's config: {exc}", error=True)
            return
        models = [config.teacher.path] if config.teacher.path else []
        self.compare_page.add_models(models + [str(run_dir)])
        if config.teacher.path:
            self.compare_page.reference.setCurrentIndex(max(self.compare_page.reference.findData(config.teacher.path), 0))
        self.compare_page.set_default_data(config.data.eval)
        self.show_page("Compare")

    @Slot(str)
    def resume_run(self, run_dir: str) -> None:
        """Continue a stopped or crashed run from its latest checkpoint."""
        run = RunDir(run_dir)
        if self.controller.is_active():
            self.show_message("A run is already training; stop it first.", error=True)
            return
        if not run.can_resume():
            self.show_message(f"{run.name} has no checkpoint to resume from (or it finished).", error=True)
            return
        self._show_from_disk(run)
        self.controller.resume(run.path)
        self.show_page("Train")
        self.show_message(f"Resuming {run.name}…")

    def prepare_demo_student(self, teacher: str, student: str) -> None:
        """Make the demo's student in the background (once the window shows) when it does not exist yet."""
        if (Path(student) / "config.json").is_file():
            return
        self.models_page.student.show_summary("Making the demo student (a small random-initialised model with the teacher's tokenizer)…")
        self._demo_student = (teacher, student)
        self._demo_building = True
        self._set_blocker("demo", "the demo student is still being made (a minute on the first launch); Start opens when it is ready.")
        if self._shown:
            self._start_background_work()

    def _start_background_work(self) -> None:
        """Work that imports torch/transformers starts only after the window is on screen."""
        if self._demo_student is not None:
            self.sig_build_demo_student.emit(*self._demo_student)
            self._demo_student = None

    @Slot(str)
    def on_demo_student_built(self, path: str) -> None:
        self._demo_building = False
        self._set_blocker("demo", "")
        self.show_message(f"Demo student ready in {path}")
        self.inspect_models()
        if self._start_demo_when_ready:
            self._start_demo_when_ready = False
            self.start_run()

    @Slot(str)
    def on_demo_student_failed(self, message: str) -> None:
        self._demo_building = False
        self._start_demo_when_ready = False
        self.models_page.student.show_summary(f"Could not make the demo student: {message}", error=True)
        self._set_blocker("demo", f"the demo student could not be made ({message}); choose another student on the Models page.")

    def restore_last_run(self) -> None:
        """On start: follow a run that still trains in another process, or show the last one."""
        for run in list_runs(self.runs_root())[:50]:
            status = run.status()
            if status.get("state") in ACTIVE_STATES and run.owner_alive():
                self.open_run(str(run.path), show_config=False)
                return
        last = self.settings.last_run()
        if last and RunDir(last).is_run():
            self._show_from_disk(RunDir(last), show_config=False)
            state = RunDir(last).status().get("state", "?")
            self.show_message(f"Last run: {RunDir(last).name} ({state}).")

    def show_message(self, text: str, error: bool = False) -> None:
        """A line in the status bar; errors also replace the Train page's state line."""
        self.status_label.setText(text)
        if error:
            self.train_page.state_label.setText(text)

    # ---- Slots: configuration
    @Slot(str)
    def on_config_edited(self, key: str) -> None:
        if key.startswith(MODEL_KEYS):
            pair = key.startswith(("teacher.", "student."))
            if pair:
                self._compat = None
                for role in ("teacher", "student", "pair"):
                    self._blockers.pop(role, None)
            self.models_page.checking(pair=pair)
            self.inspect_timer.start()
        if key.startswith(("data.", "method.")):
            self._update_start_blockers()
        if key.startswith(("teacher.path", "student.path", "student.device", "data.train", "data.format", "data.chat_template",
                           "data.system_prompt")):
            try:
                self._update_generation_models(self.current_config())
            except ConfigError:
                pass

    @Slot()
    def on_open_config(self) -> None:
        start = self.settings.last_config_dir() or str(Path.cwd())
        path, _ = QFileDialog.getOpenFileName(self, "Open a config", start, "YAML config (*.yaml *.yml);;All files (*)")
        if path:
            self.load_config_file(path)

    def load_config_file(self, path: str | Path) -> bool:
        try:
            config = load_config(path)
        except ConfigError as exc:
            self.show_message(str(exc), error=True)
            QMessageBox.warning(self, "Cannot open the config", str(exc))
            return False
        self.settings.set_last_config_dir(str(Path(path).parent))
        self.set_config(config)
        self.show_message(f"Opened {path}")
        return True

    @Slot()
    def on_save_config(self) -> None:
        start = self.settings.last_config_dir() or str(Path.cwd())
        path, _ = QFileDialog.getSaveFileName(self, "Save the config", str(Path(start) / "distill.yaml"), "YAML config (*.yaml *.yml)")
        if path:
            self.save_config_file(path)

    def save_config_file(self, path: str | Path) -> bool:
        try:
            config = self.current_config()
        except ConfigError as exc:
            self.show_message(f"Cannot save: {exc}", error=True)
            return False
        save_config(config, path)
        self.settings.set_last_config_dir(str(Path(path).parent))
        self.show_message(f"Saved {path}")
        return True

    @Slot()
    def on_reset_config(self) -> None:
        try:
            current = self.current_config()
        except ConfigError:
            current = RunConfig()
        fresh = RunConfig(name=current.name, teacher=current.teacher, student=current.student, data=current.data)
        self.set_config(fresh)

    # ---- Slots: background checks
    @Slot()
    def inspect_models(self) -> None:
        try:
            config = self.current_config()
        except ConfigError as exc:
            self.models_page.show_not_comparable(str(exc))
            return
        if not config.student.path and not config.teacher.path:
            return
        if self._demo_building or self._closing:
            return  # the demo pair is checked once its student exists (on_demo_student_built)
        self._inspect_id += 1
        self.inspector.latest = self._inspect_id
        self._described.clear()
        self._model_failures.clear()
        self._compat = None
        for role in ("teacher", "student", "pair"):
            self._blockers.pop(role, None)
        self._update_start_blockers()
        self.models_page.checking()
        self.sig_inspect.emit(self._inspect_id, config)

    @Slot(int, str, object)
    def on_model_described(self, request_id: int, role: str, info) -> None:
        if request_id == self._inspect_id:
            self._described[role] = info
            self._model_failures.pop(role, None)
            self._update_home()
            self.models_page.show_described(role, info)
            self.settings.add_recent_model(info.source.display if info.source.kind != "folder" else info.source.path)

    @Slot(int, str, object)
    def on_licence(self, request_id: int, role: str, found) -> None:
        if request_id == self._inspect_id:
            self.models_page.chooser(role).show_found_licence(found)

    @Slot(int, str, str)
    def on_model_failed(self, request_id: int, role: str, message: str) -> None:
        if request_id == self._inspect_id:
            self.models_page.show_failed(role, message)
            if role in ("teacher", "student"):
                self._model_failures[role] = message
                self._described.pop(role, None)
                self._set_blocker(role, f"the {role} cannot be used: {message} (fix it on the Models page).")

    @Slot(int, object)
    def on_compatibility(self, request_id: int, compat) -> None:
        if request_id == self._inspect_id:
            self.models_page.show_compatibility(compat)
            self._compat = compat
            self._update_start_blockers()

    @Slot(int, object)
    def on_memory(self, request_id: int, estimate) -> None:
        if request_id == self._inspect_id:
            self.models_page.show_memory(estimate)

    @Slot(int)
    def on_inspection_done(self, request_id: int) -> None:
        if request_id == self._inspect_id:
            self.models_page.done()

    @Slot()
    def preview_data(self) -> None:
        try:
            config = self.current_config()
        except ConfigError as exc:
            self.data_page.show_failed(str(exc))
            return
        if not config.data.train:
            self._data_report = None
            self._data_failed = ""
            self._update_start_blockers()
            self.data_page.show_empty()
            return
        self._preview_id += 1
        self.previewer.latest = self._preview_id
        self._data_report = None
        self._data_failed = ""
        self._update_start_blockers()
        self.data_page.loading(config.data.train)
        self.sig_preview.emit(self._preview_id, config.data.train, config.data.format, dict(config.data.columns))

    @Slot(int, object, object, int)
    def on_data_loaded(self, request_id: int, examples, report, count: int) -> None:
        if request_id == self._preview_id:
            self.data_page.show_loaded(examples, report, count)
            self.method_page.set_data_references(examples)
            self._data_report = report
            self._update_start_blockers()
            self._update_home()
            self._detected_format = report.format or "prompt_completion"
            try:
                self._update_generation_models(self.current_config())
            except ConfigError:
                pass

    @Slot(int, str)
    def on_data_failed(self, request_id: int, message: str) -> None:
        if request_id == self._preview_id:
            self.data_page.show_failed(message)
            self.method_page.set_data_references(None)
            self._data_report = None
            self._data_failed = f"the training data cannot be used: {message} (fix it on the Data page)."
            self._update_start_blockers()

    # ---- Slots: the run
    @Slot(object)
    def on_run_event(self, event: Event) -> None:
        self.generations_page.on_event(event)

    @Slot(str)
    def on_run_dir_changed(self, run_dir: str) -> None:
        self.shown_run = run_dir
        self.settings.set_last_run(run_dir)
        self.generations_page.set_run_dir(run_dir)
        self.runs_page.refresh()
        self.runs_page.select_run(run_dir)
        self.setWindowTitle(f"distill-gui — {Path(run_dir).name}")

    @Slot(str)
    def on_run_state_changed(self, state: str) -> None:
        self._update_home()
        active = self.controller.is_active()
        self.start_action.setEnabled(not active and not self.start_blocked())
        self.stop_action.setEnabled(self.train_page.stop_button.isEnabled())
        self.pause_action.setEnabled(self.train_page.pause_button.isEnabled())
        self.status_label.setText(self.train_page.state_label.text())

    @Slot(str, str)
    def on_run_ended(self, state: str, message: str) -> None:
        self.show_message(f"Run {state}: {message}")
        self.runs_page.refresh()
        self._offer_resume()

    @Slot()
    def on_resume_shown_run(self) -> None:
        run_dir = self.shown_run or self.controller.run_dir
        if run_dir:
            self.resume_run(run_dir)

    @Slot(str)
    def on_runs_root_changed(self, root: str) -> None:
        self.settings.set_runs_root(root)
        self.models_page.set_runs_root(root)
        self.compare_page.set_runs_root(root)

    @Slot()
    def on_start_action(self) -> None:
        self.start_run()

    @Slot()
    def on_pause_action(self) -> None:
        self.controller.toggle_pause()

    @Slot()
    def on_stop_action(self) -> None:
        self.controller.stop()

    # ---- Qt events
    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if not self._shown:
            self._shown = True
            QTimer.singleShot(0, self._start_background_work)

    # ---- Closing
    def ask_close_choice(self) -> str:
        """Stop the run, leave it running, or cancel closing (tests set ``close_choice``)."""
        if self.close_choice is not None:
            return self.close_choice
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("A run is training")
        box.setText("A run is still training. Stop it (a checkpoint is saved, you can resume later) or leave it running in the background?")
        box.setInformativeText("A run left running keeps writing to its folder; the app follows it again when it reopens.")
        stop = box.addButton("Stop the run", QMessageBox.ButtonRole.DestructiveRole)
        leave = box.addButton("Leave it running", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        clicked = box.clickedButton()
        if clicked is stop:
            return self.CLOSE_STOP
        if clicked is leave:
            return self.CLOSE_LEAVE
        return self.CLOSE_CANCEL

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if self.controller.is_active():
            choice = self.ask_close_choice()
            if choice == self.CLOSE_CANCEL:
                event.ignore()
                return
            if choice == self.CLOSE_STOP and not self.controller.attached:
                self._stop_and_wait()
            else:
                if choice == self.CLOSE_STOP:
                    self.controller.stop()  # not our child: asked to stop, it saves on its own
                self.controller.detach()
        try:
            self.settings.set_last_config_yaml(dump_config(self.current_config()))
        except ConfigError:
            pass
        self.settings.set_geometry(self.saveGeometry())
        self.settings.sync()
        self.method_page.traces.stop_and_wait()
        self._closing = True
        self.inspect_timer.stop()
        self.preview_timer.stop()
        self.inspector.latest = -1
        self.previewer.latest = -1
        self.inspector.shutdown()
        self.asker.shutdown()
        self.demo_builder.shutdown()
        self.previewer.shutdown()
        self.compare_page.shutdown()
        self.arena_page.shutdown()
        self.runs_page.shutdown()
        super().closeEvent(event)

    def _stop_and_wait(self) -> None:
        """Ask the run to stop and keep the event loop turning until it has saved and ended."""
        loop = QEventLoop(self)
        self.controller.sig_ended.connect(loop.quit)
        timer = QTimer(self)
        timer.setSingleShot(True)
        timer.timeout.connect(loop.quit)
        self.show_message("Stopping the run: saving a checkpoint…")
        if self.controller.stop():
            timer.start(STOP_ON_CLOSE_TIMEOUT_MS)
            loop.exec()
        if self.controller.is_active():
            self.controller.kill()
            self.controller.wait_finished(5000)
        self.controller.sig_ended.disconnect(loop.quit)

    # ---- Internals
    def _set_blocker(self, source: str, reason: str) -> None:
        if reason:
            self._blockers[source] = reason
        else:
            self._blockers.pop(source, None)
        self.train_page.set_start_blocked(self.start_blocked())
        self.start_action.setEnabled(not self.controller.is_active() and not self.start_blocked())
        self._update_home()

    def _update_start_blockers(self) -> None:
        """Recompute the blockers that depend on the config and the last check results."""
        try:
            config = self.current_config()
        except ConfigError:
            config = None
        pair = ""
        if config is not None and self._compat is not None and not self._compat.kd_compatible:
            method = method_for(config)
            if method.teacher == TEACHER_LOGITS:
                pair = (f"{method.title} compares the two models token by token, but their tokenizers differ. "
                        "Choose a student with the teacher's tokenizer on the Models page, or a method that learns from "
                        "the teacher's text (e.g. SFT on teacher traces) on the Method page.")
        data = self._data_failed
        report = self._data_report
        if config is not None and report is not None and report.bad_fraction > config.data.max_bad_fraction:
            data = (f"{len(report.bad_rows)} of {report.total} rows of the training data are unusable "
                    f"({report.bad_fraction:.0%}, more than “Max bad fraction” {config.data.max_bad_fraction:.0%}). "
                    "Fix the rows listed under “Skipped rows” on the Data page, or raise “Max bad fraction”.")
        self._blockers.pop("data", None)
        if data:
            self._blockers["data"] = data
        self._set_blocker("pair", pair)

    @Slot(int, str, list)
    def on_runs_listed(self, _request_id: int, root: str, summaries: list) -> None:
        if Path(root) == Path(self.runs_root()):
            self.home_page.set_recent_runs([(f"{s.name} — {s.state}, step {s.step}", s.path) for s in summaries])

    def _update_home(self) -> None:
        """The guided steps on the Home page and each page's state in the sidebar."""
        if not hasattr(self, "start_action"):
            return  # still being built
        try:
            config = self.current_config()
        except ConfigError as exc:
            self.home_page.set_step("recipe", PROBLEM, str(exc))
            return
        for role in ("teacher", "student"):
            path = getattr(config, role).path
            if role == "teacher" and not path and not method_needs_teacher(config):
                self.home_page.set_step(role, DONE, f"not needed by {method_for(config).title}")
            elif role == "teacher" and not path and config.teacher.url:
                served = f"{config.teacher.model} at " if config.teacher.model else ""
                self.home_page.set_step(role, DONE, f"served: {served}{config.teacher.url} (Test it on the Models page)")
            elif not path:
                self.home_page.set_step(role, WAITING, "choose one on the Models page")
            elif role in self._model_failures:
                self.home_page.set_step(role, PROBLEM, self._model_failures[role])
            elif role in self._described:
                self.home_page.set_step(role, DONE, self._described[role].summary())
            else:
                self.home_page.set_step(role, WAITING, f"checking {Path(path).name}…")
        report = self._data_report
        if not config.data.train:
            self.home_page.set_step("data", WAITING, "choose a training file on the Data page")
        elif self._blockers.get("data"):
            self.home_page.set_step("data", PROBLEM, self._blockers["data"])
        elif report is not None:
            self.home_page.set_step("data", DONE, f"{report.kept:,} rows ({report.format})")
        else:
            self.home_page.set_step("data", WAITING, f"reading {Path(config.data.train).name}…")
        self.home_page.set_step("recipe", DONE, f"{method_for(config).title}, {config.training.max_steps} steps")
        blocked = self.start_blocked()
        if self.controller.is_active():
            self.home_page.set_step("start", DONE, f"a run is {self.controller.state}")
        elif blocked:
            self.home_page.set_step("start", PROBLEM, blocked)
        else:
            self.home_page.set_step("start", WAITING, "ready: press Start on the Train page")
        self._update_sidebar()

    def _update_sidebar(self) -> None:
        """An icon per page state: Models (the pair checked), Data (parsed), Train (a run going or Start blocked)."""
        style = QApplication.style()
        icons = {DONE: QStyle.StandardPixmap.SP_DialogApplyButton, PROBLEM: QStyle.StandardPixmap.SP_MessageBoxWarning,
                 WAITING: QStyle.StandardPixmap.SP_BrowserReload}
        home = self.home_page
        roles = (home.step_state("teacher"), home.step_state("student"))
        if PROBLEM in roles or self._blockers.get("pair"):
            models = (PROBLEM, self._blockers.get("pair") or "a model cannot be used")
        elif roles == (DONE, DONE):
            models = (DONE, "the pair is checked")
        else:
            models = (WAITING, "the pair is not checked yet")
        for name, (state, note) in {"Models": models, "Data": (home.step_state("data"), home.step_notes["data"].text())}.items():
            item = self.sidebar.item(PAGES.index(name))
            item.setIcon(style.standardIcon(icons[state]))
            item.setToolTip(note)
        train = self.sidebar.item(PAGES.index("Train"))
        if self.controller.is_active():
            pixmap = QStyle.StandardPixmap.SP_MediaPause if self.controller.state == "paused" else QStyle.StandardPixmap.SP_MediaPlay
            train.setIcon(style.standardIcon(pixmap))
            train.setToolTip(f"a run is {self.controller.state}")
        else:
            blocked = self.start_blocked()
            train.setIcon(style.standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning) if blocked else self._blank_icon)
            train.setToolTip(f"Start is waiting: {blocked}" if blocked else "")

    def _offer_resume(self) -> None:
        """The Train page offers "Resume this run" for a shown run that stopped or was interrupted."""
        run_dir = self.shown_run or self.controller.run_dir
        try:
            resumable = bool(run_dir) and RunDir(run_dir).can_resume()
        except OSError:
            resumable = False
        self.train_page.set_resumable(resumable)

    def _make_notice_bar(self) -> QWidget:
        self.notice_bar = QFrame()
        self.notice_bar.setObjectName("notice_bar")
        self.notice_bar.setFrameShape(QFrame.Shape.StyledPanel)
        self.notice = QLabel("")
        self.notice.setObjectName("notice")
        self.notice.setTextFormat(Qt.TextFormat.PlainText)
        self.notice.setWordWrap(True)
        self.notice.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setToolTip("Close this message")
        close.clicked.connect(self.on_notice_closed)
        row = QHBoxLayout(self.notice_bar)
        row.addWidget(self.notice, 1)
        row.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.notice_bar.setVisible(False)
        return self.notice_bar

    @Slot()
    def on_notice_closed(self) -> None:
        self.show_notice("")

    def _make_keyboard_reachable(self) -> None:
        """Tab leaves the runs table (arrows move inside it) and Enter opens the selected run."""
        table = self.runs_page.table
        table.setTabKeyNavigation(False)
        for key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            shortcut = QShortcut(QKeySequence(key), table)
            shortcut.setContext(Qt.ShortcutContext.WidgetShortcut)
            shortcut.activated.connect(self.runs_page.on_open_clicked)

    def _show_from_disk(self, run: RunDir, show_config: bool = True) -> None:
        try:
            log_text = run.log_path.read_text(encoding="utf-8", errors="replace")[-200_000:]
        except OSError:
            log_text = ""
        self.train_page.show_run_from_disk(run.metrics(), log_text, run.status())
        self.generations_page.show_records(run.samples())
        self.generations_page.sampled.show_events(run.events())
        self.generations_page.set_run_dir(str(run.path))
        self.shown_run = str(run.path)
        self.settings.set_last_run(str(run.path))
        self.setWindowTitle(f"distill-gui — {run.name}")
        self._offer_resume()
        if not show_config:
            return
        try:
            config = run.load_config()
        except Exception:  # noqa: BLE001 - an unreadable config still lets the plots show
            return
        self.set_config(config)

    def _update_generation_models(self, config: RunConfig) -> None:
        """The pair the Generations page asks and the sources of the Method page's traces."""
        data_format = config.data.format if config.data.format != "auto" else self._detected_format
        self.generations_page.set_models(config.teacher.path, config.student.path, config.student.device,
                                         config.data.chat_template, data_format, config.data.system_prompt)
        self.method_page.traces.set_sources(config.teacher.path, config.data.train, config.data.format,
                                            config.data.chat_template, self.runs_root().parent)

    @Slot(str)
    def on_use_traces(self, path: str) -> None:
        """Train on teacher traces: they become the training data and the method becomes SFT."""
        try:
            config = self.current_config()
        except ConfigError as exc:
            self.show_message(str(exc), error=True)
            return
        config.data.train = path
        config.data.format = "auto"
        config.data.columns = {}
        config.method.kind = "sft"
        self.set_config(config)
        self.show_message(f"Training data: the teacher's verified traces in {path}; method: SFT.")
