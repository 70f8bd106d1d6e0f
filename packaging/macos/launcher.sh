#!/bin/sh
# distill-gui.app/Contents/MacOS/distill-gui: on the first start, install the app for this user (in a
# Terminal window that shows the progress), then start it.
CONTENTS=$(cd "$(dirname "$0")/.." && pwd)
APPDIR="$HOME/Library/Application Support/distill-gui/app"
PROGRAM="$APPDIR/env/bin/distill-gui"
STATUS="$APPDIR/first-start.status"
if [ ! -x "$PROGRAM" ]; then
    mkdir -p "$APPDIR"
    rm -f "$STATUS"
    open -a Terminal "$CONTENTS/Resources/install.command"
    waited=0
    while [ ! -f "$STATUS" ] && [ "$waited" -lt 7200 ]; do
        sleep 2
        waited=$((waited + 2))
    done
    if [ ! -x "$PROGRAM" ]; then
        osascript -e "display alert \"distill-gui could not be installed\" message \"See the log in $APPDIR/logs, then open distill-gui again.\""
        exit 1
    fi
fi
exec "$PROGRAM" app "$@"
