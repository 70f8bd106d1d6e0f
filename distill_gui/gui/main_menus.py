"""The main window's menu bar: File, Run, Go and Help with their shortcuts, and the Help menu's dialogs.

File and Run call the window's own slots (open and save a config, start, pause and stop a run); the
window turns Run's actions on and off as the run's state changes.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Qt, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu, QMessageBox


class MainMenus(QObject):
    """Builds the window's menus; holds their actions and the Help dialogs it opened."""

    def __init__(self, window: Any, pages: tuple[str, ...]) -> None:
        super().__init__(window)  # the window is reached through parent(): no Python reference cycle with it
        self.guide_dialog: Any = None
        self.shortcuts_dialog: Any = None
        self.diagnostics_dialog: Any = None
        bar = window.menuBar()

        file_menu = bar.addMenu("&File")
        open_action = QAction("&Open config…", window, shortcut=QKeySequence(QKeySequence.StandardKey.Open))
        save_action = QAction("&Save config as…", window, shortcut=QKeySequence(QKeySequence.StandardKey.Save))
        quit_action = QAction("&Quit", window, shortcut=QKeySequence(QKeySequence.StandardKey.Quit))
        open_action.triggered.connect(window.on_open_config)
        save_action.triggered.connect(window.on_save_config)
        quit_action.triggered.connect(window.close)
        for action in (open_action, save_action, quit_action):
            file_menu.addAction(action)

        run_menu = bar.addMenu("&Run")
        self.start_action = QAction("&Start", window, shortcut=QKeySequence("Ctrl+Return"))
        self.pause_action = QAction("&Pause / continue", window, shortcut=QKeySequence("Ctrl+P"))
        self.stop_action = QAction("S&top", window, shortcut=QKeySequence("Ctrl+."))
        self.start_action.setObjectName("action_start")
        self.pause_action.setObjectName("action_pause")
        self.stop_action.setObjectName("action_stop")
        self.start_action.triggered.connect(window.on_start_action)
        self.pause_action.triggered.connect(window.on_pause_action)
        self.stop_action.triggered.connect(window.on_stop_action)
        for action in (self.start_action, self.pause_action, self.stop_action):
            action.setShortcutContext(Qt.ShortcutContext.ApplicationShortcut)
            run_menu.addAction(action)
        self.pause_action.setEnabled(False)
        self.stop_action.setEnabled(False)

        go_menu = bar.addMenu("&Go")
        for i, name in enumerate(pages):
            action = QAction(name, window, shortcut=QKeySequence(f"Ctrl+{i + 1}"))
            action.setData(i)
            action.triggered.connect(self.on_go_action)
            go_menu.addAction(action)

        help_menu = bar.addMenu("&Help")
        self.guide_action = QAction("&Guide", window, shortcut=QKeySequence(QKeySequence.StandardKey.HelpContents))
        self.guide_action.setObjectName("action_guide")
        self.guide_action.triggered.connect(self.on_guide_action)
        self.shortcuts_action = QAction("&Keyboard shortcuts", window)
        self.shortcuts_action.setObjectName("action_shortcuts")
        self.shortcuts_action.triggered.connect(self.on_shortcuts_action)
        self.diagnostics_action = QAction("&Diagnostics…", window)
        self.diagnostics_action.setObjectName("action_diagnostics")
        self.diagnostics_action.triggered.connect(self.on_diagnostics_action)
        self.about_action = QAction("&About distill-gui", window)
        self.about_action.setObjectName("action_about")
        self.about_action.triggered.connect(self.on_about_action)
        for action in (self.guide_action, self.shortcuts_action, self.diagnostics_action):
            help_menu.addAction(action)
        help_menu.addSeparator()
        help_menu.addAction(self.about_action)

    @property
    def window(self) -> Any:
        return self.parent()

    @Slot()
    def on_go_action(self) -> None:
        action = self.sender()
        if isinstance(action, QAction):
            self.window.sidebar.setCurrentRow(int(action.data()))

    @Slot()
    def on_guide_action(self) -> None:
        """Help → Guide: the README's sections."""
        from distill_gui.gui.help_dialogs import GuideDialog

        self.guide_dialog = GuideDialog(self.window)
        self.guide_dialog.show()

    @Slot()
    def on_shortcuts_action(self) -> None:
        """Help → Keyboard shortcuts: every menu action with its keys."""
        from distill_gui.gui.help_dialogs import ShortcutsDialog

        actions = [a for menu in self.window.menuBar().findChildren(QMenu) for a in menu.actions()]
        self.shortcuts_dialog = ShortcutsDialog(actions, self.window)
        self.shortcuts_dialog.show()

    @Slot()
    def on_about_action(self) -> None:
        from distill_gui import __version__

        QMessageBox.about(
            self.window,
            "About distill-gui",
            f"distill-gui {__version__}\n\nKnowledge distillation of language models on your own computer. "
            "Help → Diagnostics copies what a bug report needs.",
        )

    @Slot()
    def on_diagnostics_action(self) -> None:
        """Help → Diagnostics…: the ``distill-gui doctor`` report, with "Copy diagnostics"."""
        from distill_gui.gui.diagnostics_dialog import DiagnosticsDialog

        self.diagnostics_dialog = DiagnosticsDialog(self.window)
        self.diagnostics_dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.diagnostics_dialog.show()
