#!/bin/sh
# Run by distill-gui.app on its first start, in a Terminal window: installs the app for this user.
RESOURCES=$(cd "$(dirname "$0")" && pwd)
APPDIR="$HOME/Library/Application Support/distill-gui/app"
mkdir -p "$APPDIR"
sh "$RESOURCES/install.sh" --no-shortcuts
code=$?
echo "$code" > "$APPDIR/first-start.status"
if [ "$code" = 0 ]; then
    echo "distill-gui is installed and opens now; you can close this window."
else
    echo "The install failed (see above); close this window and open distill-gui again to retry."
fi
