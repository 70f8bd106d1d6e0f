"""Scores of ``distill-gui compare`` kept on disk, keyed by (model fingerprint, data fingerprint, settings).

Comparing again with one more model evaluates only the new one; a model whose files changed (a
rewritten checkpoint) has a new fingerprint and is evaluated again. Each score is one JSON file,
written atomically as soon as the model is done, so an interrupted comparison keeps what it finished.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

CACHE_VERSION = 2


def data_fingerprint(path: str, data_format: str = "auto", limit: int | None = None) -> str:
    """A digest of the data file's bytes (a folder: its files' names, sizes and times; a hub name: the name)."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": data_format, "limit": limit}).encode("utf-8"))
    target = Path(str(path)).expanduser()
    if target.is_file():
        with open(target, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    elif target.is_dir():
        for file in sorted(p for p in target.rglob("*") if p.is_file()):
            stat = file.stat()
            digest.update(f"{file.relative_to(target)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode("utf-8"))
    else:
        digest.update(str(path).encode("utf-8"))
    return digest.hexdigest()[:24]


class ScoreCache:
    """One JSON file per (model, data, settings) under ``folder``."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    @staticmethod
    def key(model_fingerprint: str, data_fingerprint: str, settings: dict[str, Any]) -> str:
        blob = json.dumps({"v": CACHE_VERSION, "model": model_fingerprint, "data": data_fingerprint, "settings": settings}, sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def get(self, key: str) -> dict | None:
        """The stored score, or None (missing, or cut short by a crash)."""
        try:
            return json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def put(self, key: str, record: dict) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.path(key)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
        tmp.replace(target)
        return target
