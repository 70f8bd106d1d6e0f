"""What an export starts from: a run folder or a model folder, checked, then loaded as one merged model.

A run folder stands for its trained student (:func:`distill_gui.core.model_refs.resolve`): ``final/``
when the run finished, else its latest complete checkpoint (and the export says so). A LoRA run's
adapter is merged into its base model; a QLoRA run's base is loaded 4-bit as in training and
de-quantized first, so the adapter is merged into the weights it was trained against. The checks here
are cheap and run before anything loads: a base model that moved is named with its missing path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill_gui.core.errors import UserError
from distill_gui.core.model_refs import ModelRef, resolve
from distill_gui.core.runs import RunDir


class ExportError(UserError, ValueError):
    """An export cannot be made; the message names the file or setting and what to do."""


@dataclass
class ExportSource:
    """A resolved export source: what loads, from which run, and what the person should know."""

    spec: str
    ref: ModelRef
    run: RunDir | None = None
    config: Any = None
    """The run's :class:`RunConfig`, for a run."""
    notes: list[str] = field(default_factory=list)
    """Sentences for the person (an unfinished run's checkpoint, a QLoRA base de-quantized)."""

    @property
    def quantization(self) -> str:
        """How the run's student was loaded for training (``none``, ``8bit``, ``4bit``)."""
        return self.config.student.quantization if self.config is not None else "none"

    @property
    def name(self) -> str:
        return self.ref.label


def _looks_like_path(value: str) -> bool:
    return value.startswith(("/", ".", "~")) or Path(value).is_absolute() or "\\" in value


def resolve_export_source(spec: str) -> ExportSource:
    """Resolve and check ``spec`` (a run folder or a model folder) without loading any weights."""
    ref = resolve(spec)
    source = ExportSource(spec=str(spec), ref=ref)
    if ref.run:
        source.run = RunDir(Path(ref.run))
        source.config = source.run.load_config()
        if ref.checkpoint != "final":
            source.notes.append(f"the run has not finished; exporting its latest complete checkpoint {ref.checkpoint}")
    if Path(ref.path).suffix.lower() == ".gguf":
        raise ExportError(f"{ref.path}: is already a GGUF file; export starts from a model folder or a run folder")
    if ref.adapter:
        base = ref.path
        if _looks_like_path(base) and not Path(base).expanduser().exists():
            raise ExportError(
                f"{base}: the base model of run {Path(ref.run or spec).name} (its student.path) is missing — it was moved or "
                f"deleted; put it back, or set student.path in {Path(ref.run or spec) / 'config.yaml'} to where it is now"
            )
        if source.quantization != "none":
            source.notes.append(
                f"the run trained a QLoRA adapter on a {source.quantization} base; the base is de-quantized and the adapter merged into it"
            )
    elif not Path(ref.path).expanduser().exists():
        raise ExportError(f"{ref.path}: no such model folder; give a run folder or a model folder")
    return source


def _dequantized_base(source: ExportSource) -> Any:
    """The run's base model loaded quantized as in training, then de-quantized to float32 (QLoRA)."""
    import torch

    from distill_gui.core.config import ModelConfig
    from distill_gui.core.models import load_model

    cfg = ModelConfig(
        path=source.ref.path,
        tokenizer=source.ref.tokenizer,
        device=source.config.student.device,
        quantization=source.quantization,
        trust_remote_code=source.config.student.trust_remote_code,
    )
    loaded = load_model(cfg, "student")
    try:
        model = loaded.model.dequantize()
    except (ValueError, RuntimeError, NotImplementedError) as exc:
        raise ExportError(
            f"{source.ref.path}: the {source.quantization} base could not be de-quantized ({str(exc).splitlines()[0]})"
        ) from None
    model = model.to(device="cpu", dtype=torch.float32)
    config = model.config
    for attribute in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attribute):
            delattr(config, attribute)
    model.is_quantized = False
    model.hf_quantizer = None
    return model, loaded.tokenizer


def load_merged(source: ExportSource) -> tuple[Any, Any]:
    """The exported weights as one float32 model on the CPU (a LoRA adapter merged in) and its tokenizer."""
    import torch

    from distill_gui.core.config import ModelConfig
    from distill_gui.core.models import ModelError, load_model

    ref = source.ref
    if ref.adapter and source.quantization != "none":
        model, tokenizer = _dequantized_base(source)
    else:
        trust = bool(source.config.student.trust_remote_code) if source.config is not None else False
        loaded = load_model(
            ModelConfig(path=ref.path, tokenizer=ref.tokenizer, device="cpu", dtype="fp32", trust_remote_code=trust), "student"
        )
        model, tokenizer = loaded.model, loaded.tokenizer
    if ref.adapter:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, ref.adapter).merge_and_unload()
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise ModelError(f"{ref.adapter}: could not merge the LoRA adapter into {ref.path} ({str(exc).splitlines()[0]})") from None
    model = model.to(dtype=torch.float32)
    model.requires_grad_(False)
    model.eval()
    return model, tokenizer
