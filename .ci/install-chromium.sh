#!/usr/bin/env bash
# Debian's chromium for the viewer's headless-browser test (tests/test_view.py). Does nothing when a
# chromium is already on PATH; --no-install-recommends keeps it to the browser and its libraries.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install chromium (the viewer's browser test needs it); this script knows only apt-get" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
for attempt in 1 2; do  # a mirror hiccup should not fail CI: one retry after a fresh index
    if $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; then
        exit 0
    fi
    echo "apt-get install chromium failed (attempt $attempt)" >&2
    sleep 5
done
exit 1
