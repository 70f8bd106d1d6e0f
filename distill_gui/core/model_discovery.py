"""The models already on this machine, for the model picker: the Hugging Face cache (with sizes and
revisions), Ollama's and LM Studio's model folders (their GGUF files), recent folders, and this app's
own finished runs. Each is described from small files only (config.json, README front matter, a GGUF
header's metadata): nothing is loaded, so listing a few hundred models takes well under a second."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from distill_gui.core.memory import format_bytes

HF_CACHE = "Hugging Face cache"
OLLAMA = "Ollama"
LM_STUDIO = "LM Studio"
RECENT = "Recent"
RUN = "This app's runs"

_QUANT_IN_NAME = re.compile(r"(?i)(?:^|[-_.])((?:I?Q\d(?:_[A-Z0-9]+)*)|F16|BF16|F32)(?=[-_.]|$)")
# GGUF general.file_type values (llama.cpp's LLAMA_FTYPE) most files carry.
_GGUF_FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    32: "BF16",
}
_GGUF_KEYS = ("general.architecture", "general.name", "general.license", "general.file_type", "general.size_label")


@dataclass(frozen=True)
class FoundModel:
    """One model the picker lists; ``path`` (and ``gguf_file``) are what the Models page's fields take."""

    name: str
    where: str
    """Which place it was found in: HF_CACHE, OLLAMA, LM_STUDIO, RECENT or RUN."""
    path: str
    gguf_file: str = ""
    architecture: str = ""
    parameters: str = ""
    size_bytes: int = 0
    quantization: str = ""
    licence: str = ""
    revision: str = ""

    @property
    def size(self) -> str:
        return format_bytes(self.size_bytes) if self.size_bytes else ""

    def matches(self, text: str) -> bool:
        """Whether every word of ``text`` appears in the model's name, place, architecture, quantization or path."""
        hay = " ".join((self.name, self.where, self.architecture, self.quantization, self.licence, self.path, self.gguf_file)).lower()
        return all(word in hay for word in text.lower().split())


# ---- Describing one model from its small files
def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _card_licence(folder: Path) -> str:
    try:
        with open(folder / "README.md", encoding="utf-8", errors="replace") as f:
            head = f.read(4000)
    except OSError:
        return ""
    match = re.search(r"(?m)^licen[cs]e:\s*['\"]?([\w.\-]+)", head.split("\n---", 1)[0]) if head.startswith("---") else None
    return match.group(1) if match else ""


def _folder_bytes(folder: Path) -> int:
    total = 0
    for entry in folder.iterdir():
        try:
            if entry.is_file():  # follows the cache's symlinks to their blobs
                total += entry.stat().st_size
        except OSError:
            continue
    return total


def _param_count(folder: Path, config: dict) -> str:
    """Parameters from the safetensors index (total bytes over the dtype's size), or "" when unknown."""
    index = _read_json(folder / "model.safetensors.index.json")
    total = (index.get("metadata") or {}).get("total_size") if index else None
    if not total:
        single = folder / "model.safetensors"
        if not single.is_file():
            return ""
        try:
            with open(single, "rb") as f:
                header_len = int.from_bytes(f.read(8), "little")
                if header_len > 100_000_000:
                    return ""
                header = json.loads(f.read(header_len))
        except (OSError, ValueError):
            return ""
        count = 0
        for name, tensor in header.items():
            if name != "__metadata__" and isinstance(tensor, dict):
                n = 1
                for dim in tensor.get("shape", []):
                    n *= int(dim)
                count += n
        return _format_params(count)
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
    per = 4 if "32" in dtype else 1 if "8" in dtype else 2
    return _format_params(int(total) // per)


def _format_params(n: int) -> str:
    if n <= 0:
        return ""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}".replace(".0 ", " ")
    return str(n)


def describe_folder(folder: Path, name: str, where: str, revision: str = "") -> FoundModel | None:
    """A Hugging Face model folder (config.json beside weights), or None when it is not one."""
    config = _read_json(folder / "config.json")
    if not config:
        ggufs = sorted(folder.glob("*.gguf"))
        return describe_gguf(ggufs[0], name, where) if ggufs else None
    archs = config.get("architectures") or []
    quant = (config.get("quantization_config") or {}).get("quant_method", "") if isinstance(config.get("quantization_config"), dict) else ""
    return FoundModel(
        name=name,
        where=where,
        path=str(folder),
        architecture=str(archs[0]) if archs else str(config.get("model_type", "")),
        parameters=_param_count(folder, config),
        size_bytes=_folder_bytes(folder),
        quantization=str(quant),
        licence=_card_licence(folder) or str(config.get("license", "")),
        revision=revision,
    )


