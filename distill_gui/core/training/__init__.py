"""Training runs: set up, train, checkpoint, report. One module per concern:

- :mod:`.run` — :func:`train` read top to bottom, and the pre-flight checks;
- :mod:`.setup` — the run's shared parts (:class:`RunSetup`), model loading, the Trainer's arguments;
- :mod:`.trainer` — the ``transformers.Trainer`` subclass (the method's loss, token-weighted steps);
- :mod:`.callbacks` — events, stop/pause between steps, checkpoint commits;
- :mod:`.checkpointing` — atomic step checkpoints and ``final/``;
- :mod:`.control` — stop/pause flags, the processes of an ``accelerate launch``;
- :mod:`.outcome` — how a run ends;
- :mod:`.compat` — the few transformers internals used, checked at start-up.

The method itself (loss, metrics, what it prepares) lives in :mod:`distill_gui.core.methods`.
"""

from distill_gui.core.training.control import RunControl
from distill_gui.core.training.outcome import Diverged, RunOutcome, TrainingError
from distill_gui.core.training.run import delete_run, preflight, train

__all__ = ["Diverged", "RunControl", "RunOutcome", "TrainingError", "delete_run", "preflight", "train"]
