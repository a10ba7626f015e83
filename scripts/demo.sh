#!/usr/bin/env bash
# Cut out the subjects of the sample photos through a real daemon, with no guidance at all
# (Select Subject): the cat (examples/chelsea.png) with the general model, the astronaut
# (examples/astronaut.jpg) in portrait mode. Writes PNGs to $1 (default out/).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out}
mkdir -p "$out"
mk=.venv/bin/mattekit
# A private endpoint in a fresh 0700 directory, so the demo never talks to (or stops) a daemon the
# user already runs, and no other user can have made the directory first.
demo_dir=$(mktemp -d)
export MATTEKIT_ENDPOINT="ipc://$demo_dir/daemon.sock"
trap '$mk stop >/dev/null 2>&1 || true; rm -rf "$demo_dir"' EXIT
models=$($mk models list)
# cut_out NAME PHOTO MODEL: Select Subject with no guidance -> $out/NAME_cutout.png and NAME_sheet.png
cut_out() {
    $mk select "$2" --model "$3" --output cutout -o "$out/$1_cutout.png" --sheet "$out/$1_sheet.png"
    echo "Select Subject ($3): wrote $out/$1_cutout.png (RGBA cut-out) and $out/$1_sheet.png (contact sheet)"
}
if grep -q '^  u2netp:' <<<"$models"; then
    cut_out chelsea examples/chelsea.png general
else
    echo "the general subject model is not installed (mattekit models fetch u2netp): skipping the cat"
fi
if grep -qE '^  (selfie|modnet-photographic):' <<<"$models"; then
    cut_out astronaut examples/astronaut.jpg portrait
else
    echo "no people model is installed (mattekit models fetch modnet-photographic): refining the rough lasso in examples/astronaut_guidance.png instead"
    $mk refine examples/astronaut.jpg --guidance examples/astronaut_guidance.png --output cutout \
        -o "$out/astronaut_cutout.png" --sheet "$out/astronaut_sheet.png"
    echo "Refine Selection: wrote $out/astronaut_cutout.png and $out/astronaut_sheet.png"
fi
