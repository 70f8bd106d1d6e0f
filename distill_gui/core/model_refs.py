"""What a MODEL argument names: a model folder, a ``.gguf`` file, a cached hub id, or a run folder.

A run folder stands for its trained student: ``checkpoints/final`` when the run finished, otherwise its
latest complete step checkpoint. A LoRA run's step checkpoint holds only the adapter; it resolves to
the run's base model (``student.path``) plus that adapter. A run of another task is resolved the same
way; nothing here looks at what it was trained on. The run's teacher is kept, since a comparison of a
run measures recovery against it by default.

:func:`fingerprint` identifies a model's files (names, sizes, modification times), so that a score
cached for a model is reused only while its files are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from distill_gui.core.errors import UserError
from distill_gui.core.models import HUB_ID_RE
from distill_gui.core.runs import RunDir

_STAMP = re.compile(r"^\d{8}-\d{6}-")


class ModelRefError(UserError, ValueError):
    """A MODEL argument names nothing usable; the message says what to give instead."""


@dataclass(frozen=True)
class ModelRef:
    """A model to evaluate, resolved from what the user gave."""

    spec: str
    """What the user gave (a path or hub id), as given."""
    label: str
    """A short name for tables and charts."""
    path: str
    """The model folder, ``.gguf`` file or hub id to load (a LoRA run's base model)."""
    adapter: str | None = None
    """A LoRA adapter folder to apply on top of ``path``."""
    tokenizer: str | None = None
    """The tokenizer folder when it is not beside the weights (a LoRA checkpoint's own)."""
    run: str | None = None
    """The run folder this model came from, if any."""
    checkpoint: str = ""
    """For a run: ``final`` or ``step-NNNNNN``."""
    teacher: str | None = None
    """For a run: its teacher (``teacher.path`` of its config), when it had one."""

    @property
    def kind(self) -> str:
        """``run`` or ``model``."""
        return "run" if self.run else "model"

    def describe(self) -> str:
        """One line: the label and what it loads."""
        what = self.path if not self.adapter else f"{self.path} + LoRA adapter {self.adapter}"
        origin = f" (run {Path(self.run).name}, {self.checkpoint})" if self.run else ""
        return f"{self.label}: {what}{origin}"


def short_name(spec: str) -> str:
    """A label for what the user gave, before it is resolved: the folder's name without a run's time stamp."""
    name = Path(str(spec).rstrip("/")).name or str(spec)
    return _STAMP.sub("", name) or name


def _run_label(run: RunDir, config) -> str:
    name = getattr(config, "name", "") or ""
    folder = _STAMP.sub("", run.name)
    return name if name and name != "run" else folder or run.name


def _is_adapter_only(folder: Path) -> bool:
    return (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file()


def resolve(spec: str) -> ModelRef:
    """Resolve one MODEL argument; a run folder becomes its final or latest complete checkpoint."""
    raw = str(spec).strip()
    if not raw:
        raise ModelRefError("an empty model name was given; give a model folder, a .gguf file, a hub id or a run folder")
    path = Path(raw).expanduser()
    run = RunDir(path)
    if not (path.is_dir() and run.is_run()):
        hub_like = not path.exists() and not raw.startswith((".", "/", "~")) and HUB_ID_RE.match(raw)
        label = raw if hub_like else path.name
        if path.suffix.lower() == ".gguf":
            label = path.stem
        return ModelRef(spec=raw, label=label or raw, path=str(path) if path.exists() else raw)
    try:
        config = run.load_config()
    except Exception as exc:  # noqa: BLE001 - a damaged config.yaml is bad input, named in one line
        raise ModelRefError(
            f"{run.config_path}: unreadable run config ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
            "the run folder looks damaged"
        ) from None
    checkpoint = run.final_model()
    name = "final"
    if checkpoint is None:
        checkpoint = run.latest_checkpoint()
        if checkpoint is None:
            raise ModelRefError(f"{path}: this run has no complete checkpoint yet; wait for its first checkpoint or give another model")
        name = checkpoint.name
    teacher = (config.teacher.path or None) if getattr(config, "teacher", None) is not None else None
    label = _run_label(run, config)
    if name != "final":
        label = f"{label}@{name}"
    if _is_adapter_only(checkpoint):
        base = config.student.path
        if not base:
            raise ModelRefError(f"{checkpoint}: holds only a LoRA adapter and the run's config names no student.path (the base model)")
        return ModelRef(
            spec=raw,
            label=label,
            path=base,
            adapter=str(checkpoint),
            tokenizer=str(checkpoint),
            run=str(run.path),
            checkpoint=name,
            teacher=teacher,
        )
    return ModelRef(spec=raw, label=label, path=str(checkpoint), run=str(run.path), checkpoint=name, teacher=teacher)


def unique_labels(refs: list[ModelRef]) -> list[ModelRef]:
    """The refs with labels made unique (``name``, ``name #2``, ...), in order."""
    from dataclasses import replace

    seen: dict[str, int] = {}
    out = []
    for ref in refs:
        count = seen.get(ref.label, 0) + 1
        seen[ref.label] = count
        out.append(ref if count == 1 else replace(ref, label=f"{ref.label} #{count}"))
    return out


def _files_of(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    return sorted(p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))


def _stat_digest(root: Path) -> dict:
    entries = []
    for file in _files_of(root):
        stat = file.stat()
        rel = file.name if root.is_file() else str(file.relative_to(root))
        entries.append((rel, stat.st_size, stat.st_mtime_ns))
    return {"root": str(root.resolve()) if root.exists() else str(root), "files": entries}


def fingerprint(ref: ModelRef) -> str:
    """A digest of the model's (and adapter's) files: names, sizes and modification times.

    A hub id resolves to its cached snapshot folder when there is one (the snapshot's commit is part
    of its path); an id that is not cached is fingerprinted by its name.
    """
    parts: dict = {"path": ref.path, "adapter": None, "tokenizer": ref.tokenizer}
    model = Path(ref.path).expanduser()
    if model.exists():
        parts["path"] = _stat_digest(model)
    else:
        try:
            from huggingface_hub import snapshot_download

            parts["path"] = _stat_digest(Path(snapshot_download(ref.path, local_files_only=True)))
        except Exception:  # noqa: BLE001 - not cached: the name is all there is
            pass
    if ref.adapter:
        parts["adapter"] = _stat_digest(Path(ref.adapter))
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()[:24]