def describe_gguf(file: Path, name: str, where: str) -> FoundModel:
    """A GGUF file, from its header's metadata (architecture, licence, quantization, size label)."""
    from distill_gui.core.gguf_header import gguf_metadata

    meta = gguf_metadata(file, _GGUF_KEYS)
    file_type = meta.get("general.file_type")
    quant = _GGUF_FILE_TYPES.get(file_type, "") if isinstance(file_type, int) else ""
    if not quant:
        match = _QUANT_IN_NAME.search(file.stem)
        quant = match.group(1).upper() if match else ""
    try:
        size = file.stat().st_size
    except OSError:
        size = 0
    return FoundModel(
        name=name,
        where=where,
        path=str(file.parent),
        gguf_file=file.name,
        architecture=str(meta.get("general.architecture", "")),
        parameters=re.sub(r"(\d)([KMBT])$", r"\1 \2", str(meta.get("general.size_label", ""))),  # "135M" as "135 M", as folders show it
        size_bytes=size,
        quantization=quant,
        licence=str(meta.get("general.license", "")),
    )


# ---- The places models live
def hf_cache_models(cache_dir: str | Path | None = None) -> list[FoundModel]:
    """Every model revision in the Hugging Face hub cache (huggingface_hub's own scan); the newest first."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(cache_dir)
    except (CacheNotFound, OSError):
        return []
    found = []
    for repo in sorted(info.repos, key=lambda r: r.last_modified or 0, reverse=True):
        if repo.repo_type != "model":
            continue
        for revision in sorted(repo.revisions, key=lambda r: r.last_modified or 0, reverse=True):
            model = describe_folder(
                Path(revision.snapshot_path), repo.repo_id, HF_CACHE, revision=", ".join(sorted(revision.refs)) or revision.commit_hash[:10]
            )
            if model is not None:
                found.append(FoundModel(**{**model.__dict__, "size_bytes": revision.size_on_disk}))
    return found


def ollama_models(root: str | Path | None = None) -> list[FoundModel]:
    """Ollama's models: each manifest's model layer, a GGUF blob (``~/.ollama/models`` or ``$OLLAMA_MODELS``)."""
    base = Path(root or os.environ.get("OLLAMA_MODELS") or Path.home() / ".ollama" / "models")
    manifests = base / "manifests"
    if not manifests.is_dir():
        return []
    found = []
    for manifest in sorted(p for p in manifests.rglob("*") if p.is_file()):
        data = _read_json(manifest)
        layers = [
            layer
            for layer in data.get("layers", [])
            if isinstance(layer, dict) and layer.get("mediaType") == "application/vnd.ollama.image.model"
        ]
        if not layers:
            continue
        blob = base / "blobs" / str(layers[0].get("digest", "")).replace(":", "-")
        if not blob.is_file():
            continue
        parts = manifest.relative_to(manifests).parts
        name = f"{'/'.join(p for p in parts[1:-1] if p != 'library')}:{parts[-1]}"
        found.append(describe_gguf(blob, name, OLLAMA))
    return found


def lm_studio_models(roots: list[Path] | None = None) -> list[FoundModel]:
    """LM Studio's GGUF files (``~/.lmstudio/models``, ``~/.cache/lm-studio/models``: publisher/model/file.gguf)."""
    home = Path.home()
    roots = roots if roots is not None else [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"]
    found = []
    for root in roots:
        if not root.is_dir():
            continue
        for file in sorted(root.glob("*/*/*.gguf")):
            found.append(describe_gguf(file, f"{file.parent.parent.name}/{file.parent.name} ({file.name})", LM_STUDIO))
    return found


def recent_models(paths: list[str]) -> list[FoundModel]:
    """The user's recent model folders and GGUF files that still exist."""
    found = []
    for text in paths:
        path = Path(text).expanduser()
        if path.is_file() and path.suffix.lower() == ".gguf":
            found.append(describe_gguf(path, path.name, RECENT))
        elif path.is_dir():
            model = describe_folder(path, path.name, RECENT)
            if model is not None:
                found.append(model)
    return found


def run_models(runs_root: str | Path) -> list[FoundModel]:
    """The final students of this app's finished runs (``<run>/checkpoints/final``)."""
    root = Path(runs_root)
    if not root.is_dir():
        return []
    found = []
    for final in sorted(root.glob("*/checkpoints/final"), reverse=True):
        model = describe_folder(final, final.parent.parent.name, RUN)
        if model is not None:
            found.append(model)
    return found


def discover_models(recent: list[str] | None = None, runs_root: str | Path | None = None) -> list[FoundModel]:
    """Every model found on this machine: recent first, then this app's runs, the hub cache, Ollama, LM Studio."""
    found = recent_models(recent or [])
    if runs_root is not None:
        found += run_models(runs_root)
    found += hf_cache_models() + ollama_models() + lm_studio_models()
    return found
