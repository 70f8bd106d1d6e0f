"""The Python files a model would run when loaded with ``trust_remote_code`` (named to the user before
they agree to run them)."""

from __future__ import annotations

import json
from pathlib import Path


def remote_code_files(path: str) -> list[str]:
    """The ``.py`` files of a local model folder (or a ``.gguf`` file's folder) and the modules its
    config.json's ``auto_map`` names; for a hub id, the modules named once it is downloaded (empty
    before)."""
    folder = Path(path)
    if folder.suffix.lower() == ".gguf":
        folder = folder.parent
    if not folder.is_dir():
        return []
    files = {str(p) for p in sorted(folder.glob("*.py"))}
    try:
        auto_map = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("auto_map") or {}
    except (OSError, ValueError, AttributeError):
        auto_map = {}
    for target in auto_map.values() if isinstance(auto_map, dict) else ():
        for ref in target if isinstance(target, list) else [target]:
            if isinstance(ref, str) and "." in ref:
                module = ref.split("--")[-1].rsplit(".", 1)[0]
                files.add(str(folder / f"{module}.py") + ("" if (folder / f"{module}.py").is_file() else " (to be downloaded)"))
    return sorted(files)
