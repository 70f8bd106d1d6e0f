"""Finding a cut-short ``.safetensors`` file from its header alone (an interrupted download or copy), so
the model check says so before a run starts instead of the run failing while it loads."""

from __future__ import annotations

import json
from pathlib import Path

from distill_gui.core.models import ModelError

MAX_HEADER_BYTES = 100_000_000


def check_safetensors_file(path: str | Path) -> None:
    """Raise :class:`ModelError` naming the file when it holds fewer bytes than its header describes."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ModelError(f"{path}: only {size} bytes, not a safetensors file (cut short?); copy or download it again")
        header_len = int.from_bytes(head, "little")
        if header_len > MAX_HEADER_BYTES or 8 + header_len > size:
            raise ModelError(f"{path}: cut short in its header ({size:,} bytes); copy or download it again")
        try:
            header = json.loads(f.read(header_len))
        except ValueError:
            raise ModelError(f"{path}: its header is not readable (damaged); copy or download it again") from None
    ends = [
        int(t["data_offsets"][1])
        for name, t in header.items()
        if name != "__metadata__" and isinstance(t, dict) and len(t.get("data_offsets") or ()) == 2
    ]
    needed = 8 + header_len + max(ends, default=0)
    if size < needed:
        raise ModelError(
            f"{path}: cut short — it holds {size:,} of the {needed:,} bytes its header describes "
            "(an interrupted download or copy); copy or download it again"
        )


def check_safetensors_folder(folder: str | Path) -> None:
    """Check every ``.safetensors`` file of a local model folder (nothing for a hub id or a GGUF file)."""
    folder = Path(folder)
    if folder.is_dir():
        for path in sorted(folder.glob("*.safetensors")):
            check_safetensors_file(path)
