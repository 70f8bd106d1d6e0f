"""The ``distill-gui`` program: the desktop app with no arguments, the command line otherwise.

Kept apart from :mod:`distill_gui.cli`, which must stay Qt-free: only this tiny module knows both.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("gui", "app"):
        from distill_gui.gui.app import main as gui_main

        return gui_main(argv[1:] if argv else [])
    from distill_gui.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
