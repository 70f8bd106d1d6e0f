"""The one base class of errors that are the user's to fix.

A :class:`UserError` says in one line what is wrong (the file, line, field or model) and what to do.
The command line prints it and exits 2; the app shows it in a dialog. Any other exception is a bug:
a traceback goes to the log and a short message to the screen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


class UserError(Exception):
    """Bad input or a setting to change: the message names what and what to do."""


def is_user_error(exc: BaseException) -> bool:
    """True for errors the user can fix (reported in one line), False for bugs."""
    return isinstance(exc, UserError)


def one_line(exc: BaseException) -> str:
    """The first line of an error; user errors without their class name, bugs with it."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if is_user_error(exc):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}".strip().rstrip(":")


def app_log_path() -> "Path":
    """The app's own log file (tracebacks of bugs), in the user log folder."""
    from pathlib import Path

    import platformdirs

    return Path(platformdirs.user_log_dir("distill-gui", appauthor=False)) / "distill-gui.log"


def describe(exc: BaseException) -> str:
    """What to show a person for ``exc``: a user error's message, or for a bug a short line.

    A bug's traceback goes to the ``distill_gui`` logger (the app writes it to :func:`app_log_path`).
    """
    import logging

    if is_user_error(exc):
        return one_line(exc)
    logging.getLogger("distill_gui").error("unexpected error", exc_info=(type(exc), exc, exc.__traceback__))
    return f"{one_line(exc)} — an unexpected error (a bug); the details are in {app_log_path()}"
