#!/bin/sh
# /usr/bin/distill-gui from the .deb: on a user's first start, install the app for that user from
# /opt/distill-gui/payload (the package itself downloads nothing), then start it.
APPDIR="${XDG_DATA_HOME:-$HOME/.local/share}/distill-gui/app"
PROGRAM="$APPDIR/env/bin/distill-gui"
if [ ! -x "$PROGRAM" ]; then
    if [ -t 1 ]; then
        /opt/distill-gui/install.sh --no-shortcuts || exit 1
    elif command -v x-terminal-emulator >/dev/null 2>&1; then
        x-terminal-emulator -e sh -c '/opt/distill-gui/install.sh --no-shortcuts; echo; echo "Press Enter to close this window."; read answer'
    else
        /opt/distill-gui/install.sh --no-shortcuts >/dev/null 2>&1
    fi
    if [ ! -x "$PROGRAM" ]; then
        echo "distill-gui: the first-start install did not finish; see the log in $APPDIR/logs and run /opt/distill-gui/install.sh" >&2
        exit 1
    fi
fi
exec "$PROGRAM" "$@"
