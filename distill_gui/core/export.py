"""Export a trained student for use outside the app, read top to bottom: :func:`export_model`.

1. resolve the source (a run folder or a model folder) and run every cheap check — a base model that
   moved, a folder that exists (never replaced without ``force``), an architecture or tokenizer the GGUF
   converter cannot take — before anything loads;
2. load the weights as one merged float32 model (a LoRA adapter merged in, a QLoRA base de-quantized);
3. write the export into a hidden staging folder beside the target: ``hf`` a standalone Hugging Face
   folder; ``gguf`` a GGUF file through llama.cpp's converter, loaded back and checked against the
   merged model on the run's probe prompts (``<file>.verify.json``); ``ollama`` the GGUF plus a
   ``Modelfile``; every export gets a model card ``README.md``;
4. rename the staging folder to the target in one step. A failure (a full disk included) removes the
   staging folder: nothing half-written is ever left under the target's name.

Progress goes to ``on_progress`` as :class:`ExportProgress` records (the CLI prints them or writes them
as JSON lines for the app).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from distill_gui.core.export_source import ExportError, ExportSource, load_merged, resolve_export_source

KINDS = ("hf", "gguf", "ollama")


@dataclass(frozen=True)
class ExportProgress:
    """One step of an export: what happens now and how far along the whole export is (0..1)."""

    phase: str
    message: str
    fraction: float

    def to_json(self) -> str:
        return json.dumps({"event": "ExportProgress", **asdict(self)}, ensure_ascii=False)


@dataclass
class ExportResult:
    """A finished export: its folder, files, and what the person should know."""

    folder: str
    kind: str
    quant: str | None
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    verified: bool | None = None
    """GGUF exports: the file answered the probe prompts as the merged model did (None for hf)."""
    verification: str | None = None
    command: str | None = None
    """The command that runs or imports the export."""
    seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps({"event": "ExportFinished", **asdict(self)}, ensure_ascii=False)


ProgressCallback = Callable[[ExportProgress], None]


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "model"


def default_out(source: ExportSource, kind: str, quant: str | None) -> Path:
    """Where an export goes when no folder is given: ``<run>/exports/<kind>[-<quant>]``, or beside a model folder."""
    suffix = kind if kind == "hf" else f"{kind}-{quant}"
    if source.run is not None:
        return source.run.path / "exports" / suffix
    folder = Path(source.ref.path).expanduser().resolve()
    return folder.parent / f"{folder.name}-{suffix}"


def _local_folder(path: str) -> Path:
    """A model's local folder (a cached hub id resolved to its snapshot)."""
    from distill_gui.core.config import ModelConfig
    from distill_gui.core.models import resolve_source

    return Path(resolve_source(ModelConfig(path=path)).path)


def probe_prompts(source: ExportSource) -> list[str]:
    """The prompts a GGUF export is checked on: the run's probe prompts (as it rendered them), else defaults."""
    from distill_gui.core.export_verify import DEFAULT_PROMPTS

    if source.run is not None:
        records = source.run.samples()
        if records and records[-1].get("samples"):
            prompts = [s.get("prompt") for s in records[-1]["samples"] if isinstance(s.get("prompt"), str)]
            if prompts:
                return prompts
        if source.config is not None and source.config.training.probe_prompts:
            return list(source.config.training.probe_prompts)
    return list(DEFAULT_PROMPTS)


def _check_target(out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise ExportError(f"{out}: already exists; choose another --out folder, or add --force to replace it")
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: is a file, not a folder; choose another --out folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"{out.parent}: cannot create the folder ({exc.strerror or exc})") from None
    if not os.access(out.parent, os.W_OK):
        raise ExportError(f"{out.parent}: is not writable; choose another --out folder")


