"""Finding, checking and loading teacher and student models (describing one without loading it:
:mod:`distill_gui.core.model_info`).

A model is a local Hugging Face folder, a GGUF file, or a hub id that must already be in the local
Hugging Face cache when there is no network. Loading is safe by default: no custom Python code from
the model (``trust_remote_code``) and no pickle weights (``allow_pickle``) unless the config says so.
Every problem is a :class:`ModelError` whose message names the model and what to do about it.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from distill_gui.core.config import ModelConfig, StudentConfig
from distill_gui.core.devices import bf16_supported
from distill_gui.core.errors import UserError
from distill_gui.core.hub import hub_offline

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class ModelError(UserError, ValueError):
    """A model cannot be found, is unsafe to load under the current settings, or failed to load."""


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
# A hub id: "name" or "org/name" (letters, digits, '-', '_', '.'), as huggingface_hub accepts them.
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
NETWORK_PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files are.

    ``kind`` is "folder", "gguf" or "hub". ``path`` is a local folder for every kind except a hub
    model that is not cached yet, where it is the hub id (downloaded when loading).
    """

    kind: str
    path: str
    gguf_file: str | None = None
    hub_id: str | None = None
    revision: str | None = None

    @property
    def is_local(self) -> bool:
        return self.kind != "hub" or Path(self.path).is_dir()

    @property
    def display(self) -> str:
        """The name a person knows the model by: the hub id, the GGUF file or the folder."""
        if self.hub_id:
            return self.hub_id + (f" ({self.gguf_file})" if self.gguf_file else "")
        if self.gguf_file:
            return str(Path(self.path) / self.gguf_file)
        return self.path


@dataclass
class LoadedModel:
    """A model ready to use, with its tokenizer and where it lives."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    source: ModelSource
    device: torch.device
    dtype: torch.dtype
    num_params: int
    trainable_params: int
    role: str = "student"
    quantization: str = "none"


# ---- Finding a model --------------------------------------------------------------------------


def _looks_local(path: str) -> bool:
    if path.startswith(("/", "./", "../", "~", ".\\", "..\\")) or os.path.isabs(path):
        return True
    if path.lower().endswith(".gguf"):
        return True
    return (os.sep in path or "/" in path) and not HUB_ID_RE.match(path)


def _offline() -> bool:
    return hub_offline()


def _hub_reachable() -> bool:
    """One quick TCP connection to the hub endpoint (no retries, short timeout)."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (443 if parsed.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=NETWORK_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def _resolve_hub(hub_id: str, revision: str | None, what: str = "model") -> str:
    """The local snapshot folder of a cached hub repo, or the id itself when the hub can be reached.

    Never waits on network retries: the cache is read with ``local_files_only`` and the network is
    probed once with a short timeout.
    """
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(hub_id, revision=revision, local_files_only=True)
    except Exception:  # LocalEntryNotFoundError, or an id huggingface_hub rejects
        pass
    offline = _offline()
    if offline or not _hub_reachable():
        why = " (HF_HUB_OFFLINE is set)" if offline else ""
        raise ModelError(
            f"{hub_id}: not found locally and no network (the hub is unreachable); download it on a "
            f"connected machine or give a local folder{why}. There is no local {what} folder of that name "
            "and it is not in the Hugging Face cache."
        )
    return hub_id


def _folder_source(folder: Path, kind: str, gguf_file: str | None, hub_id: str | None, revision: str | None) -> ModelSource:
    where = hub_id or str(folder)
    if gguf_file:
        if not (folder / gguf_file).is_file():
            raise ModelError(f"{where}: the GGUF file {gguf_file!r} is not in {folder}; check gguf_file")
        return ModelSource("gguf" if kind != "hub" else "hub", str(folder), gguf_file, hub_id, revision)
    if (folder / "config.json").is_file():
        return ModelSource(kind, str(folder), None, hub_id, revision)
    ggufs = sorted(p.name for p in folder.glob("*.gguf"))
    if len(ggufs) == 1:
        return ModelSource("gguf" if kind != "hub" else "hub", str(folder), ggufs[0], hub_id, revision)
    if len(ggufs) > 1:
        raise ModelError(
            f"{where}: holds {len(ggufs)} GGUF files ({', '.join(ggufs[:4])}{', ...' if len(ggufs) > 4 else ''}); "
            "give the file itself as the path, or set gguf_file"
        )
    raise ModelError(
        f"{where}: not a model folder. A model folder holds config.json and the weights "
        "(model.safetensors or model-0000x-of-0000y.safetensors), plus the tokenizer files; "
        "or give a .gguf file"
    )


