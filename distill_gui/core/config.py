"""Run configuration: dataclasses with a docstring per field, loaded from and saved to YAML.

The same dotted names serve the YAML file, ``key=value`` overrides on the command line
(``training.max_steps=50``) and the ``objectName`` of the GUI widget that edits a field.
Unknown keys and bad values raise :class:`ConfigError`, naming the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from distill_gui.core import atomic_files
from distill_gui.core.config_migrations import CURRENT_VERSION, migrate, renamed_key
from distill_gui.core.schema import ConfigError, choice, option

__all__ = ["ConfigError", "RunConfig", "load_config", "save_config", "config_from_dict", "config_to_dict"]

# The field helpers under their historical names.
_choice = choice
_doc = option


DTYPES = ("auto", "fp32", "bf16", "fp16")
QUANTIZATIONS = ("none", "8bit", "4bit")
ATTENTIONS = ("auto", "sdpa", "eager")
CHAT_TEMPLATE_CHOICES = ("auto", "always", "never")
"""When a tokenizer's chat template renders prompts (the data settings, eval, generate, compare)."""
DATA_FORMATS = ("auto", "prompt_completion", "alpaca", "messages", "sharegpt", "question_answer", "text")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
STRATEGIES = ("ddp", "fsdp", "deepspeed")
"""How the processes of a multi-process run share the work (see :mod:`distill_gui.core.distributed_launch`)."""


