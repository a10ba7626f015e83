#!/usr/bin/env bash
# Cut out the subject of examples/astronaut.jpg through a real daemon, with no guidance at all
# (Select Subject, portrait mode); writes PNGs to $1 (default out/).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out}
mkdir -p "$out"
mk=.venv/bin/mattekit
# A private endpoint, so the demo never talks to (or stops) a daemon the user already runs.
export MATTEKIT_ENDPOINT="ipc://${XDG_RUNTIME_DIR:-/tmp}/mattekit-demo-$$/daemon.sock"
trap '$mk stop >/dev/null 2>&1 || true' EXIT
if $mk models list | grep -q '^  selfie:'; then
    $mk select examples/astronaut.jpg --model portrait --output cutout \
        -o "$out/astronaut_cutout.png" --sheet "$out/astronaut_sheet.png"
    echo "Select Subject: wrote $out/astronaut_cutout.png (RGBA cut-out) and $out/astronaut_sheet.png (contact sheet)"
else
    echo "the portrait prior is not installed (mattekit models fetch selfie): refining the rough lasso in examples/astronaut_guidance.png instead"
    $mk refine examples/astronaut.jpg --guidance examples/astronaut_guidance.png --output cutout \
        -o "$out/astronaut_cutout.png" --sheet "$out/astronaut_sheet.png"
    echo "Refine Selection: wrote $out/astronaut_cutout.png and $out/astronaut_sheet.png"
fi