def _run_model_folder(path: Path) -> Path:
    """``path`` itself, or for a distill-gui run folder the model it trained: ``checkpoints/final`` when the
    run finished, else its latest complete checkpoint (so a run folder is a valid ``student.path``)."""
    if (path / "config.json").is_file() or not (path / "config.yaml").is_file():
        return path
    from distill_gui.core.model_refs import ModelRefError, resolve

    try:
        ref = resolve(str(path))
    except ModelRefError as exc:
        raise ModelError(str(exc)) from None
    if ref.run is None:
        return path
    if ref.adapter and ref.checkpoint == "final":
        raise ModelError(
            f"{path}: this run's final model is only a LoRA adapter (on a quantized base, {ref.path}); "
            f"give the base model as the path and merge the adapter in {ref.adapter} first"
        )
    if ref.adapter:
        raise ModelError(
            f"{path}: this run has not finished and its latest checkpoint ({ref.checkpoint}) holds only a LoRA adapter; "
            "resume the run to its end (its final/ holds the merged model) or give a model folder"
        )
    return Path(ref.path)


def resolve_source(cfg: ModelConfig) -> ModelSource:
    """Find where a model is: a folder, a GGUF file or a hub id (local cache first, never a long wait)."""
    raw = (cfg.path or "").strip()
    if not raw:
        raise ModelError("no model path is set; choose a model folder, a .gguf file or a hub id")
    path = Path(raw).expanduser()
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return ModelSource("gguf", str(path.parent.resolve()), path.name)
        raise ModelError(f"{raw}: is a file, not a model; give the model folder (with config.json and *.safetensors) or a .gguf file")
    if path.is_dir():
        return _folder_source(_run_model_folder(path).resolve(), "folder", cfg.gguf_file, None, None)
    if _looks_local(raw) or not HUB_ID_RE.match(raw) or ".." in raw or "--" in raw:
        raise ModelError(f"{raw}: not found; check the path (no such file or folder)")
    location = _resolve_hub(raw, cfg.revision)
    if location == raw:
        return ModelSource("hub", raw, cfg.gguf_file, raw, cfg.revision)
    return _folder_source(Path(location), "hub", cfg.gguf_file, raw, cfg.revision)


# ---- Safety checks ----------------------------------------------------------------------------


def _read_config_json(source: ModelSource) -> dict | None:
    if source.gguf_file:
        return None
    if source.is_local:
        file = Path(source.path) / "config.json"
    else:
        from huggingface_hub import hf_hub_download

        try:
            file = Path(hf_hub_download(source.path, "config.json", revision=source.revision))
        except Exception as exc:
            raise ModelError(f"{source.display}: could not read config.json from the hub ({exc})") from None
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{source.display}: config.json is unreadable ({exc}); the model folder looks damaged") from None


def check_safety(source: ModelSource, cfg: ModelConfig, role: str) -> bool | None:
    """Refuse custom code and pickle weights unless allowed; return the ``use_safetensors`` value to load with."""
    config = _read_config_json(source)
    if config is not None and not cfg.trust_remote_code:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING

        model_type = config.get("model_type")
        if config.get("auto_map"):
            raise ModelError(
                f"{source.display}: the model ships its own Python code (auto_map in config.json), which runs "
                f"on your machine when loaded. Set {role}.trust_remote_code: true only if you trust its source."
            )
        if not model_type or model_type not in CONFIG_MAPPING:
            raise ModelError(
                f"{source.display}: model_type {model_type!r} is not known to this transformers version; it needs "
                f"custom code ({role}.trust_remote_code: true, only if you trust its source) or a newer transformers"
            )
    if source.gguf_file:
        return None
    if not source.is_local:
        # Files are not listed before download: ask transformers for safetensors unless pickle is allowed.
        return None if cfg.allow_pickle else True
    folder = Path(source.path)
    names = [p.name for p in folder.iterdir() if p.is_file()]
    has_safetensors = any(n.endswith(".safetensors") for n in names)
    pickles = [n for n in names if n.endswith(PICKLE_SUFFIXES) and n != "training_args.bin"]
    if has_safetensors:
        return True
    if pickles:
        if not cfg.allow_pickle:
            raise ModelError(
                f"{source.display}: has only pickle weights ({', '.join(sorted(pickles)[:3])}); pickle files can run "
                f"code when loaded. Set {role}.allow_pickle: true only if you trust the source, or convert the "
                "weights to safetensors"
            )
        return False
    raise ModelError(
        f"{source.display}: no weights found; a model folder needs model.safetensors (or sharded "
        "model-0000x-of-0000y.safetensors) next to config.json"
    )


def check_gguf(source: ModelSource) -> None:
    """A local GGUF file's header is checked before transformers parses it (ModelError naming the file)."""
    if source.gguf_file and source.is_local:
        from distill_gui.core.gguf_header import check_gguf_header

        check_gguf_header(Path(source.path) / source.gguf_file)


