"""Persistent application settings (QSettings): runs folder, recent models, last config, window state."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings

ORGANIZATION = "distill-gui"
APPLICATION = "distill-gui"
MAX_RECENT = 10


class Settings:
    """A thin typed wrapper over :class:`QSettings` for the keys the app uses."""

    def __init__(self, qsettings: QSettings | None = None):
        self._s = qsettings if qsettings is not None else QSettings(ORGANIZATION, APPLICATION)

    # ---- Runs folder
    def runs_root(self) -> Path:
        from distill_gui.core.runs import default_runs_root

        value = self._s.value("runs/root", "", type=str)
        return Path(value) if value else default_runs_root()

    def set_runs_root(self, path: str | Path) -> None:
        self._s.setValue("runs/root", str(path))

    def last_run(self) -> str:
        return self._s.value("runs/last", "", type=str)

    def set_last_run(self, path: str | Path | None) -> None:
        self._s.setValue("runs/last", str(path) if path else "")

    # ---- Recent models
    def recent_models(self) -> list[str]:
        value = self._s.value("models/recent", [], type=list)
        return [str(v) for v in value if v]

    def add_recent_model(self, path: str) -> None:
        if not path:
            return
        recent = [p for p in self.recent_models() if p != path]
        recent.insert(0, path)
        self._s.setValue("models/recent", recent[:MAX_RECENT])

    # ---- Last configuration (YAML text, the same the CLI reads)
    def last_config_yaml(self) -> str:
        return self._s.value("config/last_yaml", "", type=str)

    def set_last_config_yaml(self, text: str) -> None:
        self._s.setValue("config/last_yaml", text)

    def last_config_dir(self) -> str:
        return self._s.value("config/last_dir", "", type=str)

    def set_last_config_dir(self, path: str) -> None:
        self._s.setValue("config/last_dir", path)

    # ---- Window
    def geometry(self):
        return self._s.value("window/geometry")

    def set_geometry(self, data) -> None:
        self._s.setValue("window/geometry", data)

    def sync(self) -> None:
        self._s.sync()
