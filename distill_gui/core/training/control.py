"""Stop and pause requests a run polls between steps, and who this process is among several."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunControl:
    """Stop and pause flags the training loop polls between steps (thread-safe)."""

    _stop: threading.Event = field(default_factory=threading.Event)
    _pause: threading.Event = field(default_factory=threading.Event)

    def request_stop(self) -> None:
        self._stop.set()

    def request_pause(self) -> None:
        self._pause.set()

    def request_resume(self) -> None:
        self._pause.clear()

    def apply(self, command: str) -> bool:
        """Carry out ``stop``, ``pause`` or ``resume``; False for anything else."""
        command = command.strip().lower()
        if command == "stop":
            self.request_stop()
        elif command == "pause":
            self.request_pause()
        elif command == "resume":
            self.request_resume()
        else:
            return False
        return True

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return self._pause.is_set()


@dataclass
class Processes:
    """Who this process is in an ``accelerate launch`` of several processes (alone: rank 0 of 1).

    Only the main process writes the run folder; the others train along and meet it at barriers.
    """

    world_size: int = 1
    is_main: bool = True
    device: str | None = None

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """The main process's ``value``, on every process."""
        if self.world_size == 1:
            return value
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value])[0]

    def any(self, flag: bool) -> bool:
        """True on every process when ``flag`` is true on any of them (stop requests reach the main one)."""
        if self.world_size == 1:
            return flag
        import torch
        import torch.distributed as dist

        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(value)
        return bool(value.item() > 0)


def current_processes() -> Processes:
    """This process's place in an ``accelerate launch`` (alone when WORLD_SIZE is unset or 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Processes()
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    device = state.device
    name = "cpu" if device.type == "cpu" else f"{device.type}:{device.index or 0}" if device.type == "cuda" else device.type
    return Processes(world_size=state.num_processes, is_main=state.is_main_process, device=name)
