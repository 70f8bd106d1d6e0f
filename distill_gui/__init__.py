"""distill-gui: knowledge distillation of language models, from a desktop app or the command line."""

__version__ = "0.1.0"
