"""The Qt desktop application over :mod:`distill_gui.core`.

Qt lives here and only here; the core never imports this package. Heavy libraries (torch,
transformers, peft) are imported lazily inside background workers so the window opens first.
"""