def check_token_ids(tokenizer: Any, num_embeddings: int, source: ModelSource, role: str) -> None:
    """Every id the tokenizer can produce must have a row in the model's embeddings; else a ModelError naming both."""
    specials = (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id)
    top = max([len(tokenizer) - 1] + [i for i in specials if isinstance(i, int)])
    if top >= num_embeddings:
        where = getattr(tokenizer, "name_or_path", "") or source.display
        raise ModelError(
            f"{where}: the {role} tokenizer gives token ids up to {top:,}, but the model {source.display} has "
            f"{num_embeddings:,} token embeddings (ids 0..{num_embeddings - 1:,}); use the tokenizer made for this "
            f"model (set {role}.tokenizer) or a model whose vocabulary covers it"
        )


# ---- Devices and dtypes -----------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    """auto: CUDA when available, else MPS, else CPU. A named device that is not there is a ModelError."""
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise ModelError("device mps: Apple's Metal (MPS) is not available on this machine; use cpu or auto")
        return torch.device("mps")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ModelError(f"device {name}: no CUDA GPU is available (torch {torch.__version__}); use cpu or auto")
        index = int(name[5:]) if name.startswith("cuda:") else torch.cuda.current_device()
        count = torch.cuda.device_count()
        if index >= count:
            raise ModelError(f"device {name}: there {'is' if count == 1 else 'are'} only {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
        return torch.device("cuda", index)
    raise ModelError(f"device {name!r}: not a device; use auto, cpu, cuda, cuda:N or mps")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """auto: bf16 on CUDA GPUs that support it, otherwise fp32 (CPU, MPS, older GPUs)."""
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        if device.type == "cuda" and bf16_supported(device):
            return torch.bfloat16
        return torch.float32
    table = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if name not in table:
        raise ModelError(f"dtype {name!r}: choose auto, fp32, bf16 or fp16")
    if name == "bf16" and device.type == "cuda" and not bf16_supported(device):
        raise ModelError(f"dtype bf16: the GPU {device} has no bfloat16 support; use fp16 or fp32")
    return table[name]


# ---- Loading ----------------------------------------------------------------------------------


def _tokenizer_location(cfg: ModelConfig, source: ModelSource) -> tuple[str, dict]:
    if cfg.tokenizer:
        raw = cfg.tokenizer.strip()
        path = Path(raw).expanduser()
        if path.exists():
            return str(path), {}
        if _looks_local(raw) or not HUB_ID_RE.match(raw):
            raise ModelError(f"{raw}: tokenizer not found; check the tokenizer path (no such folder)")
        return _resolve_hub(raw, None, what="tokenizer"), {}
    kwargs = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    if source.revision and not source.is_local:
        kwargs["revision"] = source.revision
    return source.path, kwargs


def _tokenizer_class(cfg: ModelConfig, source: ModelSource) -> Any:
    """AutoTokenizer, or for a local GGUF file the class AutoTokenizer would pick, called directly: AutoTokenizer
    first parses the whole GGUF header for the config (about 15 s for a 135M model), the class alone does not."""
    from transformers import AutoTokenizer

    if source.gguf_file and source.is_local and not cfg.tokenizer:
        from distill_gui.core.gguf_describe import gguf_tokenizer_class

        return gguf_tokenizer_class(Path(source.path) / source.gguf_file) or AutoTokenizer
    return AutoTokenizer


def load_tokenizer(cfg: ModelConfig, role: str, source: ModelSource | None = None) -> PreTrainedTokenizerBase:
    """The model's tokenizer (from ``cfg.tokenizer``, the model folder or the GGUF file); pad falls back to eos."""
    source = source or resolve_source(cfg)
    location, kwargs = _tokenizer_location(cfg, source)
    try:
        tokenizer = _tokenizer_class(cfg, source).from_pretrained(location, trust_remote_code=cfg.trust_remote_code, **kwargs)
    except (OSError, ValueError, KeyError, ImportError, TypeError) as exc:
        raise ModelError(
            f"{location}: could not load the {role} tokenizer ({first_line(exc)}); the folder needs tokenizer.json "
            f"or tokenizer_config.json, or set {role}.tokenizer to a folder that has them"
        ) from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError(f"{location}: the {role} tokenizer has neither a pad nor an eos token; it cannot batch text")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def load_hint(source: ModelSource, role: str, use_safetensors: bool | None) -> str:
    if source.gguf_file:
        return (
            "transformers reads GGUF files only for some architectures (llama, mistral, qwen2, gemma, phi3, ...) "
            "and needs the gguf package; otherwise use the original model folder"
        )
    if not source.is_local:
        extra = f" or set {role}.allow_pickle: true if it has only pickle weights" if use_safetensors else ""
        return f"check the hub id and revision{extra}"
    return "check that the folder is a complete Hugging Face model (config.json and *.safetensors, not truncated)"


def quantization_config(quantization: str, device: torch.device) -> Any:
    """The bitsandbytes config for "8bit" / "4bit" (NF4, double quantization), or None for "none"."""
    import torch
    from transformers import BitsAndBytesConfig

    if quantization == "none":
        return None
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    if quantization == "4bit":
        compute = torch.bfloat16 if bf16_supported(device) else torch.float32
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
    raise ModelError(f"quantization {quantization!r}: choose none, 8bit or 4bit")


def count_params(model: Any, trainable_only: bool = False) -> int:
    """Parameters of a model, counting 4-bit packed weights by their real (unpacked) size."""
    total = 0
    for param in model.parameters():
        if trainable_only and not param.requires_grad:
            continue
        state = getattr(param, "quant_state", None)
        total += state.shape.numel() if state is not None and getattr(state, "shape", None) is not None else param.numel()
    return total


def _avoid_packed_cpu_kernel(model: Any) -> None:
    """Keep bitsandbytes' generic 4-bit CPU path for layers its packed AVX512-BF16 kernel rejects.

    On CPUs with AVX512-BF16, bitsandbytes 0.50 repacks 4-bit weights on the first inference call,
    which needs ``out_features`` to be a multiple of 32 and ``in_features`` a multiple of the
    quantization block size (64); other layers crash there. The generic path (the one training
    uses) handles every shape.
    """
    for module in model.modules():
        if not getattr(module, "support_avx512bf16_for_cpu", False):
            continue
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        blocksize = getattr(state, "blocksize", 64) or 64
        if module.out_features % 32 or module.in_features % blocksize:
            module.support_avx512bf16_for_cpu = False


def _lora_config(cfg: StudentConfig) -> Any:
    from peft import LoraConfig as PeftLoraConfig
    from peft import TaskType

    targets = list(cfg.lora.target_modules)
    target: str | list[str] = "all-linear" if targets == ["all-linear"] else targets
    return PeftLoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=target,
        task_type=TaskType.CAUSAL_LM,
    )


