"""Checks for Qt binding releases the app cannot run on.

PySide6 6.12.0 on Python < 3.12 (where ``True`` and ``None`` are not immortal) drops a reference to
``True`` on every ``Signal.emit()`` and to ``None`` in slot calls; after a few thousand signals the
interpreter aborts ("deallocating True or False"). The package requires ``PySide6-Essentials<6.12``
for this reason; :func:`broken_signal_refcounts` detects an environment that has it anyway.
"""

from __future__ import annotations

import sys


def broken_signal_refcounts() -> bool:
    """True when emitting a Qt signal loses references to ``True`` (the PySide6 6.12.0 bug)."""
    if sys.version_info >= (3, 12):
        return False  # True/False/None are immortal: a lost reference is harmless
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        sig_probe = Signal()

    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(20):
        probe.sig_probe.emit()
    lost = before - sys.getrefcount(True)
    probe.deleteLater()
    return lost >= 20


def binding_problem() -> str | None:
    """A sentence saying why this Qt binding cannot run the app, or None when it can."""
    if broken_signal_refcounts():
        import PySide6

        return (
            f"PySide6 {PySide6.__version__} on Python {sys.version_info.major}.{sys.version_info.minor} loses a reference "
            "on every Qt signal and crashes the app after a while; install PySide6-Essentials<6.12 "
            "(pip install 'PySide6-Essentials>=6.7,<6.12') or use Python 3.12 or newer."
        )
    return None
