#!/usr/bin/env bash
# Cut out the subject of examples/astronaut.jpg through a real daemon; writes PNGs to $1 (default out/).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out}
mkdir -p "$out"
mk=.venv/bin/mattekit
# A private endpoint, so the demo never talks to (or stops) a daemon the user already runs.
export MATTEKIT_ENDPOINT="ipc://${XDG_RUNTIME_DIR:-/tmp}/mattekit-demo-$$/daemon.sock"
trap '$mk stop >/dev/null 2>&1 || true' EXIT
$mk refine examples/astronaut.jpg --guidance examples/astronaut_guidance.png \
    --output cutout -o "$out/astronaut_cutout.png" --sheet "$out/astronaut_sheet.png"
echo "wrote $out/astronaut_cutout.png (RGBA cut-out) and $out/astronaut_sheet.png (contact sheet)"
