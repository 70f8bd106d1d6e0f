#!/bin/sh
# distill-gui for Linux, per user, no root: the app goes under ~/.local/share/distill-gui/app, a
# `distill-gui` command into ~/.local/bin and an entry into the applications menu.
#
#   ./install.sh                      detect the GPU and install the matching torch, then the app
#   ./install.sh --torch cpu          choose the torch build (cpu, cu126, cu128, cu130, rocm6.4)
#   ./install.sh --offline WHEELHOUSE install from a folder of wheels, with no network at all
#   ./install.sh --repair             rebuild the app's environment
#   ./install.sh --uninstall [--purge]
#
# The bundled uv finds a Python 3.10+ on the machine or fetches one; bootstrap.py does the rest.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
PAYLOAD=${DISTILL_GUI_PAYLOAD:-$HERE/payload}
UV="$PAYLOAD/uv"
offline=0
for arg in "$@"; do
    if [ "$arg" = "--offline" ]; then offline=1; fi
done
if [ "$offline" = 1 ]; then
    export UV_OFFLINE=1 UV_PYTHON_DOWNLOADS=never
fi
PYTHON=$("$UV" python find '>=3.10' 2>/dev/null || true)
if [ -z "$PYTHON" ]; then
    if [ "$offline" = 1 ]; then
        echo "distill-gui: no Python 3.10 or newer here, and --offline forbids fetching one: install python3 (3.10+) and run again" >&2
        exit 1
    fi
    echo "No Python 3.10 or newer found: fetching one with uv"
    "$UV" python install 3.12
    PYTHON=$("$UV" python find 3.12)
fi
exec "$PYTHON" "$PAYLOAD/bootstrap.py" --payload "$PAYLOAD" "$@"