def load_model(cfg: ModelConfig | StudentConfig, role: str, for_training: bool = False) -> LoadedModel:
    """Load a model and its tokenizer on the configured device.

    The teacher is always frozen in eval mode. A student loaded ``for_training`` is in train mode with
    LoRA adapters (``student.lora.enabled``; QLoRA when quantized) or all weights trainable; otherwise
    it is frozen in eval mode like the teacher (for generation and evaluation).
    """
    import torch
    from transformers import AutoModelForCausalLM

    source = resolve_source(cfg)
    use_safetensors = check_safety(source, cfg, role)
    check_gguf(source)
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    tokenizer = load_tokenizer(cfg, role, source)

    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": cfg.trust_remote_code}
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    if cfg.attn_implementation != "auto":
        kwargs["attn_implementation"] = cfg.attn_implementation
    if use_safetensors is not None:
        kwargs["use_safetensors"] = use_safetensors
    if source.revision and not source.is_local:
        kwargs["revision"] = source.revision
    quant = quantization_config(cfg.quantization, device)
    if quant is not None:
        kwargs["quantization_config"] = quant
        kwargs["device_map"] = {"": str(device)}
    from safetensors import SafetensorError

    try:
        model = AutoModelForCausalLM.from_pretrained(source.path, **kwargs)
    except (OSError, ValueError, ImportError, RuntimeError, KeyError, TypeError, SafetensorError, pickle.UnpicklingError) as exc:
        raise ModelError(
            f"{source.display}: could not load the {role} model ({first_line(exc)}); {load_hint(source, role, use_safetensors)}"
        ) from None
    embeddings: Any = model.get_input_embeddings()
    check_token_ids(tokenizer, int(embeddings.num_embeddings), source, role)
    if quant is None:
        model.to(device)  # type: ignore[arg-type]
    elif cfg.quantization == "4bit" and device.type == "cpu":
        _avoid_packed_cpu_kernel(model)

    training = for_training and role == "student"
    if training and isinstance(cfg, StudentConfig) and cfg.lora.enabled:
        from peft import get_peft_model, prepare_model_for_kbit_training

        if quant is not None:
            # Gradient checkpointing stays the trainer's choice (training.gradient_checkpointing).
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        try:
            model = get_peft_model(model, _lora_config(cfg))
        except ValueError as exc:
            raise ModelError(
                f"{source.display}: LoRA could not be added ({first_line(exc)}); check student.lora.target_modules "
                "(module names such as q_proj, v_proj, or all-linear)"
            ) from None
        model.train()
    elif training:
        model.requires_grad_(True)
        model.train()
    else:
        model.requires_grad_(False)
        model.eval()
    with torch.no_grad():
        num_params = count_params(model)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        source=source,
        device=device,
        dtype=dtype,
        num_params=num_params,
        trainable_params=count_params(model, trainable_only=True),
        role=role,
        quantization=cfg.quantization,
    )