def _is_disk_full(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if (isinstance(seen, OSError) and seen.errno == errno.ENOSPC) or "No space left on device" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _commit(staging: Path, out: Path) -> None:
    """Put the staging folder in place of ``out`` (an old ``out`` is moved aside first, then removed)."""
    aside = None
    if out.exists():
        aside = out.with_name(f".{out.name}.replaced-{os.getpid()}")
        out.rename(aside)
    staging.rename(out)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def export_model(
    spec: str,
    kind: str,
    quant: str | None = None,
    out: str | Path | None = None,
    force: bool = False,
    on_progress: ProgressCallback | None = None,
) -> ExportResult:
    """Export ``spec`` (a run folder or a model folder) as ``kind`` (hf, gguf, ollama); see the module's doc."""
    from distill_gui.core import export_gguf

    started = time.time()

    def report(phase: str, message: str, fraction: float) -> None:
        if on_progress is not None:
            on_progress(ExportProgress(phase=phase, message=message, fraction=fraction))

    # 1. Checks, before anything loads
    if kind not in KINDS:
        raise ExportError(f"--to {kind}: choose one of {', '.join(KINDS)}")
    if kind == "hf" and quant not in (None, "f16"):
        raise ExportError(f"--quant {quant}: is for gguf and ollama exports; an hf export writes safetensors in the model's dtype (or f16)")
    gguf_quant = quant or "f16"  # gguf and ollama
    report("check", f"checking {spec}", 0.0)
    source = resolve_export_source(spec)
    target = Path(out).expanduser().resolve() if out else default_out(source, kind, gguf_quant)
    _check_target(target, force)
    if kind != "hf":
        model_folder = _local_folder(source.ref.path)
        tokenizer_folder = Path(source.ref.tokenizer) if source.ref.tokenizer else model_folder
        export_gguf.check_gguf_support(model_folder, tokenizer_folder, gguf_quant)
    for note in source.notes:
        report("check", note, 0.02)
    staging = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    if kind != "hf":
        quant = gguf_quant
    result = ExportResult(folder=str(target), kind=kind, quant=quant, notes=list(source.notes))
    try:
        # 2. The merged model
        report("load", f"loading {source.ref.describe()}", 0.05)
        model, tokenizer = load_merged(source)
        # 3. The export, into the staging folder
        _write(source, kind, quant, model, tokenizer, staging, target, result, report)
        # 4. In place, in one step
        _commit(staging, target)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, Exception) and _is_disk_full(exc):
            free = shutil.disk_usage(target.parent).free
            from distill_gui.core.memory import format_bytes

            raise ExportError(
                f"no space left on device: {target.parent} has {format_bytes(free)} free; nothing was left under "
                f"{target.name}. Free some space or choose another --out folder"
            ) from None
        raise
    result.seconds = round(time.time() - started, 2)
    report("done", f"exported to {target}", 1.0)
    return result


def _write(
    source: ExportSource,
    kind: str,
    quant: str | None,
    model,
    tokenizer,
    staging: Path,
    target: Path,
    result: ExportResult,
    report: Callable[[str, str, float], None],
) -> None:
    from distill_gui.core import export_gguf, export_hf, export_ollama, model_card
    from distill_gui.core.licences import teacher_notice

    facts = model_card.gather(source)
    name = _slug(source.name)
    staging.mkdir(parents=True)
    if kind == "hf":
        dtype = export_hf.source_dtype(source.ref.path)
        if quant == "f16":
            dtype = "fp16"
        report("write", f"writing safetensors ({dtype}) and the tokenizer", 0.3)
        export_hf.write_hf_folder(model, tokenizer, staging, dtype)
        result.command = (
            f"python -c \"from transformers import pipeline; print(pipeline('text-generation', '{target}')('Hello')[0]['generated_text'])\""
        )
        usage = [result.command]
    else:
        quant = quant or "f16"
        merged_folder = staging / ".merged-hf"
        report("write", "writing the merged model for the converter", 0.2)
        export_hf.write_hf_folder(model, tokenizer, merged_folder, "fp32")
        (merged_folder / "README.md").write_text(model_card.render(facts, kind, [], []), encoding="utf-8")
        gguf_file = staging / f"{name}-{quant}.gguf"
        report("convert", f"converting to GGUF {quant}", 0.35)
        export_gguf.convert(merged_folder, gguf_file, quant, model_name=source.name, progress=lambda text: report("convert", text, 0.4))
        shutil.rmtree(merged_folder)
        report("verify", "loading the GGUF file back and comparing greedy answers with the merged model", 0.7)
        from distill_gui.core.export_verify import verify_gguf

        max_new = min(source.config.training.max_new_tokens, 48) if source.config is not None else 32
        verification = verify_gguf(model, tokenizer, gguf_file, probe_prompts(source), quant, max_new_tokens=max_new)
        verification.write(gguf_file.with_name(gguf_file.name + ".verify.json"))
        result.verified, result.verification = verification.passed, verification.summary()
        report("verify", verification.summary(), 0.9)
        usage = [f"llama-cli -m {target / gguf_file.name} -cnv"]
        result.command = usage[0]
        if kind == "ollama":
            system = source.config.data.system_prompt if source.config is not None else None
            notice = teacher_notice(facts.teacher_licence) if facts.teacher_licence is not None else None
            text, notes = export_ollama.modelfile_text(gguf_file.name, tokenizer, system, notice)
            (staging / "Modelfile").write_text(text, encoding="utf-8")
            result.notes.extend(notes)
            result.command = export_ollama.import_command(target, source.name)
            usage = [result.command, f"ollama run {export_ollama.ollama_name(source.name)}"]
    report("card", "writing the model card", 0.95)
    files = sorted(p.name for p in staging.iterdir() if p.is_file())
    files = sorted(set(files) | {"README.md"})
    (staging / "README.md").write_text(model_card.render(facts, kind, files, usage, result.verification), encoding="utf-8")
    result.files = files
