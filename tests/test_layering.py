"""The core and the CLI never import Qt: the import-linter contract in pyproject.toml, and at run time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contract_is_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_core_and_cli_load_without_qt():
    code = (
        "import sys, importlib, pkgutil\n"
        "import distill_gui.core as core, distill_gui.cli\n"
        "for m in pkgutil.iter_modules(core.__path__): importlib.import_module('distill_gui.core.' + m.name)\n"
        "bad = [m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph', 'distill_gui.gui'))]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