@dataclass
class ModelConfig:
    """A model: a local Hugging Face folder, a GGUF file, or a hub id."""

    path: str = _doc("", "Local model folder, a .gguf file, or a hub id (needs the local cache or a network).")
    gguf_file: str | None = _doc(None, "GGUF file name inside `path` when `path` is a folder holding one.")
    tokenizer: str | None = _doc(None, "Tokenizer folder or hub id when it is not beside the weights.")
    revision: str | None = _doc(None, "Hub revision (branch, tag or commit) for hub ids.")
    dtype: str = _choice("auto", DTYPES, "Weight dtype: auto picks bf16 on GPUs that support it, fp32 on CPU.")
    device: str = _doc("auto", "auto, cpu, cuda, cuda:N or mps.")
    quantization: str = _choice("none", QUANTIZATIONS, "Load weights quantized with bitsandbytes (8-bit or 4-bit NF4).")
    trust_remote_code: bool = _doc(False, "Run Python code shipped with the model. Off unless you trust the source.")
    allow_pickle: bool = _doc(False, "Allow pickle weights (*.bin, *.pt), which can run arbitrary code when loaded.")
    attn_implementation: str = _choice(
        "auto",
        ATTENTIONS,
        "Attention kernel: auto is transformers' default (sdpa); eager is faster for tiny models on a CPU under bf16.",
    )
    url: str = _doc(
        "",
        "Teacher only: an OpenAI-compatible server (Ollama, LM Studio, llama.cpp, vLLM, SGLang) that serves the teacher, "
        "e.g. http://localhost:11434/v1. When set, runs use the server, not `path`: it writes text (generate-data, probe answers) "
        "and, where it returns top_logprobs and cuts text like the student, fills KD's teacher cache (method.kd.cache_teacher).",
    )
    api_key_env: str = _doc("", "Teacher only: the environment variable holding the server's API key (empty: no key).")
    model: str = _doc("", "Teacher only: the model name on the server at `url` (empty: the server's first model).")

    def __post_init__(self) -> None:
        dev = self.device
        if not (dev in ("auto", "cpu", "cuda", "mps") or (dev.startswith("cuda:") and dev[5:].isdigit())):
            raise ConfigError(f"device: {dev!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
        if self.url and not self.url.strip().startswith(("http://", "https://")):
            raise ConfigError(f"url: {self.url!r} is not an http:// or https:// URL (e.g. http://localhost:11434/v1)")


@dataclass
class LoraConfig:
    """LoRA adapters on the student (peft). With `student.quantization: 4bit` this is QLoRA."""

    enabled: bool = _doc(False, "Train LoRA adapters instead of all weights.")
    r: int = _doc(16, "Rank of the adapter matrices.", min=1)
    alpha: int = _doc(32, "Scaling of the adapters (lora_alpha).", min=1)
    dropout: float = _doc(0.05, "Dropout on the adapter input.", min=0.0, max=1.0)
    target_modules: list[str] = _doc(
        doc="Module names to adapt, or ['all-linear'] for every linear layer but the output head.",
        factory=lambda: ["all-linear"],
    )


@dataclass
class StudentConfig(ModelConfig):
    """The student model, trained fully or through LoRA adapters."""

    lora: LoraConfig = _doc(doc="LoRA / QLoRA settings.", factory=LoraConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.quantization != "none" and not self.lora.enabled:
            raise ConfigError(
                f"student.quantization: {self.quantization} needs student.lora.enabled: true "
                "(quantized weights cannot be trained directly; that is QLoRA)"
            )


@dataclass
class MixSource:
    """One source of ``data.mix``: a data file (or folder, or hub id) and its relative weight."""

    path: str = _doc("", "Data file, saved `datasets` folder or hub id (read like data.train).")
    weight: float = _doc(1.0, "Relative weight: the source's share of the mixed training rows is weight / sum of weights.", min=0.0)


@dataclass
class DataConfig:
    """Training data: a file, a folder saved by `datasets`, or a hub id."""

    train: str = _doc("", "Training data: .jsonl, .json, .csv, .parquet, .txt, a saved `datasets` folder, or a hub id.")
    eval: str | None = _doc(None, "Evaluation data file; when unset, `eval_fraction` of the training rows is held out.")
    eval_fraction: float = _doc(0.0, "Share of training rows held out for evaluation when no eval file is given.", min=0.0, max=0.9)
    format: str = _choice("auto", DATA_FORMATS, "Row format; auto detects it from the columns.")
    columns: dict[str, str] = _doc(
        doc="Column mapping from a format's field to your column name, e.g. {prompt: question, completion: solution}.",
        factory=dict,
    )
    max_length: int = _doc(512, "Longest tokenized row; longer rows are truncated, always keeping some completion tokens.", min=8)
    max_bad_fraction: float = _doc(0.1, "Refuse to start when more than this share of rows is unusable.", min=0.0, max=1.0)
    chat_template: str = _choice("auto", CHAT_TEMPLATE_CHOICES, "Use the tokenizer's chat template (auto: when it has one).")
    system_prompt: str | None = _doc(None, "System message added to chat-formatted prompts.")
    seed: int = _doc(0, "Seed for the train/eval split.")
    mix: list[MixSource] = _doc(
        doc="Training sources mixed by weight, e.g. [{path: synthetic.jsonl, weight: 0.3}, {path: real.jsonl, weight: 0.7}]; "
        "the mix has as many rows as its sources together, each source filling its share (repeated when it is smaller). "
        "data.train, when also set, is one more source with weight 1.",
        factory=list,
    )


def _method_config_class() -> type:
    """``method``: ``kind`` plus one section per registered method (``method.kd``, ``method.sft``, ...)."""
    from distill_gui.core import methods

    kinds = methods.names()
    doc = "; ".join(f"{m.name}: {m.title}" for m in methods.all_methods())
    fields: list[tuple] = [("kind", str, _choice("kd" if "kd" in kinds else kinds[0], kinds, f"The training method ({doc})."))]
    for method in methods.all_methods():
        fields.append(
            (method.name, method.Config, _doc(doc=f"{method.title} settings (used when kind is {method.name}).", factory=method.Config))
        )
    cls = dataclasses.make_dataclass("MethodConfig", fields)
    cls.__module__ = __name__
    cls.__doc__ = "How knowledge moves from teacher to student: the method and each method's settings."
    return cls


if TYPE_CHECKING:

    class MethodConfig:
        """Type checkers' view of the class :func:`_method_config_class` builds from the registry."""

        kind: str

        def __getattr__(self, name: str) -> Any: ...

else:
    MethodConfig = _method_config_class()


@dataclass
class TrainingConfig:
    """Optimisation, logging, checkpoints and samples."""

    max_steps: int = _doc(100, "Optimizer steps to train; 0 means use num_epochs.", min=0)
    num_epochs: float = _doc(1.0, "Passes over the data when max_steps is 0.", min=0.0)
    batch_size: int = _doc(8, "Rows per device per step.", min=1)
    gradient_accumulation_steps: int = _doc(1, "Micro-batches summed per optimizer step.", min=1)
    learning_rate: float = _doc(5e-5, "Peak learning rate.", min=0.0)
    weight_decay: float = _doc(0.0, "AdamW weight decay.", min=0.0)
    warmup_steps: int = _doc(0, "Linear warmup steps.", min=0)
    lr_scheduler: str = _choice("cosine", SCHEDULERS, "Learning-rate schedule after warmup.")
    max_grad_norm: float = _doc(1.0, "Gradient clipping norm; 0 disables clipping.", min=0.0)
    precision: str = _choice("auto", DTYPES, "Autocast precision: auto uses bf16 where the hardware has it (CPU included).")
    gradient_checkpointing: bool = _doc(False, "Recompute activations in backward to save memory.")
    seed: int = _doc(42, "Seed for initialisation, shuffling and dropout.")
    logging_steps: int = _doc(1, "Log losses every N steps.", min=1)
    eval_steps: int = _doc(0, "Evaluate every N steps; 0 evaluates only at the end (when there is eval data).", min=0)
    save_steps: int = _doc(50, "Save a checkpoint every N steps; 0 saves only at stop and at the end.", min=0)
    save_total_limit: int = _doc(3, "Keep at most this many step checkpoints (oldest removed first).", min=1)
    sample_steps: int = _doc(0, "Generate probe answers from teacher and student every N steps; 0 disables.", min=0)
    probe_prompts: list[str] = _doc(doc="Prompts for the side-by-side samples; empty uses the first eval prompts.", factory=list)
    num_probe_prompts: int = _doc(3, "How many data prompts to probe when probe_prompts is empty.", min=0)
    max_new_tokens: int = _doc(64, "Longest generated answer for samples.", min=1)
    report_to: list[str] = _doc(
        doc="Experiment trackers the Trainer also reports to: none, or any of tensorboard, mlflow, trackio (each needs its "
        "package); their files go into the run folder. The run folder's own files are written either way.",
        factory=lambda: ["none"],
        item_choices=("none", "tensorboard", "mlflow", "trackio"),
    )
    processes: int = _doc(
        1,
        "Training processes, one per GPU (started through `accelerate launch`); batch_size is per process, so "
        "the step's global batch is batch_size x processes x gradient_accumulation_steps. On a machine without "
        "a GPU, CPU processes (gloo) can be tried.",
        min=1,
        max=1024,
    )
    strategy: str = _choice(
        "ddp",
        STRATEGIES,
        "How several processes share the work: ddp (each holds the whole student, gradients are averaged), "
        "fsdp (weights, gradients and optimizer state split across GPUs; GPUs only), deepspeed (ZeRO stage 2; GPUs "
        "only, needs the deepspeed package). Used when processes is above 1.",
    )

    def __post_init__(self) -> None:
        from distill_gui.core.tracking import check_report_to

        check_report_to(self.report_to)


@dataclass
class RunConfig:
    """Everything a distillation run needs; saved fully resolved as the run folder's config.yaml."""

    config_version: int = _doc(CURRENT_VERSION, "Version of this file's layout; older files are migrated when read.", min=1)
    name: str = _doc("run", "Short name used in the run folder's name.")
    teacher: ModelConfig = _doc(doc="The teacher model (needed for kd).", factory=ModelConfig)
    student: StudentConfig = _doc(doc="The student model that is trained.", factory=StudentConfig)
    data: DataConfig = _doc(doc="Training and evaluation data.", factory=DataConfig)
    method: MethodConfig = _doc(doc="Distillation method.", factory=MethodConfig)
    training: TrainingConfig = _doc(doc="Training settings.", factory=TrainingConfig)
    stages: list[dict[str, Any]] = _doc(
        doc="A recipe: stages run in order, each this config with the stage's keys over it (e.g. {name: rl, method: "
        "{kind: rlvr}}); each stage's student is the previous stage's result. Empty: one run.",
        factory=list,
    )

    def stage_config(self, index: int) -> "RunConfig":
        """Stage ``index`` as a config of its own: this config with the stage's keys over it, without stages.

        Its student is this config's for the first stage; the caller sets the previous stage's result for the others.
        """
        stage = self.stages[index]
        if not isinstance(stage, dict):
            raise ConfigError(f"stages[{index}]: expected a mapping of config keys (name, method, training, ...), got {stage!r}")
        stage = dict(stage)
        label = str(stage.pop("name", "") or f"stage{index + 1}")
        if "stages" in stage:
            raise ConfigError(f"stages[{index}] ({label}): a stage cannot hold stages of its own")
        merged = _deep_merge(config_to_dict(self), stage)
        merged["stages"] = []
        merged["name"] = f"{index + 1:02d}-{label}"
        try:
            return config_from_dict(merged)
        except ConfigError as exc:
            raise ConfigError(f"stages[{index}] ({label}): {exc}") from None

    def validate_for_run(self) -> None:
        """Check the things a run cannot start without (called before training, not on every edit)."""
        for index in range(len(self.stages)):
            stage = self.stage_config(index)
            if index > 0:
                stage.student.path = stage.student.path or "(the previous stage's result)"
            try:
                stage.validate_for_run()
            except ConfigError as exc:
                raise ConfigError(f"stages[{index}] ({stage.name}): {exc}") from None
        from distill_gui.core import methods

        method = methods.method_for(self)
        if method.needs_teacher(self) and not self.teacher.path and not self.teacher.url:
            raise ConfigError(
                f"teacher.path: method.kind {method.name} ({method.title}) needs a teacher; set teacher.path (or teacher.url) "
                "or choose a method that needs none (e.g. method.kind: sft)"
            )
        method.validate(self)
        if not self.student.path:
            raise ConfigError("student.path: no student model is set")
        if not self.data.train and not self.data.mix:
            raise ConfigError("data.train: no training data is set")
        for index, source in enumerate(self.data.mix):
            if not source.path:
                raise ConfigError(f"data.mix[{index}].path: no data is set; give a data file, or remove the entry")
        if self.data.mix and not any(source.weight > 0 for source in self.data.mix):
            raise ConfigError("data.mix: every weight is 0; give at least one source a weight above 0")
        from distill_gui.core.distributed_launch import check_launch

        check_launch(self.training)  # processes and strategy this machine can run


# ---- (de)serialisation -----------------------------------------------------------------------


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    # Resolving the string annotations compiles each one: 3/4 of a config_from_dict, which the window calls on
    # every edit. The config classes do not change at run time; the dict is only read.
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if dataclasses.is_dataclass(tp):
        section: type = tp  # type: ignore[assignment]
        if value is None:
            return section()
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {', '.join(f.name for f in dataclasses.fields(section))}, got {value!r}")
        return _from_dict(section, value, key)
    if origin is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): _coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        return _whole_number(value, key)
    if tp is float:
        return _finite_number(value, key)
    if tp is str:
        if value is None or isinstance(value, (dict, list)):
            raise ConfigError(f"{key}: expected text, got {value!r}")
        return str(value)
    return value


INT_LIMIT = 2**63 - 1
"""Whole numbers must fit in 64 bits (torch and numpy take no more)."""
SEED_LIMIT = 2**32 - 1
"""Seeds go to Python's, numpy's and torch's generators; numpy takes 0 .. 2**32 - 1."""


def _shown(value: Any) -> str:
    """A value for an error message, kept short (a 5000-digit number is not printed)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**30:
        return f"a {len(str(abs(value))) if value.bit_length() < 10_000 else value.bit_length() * 3 // 10}-digit number"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _reject_non_finite(number: float, value: Any, key: str) -> None:
    if number != number:
        raise ConfigError(f"{key}: {_shown(value)} is not a number (NaN); give a finite number")
    if number in (float("inf"), float("-inf")):
        raise ConfigError(f"{key}: {_shown(value)} is out of range (infinite or too large); give a finite number")


def _finite_number(value: Any, key: str) -> float:
    """``value`` as a finite float; NaN, infinities and numbers too large for a float are ConfigErrors."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond a float's range
        raise ConfigError(f"{key}: {_shown(value)} is out of range (too large); give a finite number") from None
    except ValueError:
        raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    _reject_non_finite(number, value, key)
    return number


def _whole_number(value: Any, key: str) -> int:
    """``value`` as an int that fits in 64 bits; 3.0 and '3' are accepted, 3.5, NaN and 1e400 are not."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{key}: expected a whole number, got {value!r}")
    text = value.strip() if isinstance(value, str) else ""
    if isinstance(value, int):
        number = value
    elif text.lstrip("+-").isdigit():
        number = int(text)
    else:
        try:
            as_float = float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected a whole number, got {value!r}") from None
        _reject_non_finite(as_float, value, key)
        if as_float != int(as_float):
            raise ConfigError(f"{key}: expected a whole number, got {value!r}")
        number = int(as_float)
    if abs(number) > INT_LIMIT:
        raise ConfigError(f"{key}: {_shown(value)} is out of range (a whole number here is at most {INT_LIMIT:,} in size)")
    return number


def _check_limits(f: dataclasses.Field, value: Any, key: str) -> None:
    meta = f.metadata
    if f.name == "seed" and isinstance(value, int) and not 0 <= value <= SEED_LIMIT:
        raise ConfigError(f"{key}: {value!r} is out of range; a seed is a whole number from 0 to {SEED_LIMIT:,}")
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{key}: {value!r} is not allowed; choose one of {', '.join(meta['choices'])}")
    if "min" in meta and value is not None and value < meta["min"]:
        raise ConfigError(f"{key}: {value!r} is below the minimum {meta['min']}")
    if "max" in meta and value is not None and value > meta["max"]:
        raise ConfigError(f"{key}: {value!r} is above the maximum {meta['max']}")


def _from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            raise ConfigError(f"{full}: unknown key; allowed keys here are {', '.join(fields)}")
        coerced = _coerce(value, hints[key], full)
        _check_limits(fields[key], coerced, full)
        kwargs[key] = coerced
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        if prefix and not str(exc).startswith(prefix):
            raise ConfigError(f"{prefix}.{exc}") from None
        raise


def config_from_dict(data: dict | None, cls: type = RunConfig) -> Any:
    """Build a config from a plain mapping, checking every key and value."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"the configuration must be a mapping of {', '.join(f.name for f in dataclasses.fields(cls))}")
    if cls is RunConfig:
        data = migrate(data)
    return _from_dict(cls, data)


def _deep_merge(base: dict, over: dict) -> dict:
    """``base`` with ``over``'s keys on top, sections merged key by key."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def config_to_dict(config: Any) -> dict:
    """The plain-mapping form of a config (what YAML holds)."""
    return dataclasses.asdict(config)


def _resolve_path(value: str | None, base: Path) -> str | None:
    if not value:
        return value
    candidate = Path(value).expanduser()
    if candidate.is_absolute():
        return str(candidate)
    resolved = base / candidate
    # A relative value that does not exist next to the config may be a hub id ("org/name"): keep it.
    if resolved.exists() or "/" not in value or value.startswith("."):
        return str(resolved.resolve())
    return value


def resolve_paths(config: RunConfig, base: Path) -> RunConfig:
    """Make relative model and data paths absolute against ``base`` (the config file's folder)."""
    for model in (config.teacher, config.student):
        model.path = _resolve_path(model.path, base) or ""
        model.tokenizer = _resolve_path(model.tokenizer, base)
    config.data.train = _resolve_path(config.data.train, base) or ""
    config.data.eval = _resolve_path(config.data.eval, base)
    for source in config.data.mix:
        source.path = _resolve_path(source.path, base) or ""
    from distill_gui.core import methods

    for method in methods.all_methods():
        method.resolve_paths(getattr(config.method, method.name), base)
    return config


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b=value`` overrides (values parsed as YAML) to a plain mapping."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. training.max_steps=50")
        key, raw = item.split("=", 1)
        key = renamed_key(key.strip())
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {key}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return data


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config, apply overrides and resolve relative paths against the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a configuration") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ConfigError(f"{path}: a value cannot be read ({str(exc).split(';')[0]})") from None
    data = apply_overrides(data or {}, overrides or [])
    try:
        config = config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return resolve_paths(config, path.parent.resolve())


def dump_config(config: RunConfig) -> str:
    """The YAML text of a config."""
    return yaml.safe_dump(config_to_dict(config), sort_keys=False, allow_unicode=True)


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write a config as YAML (atomically: a crash never leaves half a file)."""
    atomic_files.write_text(path, dump_config(config))


def field_doc(cls: type, name: str) -> str:
    """The help text of a config field (used for CLI help and GUI tooltips)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.metadata.get("doc", "")
    raise KeyError(name)


def field_choices(cls: type, name: str) -> tuple:
    """Allowed values of a choice field, or () for free fields."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return tuple(f.metadata.get("choices", ()))
    raise KeyError(name)
