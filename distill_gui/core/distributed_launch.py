"""Training past one device: the ``accelerate`` config and the command line of a run of several processes.

A run with ``training.processes: 1`` is one process (``python -m distill_gui train ...``). With more, the
app and ``distill-gui train`` write an accelerate config (``accelerate.yaml``) and start the same command
through ``accelerate launch``::

    python -m accelerate.commands.launch --config_file accelerate.yaml -m distill_gui train CONFIG ...

Every process loads the config; the main one writes the run folder (the others meet it at barriers) and
keeps a copy of the accelerate config in it. ``training.batch_size`` is per process: the step's global
batch is batch_size x processes x gradient_accumulation_steps.

Strategies (``training.strategy``):

* ``ddp`` — every process holds the whole student; gradients are averaged. GPUs, or CPU processes
  (gloo) on a machine without a GPU, which is how the tests run it.
* ``fsdp`` — the student's weights, gradients and optimizer state are split across the processes
  (FSDP2). On GPUs as accelerate does it; on CPU processes (gloo), which accelerate (1.x) would quietly
  run as DDP, :func:`prepare_process` lets it shard for real, so FSDP can be tried and tested anywhere.
* ``deepspeed`` — DeepSpeed ZeRO stage 2; GPUs only, offered when the ``deepspeed`` package is installed.

This module imports no torch: the app asks it what the machine offers before torch is loaded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from distill_gui.core import atomic_files
from distill_gui.core.config import STRATEGIES
from distill_gui.core.schema import ConfigError

STRATEGY_TITLES = {"ddp": "DDP (data parallel)", "fsdp": "FSDP (fully sharded)", "deepspeed": "DeepSpeed ZeRO-2"}
STRATEGY_HELP = {
    "ddp": "Every process holds the whole student and trains on its share of each batch; the gradients are "
    "averaged. The simple choice when the student fits on one device.",
    "fsdp": "The student's weights, gradients and optimizer state are split across the processes, so a student "
    "too big for one GPU can train. On CPU processes it works too, slowly (for trying it).",
    "deepspeed": "DeepSpeed ZeRO stage 2: optimizer state and gradients are split across the GPUs. GPUs only; needs the deepspeed package.",
}
ACCELERATE_CONFIG_NAME = "accelerate.yaml"
OUTCOME_NAME = "outcome.json"
LAUNCHED_ENV = "DISTILL_GUI_LAUNCHED"
"""Set in the processes we start through accelerate: they train, they do not launch again."""
LAUNCH_DIR_ENV = "DISTILL_GUI_LAUNCH_DIR"
"""The folder holding the launch's accelerate.yaml; the main process copies it into the run folder and
writes how the run ended there (``outcome.json``) for the command that launched it."""
MAX_CPU_PROCESSES = 8


class LaunchError(ConfigError):
    """Processes or strategy cannot run on this machine; the message names the setting and the fix."""


# ---- What the machine offers ---------------------------------------------------------------------


def deepspeed_installed() -> bool:
    return importlib.util.find_spec("deepspeed") is not None


def visible_gpus() -> int:
    """CUDA GPUs this process may use, found without importing torch when it is not loaded yet."""
    if "torch" in sys.modules:
        import torch

        return int(torch.cuda.device_count())
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0
    proc = Path("/proc/driver/nvidia/gpus")
    try:
        count = sum(1 for _ in proc.iterdir()) if proc.is_dir() else 0
    except OSError:
        count = 0
    if count == 0 and shutil.which("nvidia-smi") is None:
        return 0
    if visible is not None:
        count = min(count, len([part for part in visible.split(",") if part.strip()])) if count else 0
    return count


@dataclass(frozen=True)
class Devices:
    """What a run of several processes can use here: GPUs, or (without any) CPU processes."""

    gpus: int
    cpu_cores: int

    @property
    def on_cpu(self) -> bool:
        return self.gpus == 0

    @property
    def max_processes(self) -> int:
        """One process per GPU; without a GPU, CPU processes (gloo) — at least 2, so the way a run spreads
        over devices can be tried on any machine."""
        if self.gpus:
            return self.gpus
        return max(2, min(self.cpu_cores, MAX_CPU_PROCESSES))

    def strategies(self) -> tuple[str, ...]:
        """The strategies that run here: DDP and FSDP; DeepSpeed on GPUs when installed."""
        if self.on_cpu:
            return ("ddp", "fsdp")
        return ("ddp", "fsdp") + (("deepspeed",) if deepspeed_installed() else ())

    def single_reason(self) -> str:
        """Why only one process can run here ("" when more can)."""
        if self.gpus == 1:
            return "Only one GPU is visible: more processes need more GPUs (one process per GPU)."
        return ""

    def describe(self) -> str:
        if self.on_cpu:
            return f"no GPU: CPU processes (gloo), up to {self.max_processes}; slow, for trying a multi-device run"
        return f"{self.gpus} GPU{'s' if self.gpus != 1 else ''}: one process per GPU"


def devices() -> Devices:
    return Devices(gpus=visible_gpus(), cpu_cores=os.cpu_count() or 1)


def under_launcher() -> bool:
    """True inside a process started by a launcher (ours, accelerate's or torchrun)."""
    if os.environ.get(LAUNCHED_ENV):
        return True
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def needs_launch(training: Any) -> bool:
    """Whether a run of these training settings must be started through accelerate (and is not yet)."""
    return int(training.processes) > 1 and not under_launcher()


def check_launch(training: Any, here: Devices | None = None) -> None:
    """Refuse processes and strategies this machine cannot run, naming the setting and the fix."""
    processes, strategy = int(training.processes), str(training.strategy)
    if processes <= 1 or under_launcher():
        return
    here = here or devices()
    if processes > here.max_processes:
        if here.gpus == 1:
            raise LaunchError(
                f"training.processes: {processes} processes need {processes} GPUs; only one is visible. Set training.processes: 1"
            )
        where = f"{here.gpus} GPUs are visible" if here.gpus else f"this CPU-only machine runs at most {here.max_processes} processes"
        raise LaunchError(f"training.processes: {processes} is more than this machine runs ({where}); set at most {here.max_processes}")
    if strategy not in here.strategies():
        if strategy == "deepspeed" and not here.on_cpu:
            why = "the deepspeed package is not installed (pip install deepspeed), or choose ddp or fsdp"
        else:
            why = "it runs on GPUs only; use training.strategy: ddp or fsdp on this machine"
        raise LaunchError(f"training.strategy: {strategy} cannot run here: {why}")


# ---- The accelerate config and the command line ---------------------------------------------------


def free_port() -> int:
    """A TCP port free now on this machine, for the processes to meet on (two runs never share one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def accelerate_config(training: Any, here: Devices | None = None, port: int | None = None) -> dict[str, Any]:
    """The accelerate config (what ``accelerate config`` would write) for these training settings.

    Mixed precision stays ``no``: the run sets its own precision (``training.precision``) in the Trainer.
    CPU processes are launched as ``MULTI_GPU`` without ``use_cpu``: that is the launcher that starts one
    process per rank (accelerate's ``MULTI_CPU`` expects mpirun); without a GPU each process then runs on
    the CPU with gloo.
    """
    here = here or devices()
    strategy = str(training.strategy)
    kind = {"ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed": "DEEPSPEED"}[strategy]
    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": kind,
        "num_processes": int(training.processes),
        "num_machines": 1,
        "machine_rank": 0,
        "main_training_function": "main",
        "mixed_precision": "no",
        "use_cpu": False,
        "gpu_ids": "all",
        "rdzv_backend": "static",
        "same_network": True,
        "main_process_ip": "127.0.0.1",
        "main_process_port": port if port is not None else free_port(),
        "downcast_bf16": "no",
        "tpu_env": [],
        "tpu_use_cluster": False,
        "tpu_use_sudo": False,
    }
    if strategy == "fsdp":
        config["fsdp_config"] = {
            "fsdp_version": 2,
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_reshard_after_forward": True,
            "fsdp_state_dict_type": "FULL_STATE_DICT",  # final/ and checkpoints stay ordinary model folders
            "fsdp_cpu_ram_efficient_loading": False,
            "fsdp_offload_params": False,
            "fsdp_activation_checkpointing": bool(getattr(training, "gradient_checkpointing", False)),
        }
    elif strategy == "deepspeed":
        config["deepspeed_config"] = {
            "zero_stage": 2,
            "offload_optimizer_device": "none",
            "offload_param_device": "none",
            "gradient_accumulation_steps": int(getattr(training, "gradient_accumulation_steps", 1)),
            "gradient_clipping": float(getattr(training, "max_grad_norm", 1.0)),
            "zero3_init_flag": False,
        }
    return config


def write_accelerate_config(training: Any, folder: str | Path, here: Devices | None = None) -> Path:
    """Write the accelerate config for ``training`` as ``folder/accelerate.yaml``; returns its path."""
    path = Path(folder) / ACCELERATE_CONFIG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "# Written by distill-gui for `accelerate launch`; the run's own settings are in config.yaml.\n"
    text += yaml.safe_dump(accelerate_config(training, here), sort_keys=False)
    atomic_files.write_text(path, text)
    return path


def launch_command(config_file: str | Path, cli_args: list[str], python: str | None = None) -> list[str]:
    """The command line that runs ``distill-gui <cli_args>`` in every process of the launch."""
    return [python or sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file), "-m", "distill_gui", *cli_args]


def launch_environment(config_file: str | Path) -> dict[str, str]:
    """Environment variables the launched processes need besides the app's own."""
    env = {LAUNCHED_ENV: "1", LAUNCH_DIR_ENV: str(Path(config_file).parent)}
    env.setdefault("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))  # accelerate's default, without its warning
    return env


@dataclass(frozen=True)
class Launch:
    """A prepared launch: the command line, the environment to add, and where its files are."""

    argv: list[str]
    env: dict[str, str]
    folder: Path

    @property
    def config_file(self) -> Path:
        return self.folder / ACCELERATE_CONFIG_NAME


def prepare_launch(training: Any, folder: str | Path, cli_args: list[str], here: Devices | None = None) -> Launch:
    """Check the settings, write the accelerate config into ``folder`` and build the launch."""
    here = here or devices()
    check_launch(training, here)
    config_file = write_accelerate_config(training, folder, here)
    return Launch(argv=launch_command(config_file, cli_args), env=launch_environment(config_file), folder=Path(folder))


# ---- Inside the launched processes -----------------------------------------------------------------


def launch_dir() -> Path | None:
    """The folder of the launch this process belongs to (None when it was not started by distill-gui)."""
    value = os.environ.get(LAUNCH_DIR_ENV)
    return Path(value) if value and os.environ.get(LAUNCHED_ENV) else None


def record_launch(run_dir: str | Path) -> None:
    """Keep the launch's accelerate config in the run folder (main process, once the folder exists)."""
    folder = launch_dir()
    if folder is None:
        return
    source, target = folder / ACCELERATE_CONFIG_NAME, Path(run_dir) / ACCELERATE_CONFIG_NAME
    if source.is_file() and source.resolve() != target.resolve():
        atomic_files.write_text(target, source.read_text(encoding="utf-8"))


def prepare_process() -> None:
    """In a launched process, before the Trainer makes its Accelerator: FSDP on CPU processes shards for real.

    accelerate (1.x) honours an FSDP launch only on GPU-like devices; on CPU processes it sets up plain
    DDP and drops the FSDP plugin. torch's FSDP2 (``fully_shard``) runs on CPU with gloo, so here the
    accelerator state built for such a launch is switched to FSDP with the plugin it was given.
    """
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() != "true" or not under_launcher():
        return
    import torch

    if torch.cuda.is_available():
        return
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedType

    if getattr(AcceleratorState.__init__, "_distill_gui_cpu_fsdp", False):
        return
    original = AcceleratorState.__init__
    seen: dict[str, Any] = {}

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)  # every call copies the process state (MULTI_CPU) over the shared one
        plugin = kwargs.get("fsdp_plugin") or seen.get("plugin")
        if plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            seen["plugin"] = plugin
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = plugin

    init._distill_gui_cpu_fsdp = True  # type: ignore[attr-defined]
    AcceleratorState.__init__ = init


def write_outcome(state: str, run_dir: str | Path) -> None:
    """Tell the command that launched this run how it ended (main process)."""
    folder = launch_dir()
    if folder is not None:
        atomic_files.write_json(folder / OUTCOME_NAME, {"state": state, "run": str(run_dir)})


def read_outcome(folder: str | Path) -> dict[str, Any]:
    """How a launched run ended (``state``, ``run``), or {} when its main process did not say."""
    try:
        data = json.loads((Path(folder) / OUTCOME_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def finish_process(state: str) -> None:
    """In a launched process whose run ended cleanly (``state`` finished or stopped, as every process ends
    such a run): wait for the others, then take the process group down.

    Left to interpreter shutdown, gloo's worker threads can still hold tensors whose release needs the
    interpreter being torn down, and the process dies of SIGABRT after a clean run (the launcher then
    kills the others and prints a failure report). After a failure the others may be inside another
    collective (a loss that diverged on one process stops it before the gradients are exchanged): no
    barrier then; the launcher ends them.
    """
    if not under_launcher() or state not in ("finished", "stopped"):
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def is_main_process() -> bool:
    """Rank 0 (or no launcher at all), from the environment the launcher sets."""
    return os.environ.get("RANK", "0") == "0"


__all__ = [
    "ACCELERATE_CONFIG_NAME",
    "Devices",
    "Launch",
    "LaunchError",
    "STRATEGIES",
    "STRATEGY_HELP",
    "STRATEGY_TITLES",
    "accelerate_config",
    "check_launch",
    "devices",
    "finish_process",
    "launch_command",
    "needs_launch",
    "prepare_launch",
    "prepare_process",
    "read_outcome",
    "record_launch",
    "under_launcher",
    "write_accelerate_config",
    "write_outcome",
]
